"""Proof that the real-peer test infrastructure works, using Python's ``smtplib`` as the
client: private Postfix (delivery, extensions, STARTTLS, AUTH via Dovecot, rejections, log
statistics), smtp-sink/smtp-source and the aiosmtpd capture server."""

from __future__ import annotations

import base64
import email.parser
import email.policy
import smtplib
import ssl
import uuid
from collections.abc import Callable
from email.message import EmailMessage

import pytest

from tests.peers.aiosmtpd_server import CaptureServer
from tests.peers.certs import TestPKI
from tests.peers.fixtures import (
    capture_server,
    pki,
    postfix,
    postfix_factory,
    smtp_sink,
    smtp_sink_factory,
    untrusted_pki,
)
from tests.peers.postfix import PostfixInstance, parse_disconnect_stats
from tests.peers.sink import SmtpSink, SmtpSource

# Imported so this module runs without tests/conftest.py; pytest finds fixtures by name.
__all__ = [
    "capture_server",
    "pki",
    "postfix",
    "postfix_factory",
    "smtp_sink",
    "smtp_sink_factory",
    "untrusted_pki",
]

PARSER = email.parser.BytesParser(policy=email.policy.default)


def unique(local: str) -> str:
    """A fresh address at example.org, so tests sharing the session Postfix don't collide."""
    return f"{local}-{uuid.uuid4().hex[:10]}@example.org"


def make_message(sender: str, rcpt: str, subject: str, body: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = rcpt
    msg["Subject"] = subject
    msg.set_content(body)
    return msg


def auth_plain(client: smtplib.SMTP, user: str, password: str) -> tuple[int, bytes]:
    """One AUTH PLAIN exchange (smtplib.login would retry with LOGIN after a failure)."""
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    return client.docmd("AUTH", f"PLAIN {token}")


# ------------------------------------------------------------------------------ Postfix


def test_postfix_delivers_to_maildir_and_message_parses(
    postfix: PostfixInstance, pki: TestPKI
) -> None:
    rcpt = unique("bob")
    msg = make_message("ann@example.com", rcpt, "Grüße — infrastructure check", "Hello\nBob\n")
    with smtplib.SMTP(postfix.host, postfix.port, timeout=10) as client:
        client.starttls(context=pki.client_context())
        refused = client.send_message(msg)
    assert refused == {}
    (raw,) = postfix.messages_for(rcpt)
    parsed = PARSER.parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    assert parsed["Subject"] == "Grüße — infrastructure check"
    assert parsed["Delivered-To"] == rcpt
    assert parsed.get_content() == "Hello\nBob\n"
    assert rcpt in postfix.messages_by_address()


def test_postfix_ehlo_advertises_extensions(postfix: PostfixInstance) -> None:
    with smtplib.SMTP(postfix.host, postfix.port, timeout=10) as client:
        code, _ = client.ehlo()
        assert code == 250
        for ext in (
            "pipelining",
            "chunking",
            "smtputf8",
            "starttls",
            "8bitmime",
            "size",
            "enhancedstatuscodes",
        ):
            assert client.has_extn(ext), ext
        assert not client.has_extn("auth")  # no SASL on the shared instance


def test_postfix_starttls_verifies_against_test_ca(
    postfix: PostfixInstance, pki: TestPKI, untrusted_pki: TestPKI
) -> None:
    with smtplib.SMTP(postfix.host, postfix.port, timeout=10) as client:
        code, _ = client.starttls(context=pki.client_context())
        assert code == 220
        sock = client.sock
        assert isinstance(sock, ssl.SSLSocket)
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        client.ehlo()
        assert not client.has_extn("starttls")
    # A client trusting only another CA must refuse the certificate.
    with (
        smtplib.SMTP(postfix.host, postfix.port, timeout=10) as client,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        client.starttls(context=untrusted_pki.client_context())


def test_postfix_rejects_unknown_domain_and_test_hooks(postfix: PostfixInstance) -> None:
    good = unique("good")
    with smtplib.SMTP(postfix.host, postfix.port, timeout=10) as client:
        client.ehlo()
        assert client.mail("ann@example.com")[0] == 250
        code, text = client.rcpt("nobody@nowhere.invalid")
        assert code == 554 and b"Relay access denied" in text
        assert client.rcpt("reject-450@example.org")[0] == 450
        assert client.rcpt("reject-551@example.org")[0] == 551
        assert client.rcpt(good)[0] == 250
        assert client.data(b"Subject: mixed\r\n\r\nbody\r\n")[0] == 250
    assert len(postfix.messages_for(good)) == 1


def test_postfix_disconnect_stats_count_commands(postfix: PostfixInstance) -> None:
    offset = postfix.log_offset()
    rcpts = [unique(f"stat{i}") for i in range(3)]
    with smtplib.SMTP(postfix.host, postfix.port, timeout=10) as client:
        for rcpt in rcpts:
            client.sendmail("ann@example.com", [rcpt], b"Subject: s\r\n\r\nx\r\n")
        # One message with BDAT: smtplib has no CHUNKING support, so speak it by hand.
        bdat_rcpt = unique("bdat")
        client.mail("ann@example.com")
        client.rcpt(bdat_rcpt)
        payload = b"Subject: chunked\r\n\r\nbody\r\n"
        client.send(f"BDAT {len(payload)} LAST\r\n".encode() + payload)
        assert client.getreply()[0] == 250
    (stats,) = postfix.disconnect_stats(since=offset, expected=1)
    assert stats["ehlo"] == 1
    assert stats["mail"] == 4 and stats["rcpt"] == 4
    assert stats["data"] == 3 and stats["bdat"] == 1
    assert stats["quit"] == 1
    assert postfix.messages_for(bdat_rcpt)[0].endswith(b"body\n")


def test_disconnect_stats_skip_sessions_that_began_earlier() -> None:
    """A session that connected before the offset but is logged as ended after it (an
    earlier test's, logging lags) is not one of the sessions asked about."""
    log = (
        "Nov 28 10:40:00 localhost x/smtpd[7]: disconnect from unknown[127.0.0.1]"
        " ehlo=1 quit=1 commands=2\n"
        "Nov 28 10:40:00 localhost x/smtpd[8]: connect from unknown[127.0.0.1]\n"
        "Nov 28 10:40:01 localhost x/smtpd[8]: disconnect from unknown[127.0.0.1]"
        " ehlo=1 mail=1 rcpt=1 bdat=1 quit=1 commands=5\n"
    )
    assert [s.get("bdat") for s in parse_disconnect_stats(log)] == [None, 1]
    assert [s.get("bdat") for s in parse_disconnect_stats(log, started_in_log=True)] == [1]


def test_parse_disconnect_stats_with_failures() -> None:
    line = (
        "Nov 28 10:40:00 localhost x/smtpd[1]: disconnect from unknown[127.0.0.1] "
        "ehlo=1 mail=1 rcpt=2/3 bdat=2 quit=1 commands=7/8"
    )
    assert parse_disconnect_stats(line + "\nunrelated line\n") == [
        {
            "ehlo": 1,
            "mail": 1,
            "rcpt": 2,
            "rcpt_total": 3,
            "bdat": 2,
            "quit": 1,
            "commands": 7,
            "commands_total": 8,
        }
    ]


def test_postfix_tls_encrypt_requires_starttls(
    postfix_factory: Callable[..., PostfixInstance], pki: TestPKI
) -> None:
    server = postfix_factory(tls="encrypt")
    rcpt = unique("enc")
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client.ehlo()
        code, text = client.mail("ann@example.com")
        assert code == 530 and b"STARTTLS" in text
        client.rset()
        client.starttls(context=pki.client_context())
        client.sendmail("ann@example.com", [rcpt], b"Subject: enc\r\n\r\nx\r\n")
    assert len(server.messages_for(rcpt)) == 1


def test_postfix_auth_plain_over_tls(
    postfix_factory: Callable[..., PostfixInstance], pki: TestPKI
) -> None:
    server = postfix_factory(tls="may", auth=True, users={"user": "pass"})
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client.ehlo()
        assert not client.has_extn("auth")  # smtpd_tls_auth_only: AUTH only after STARTTLS
        client.starttls(context=pki.client_context())
        client.ehlo()
        assert "PLAIN" in client.esmtp_features["auth"].split()
        code, text = auth_plain(client, "user", "wrong")
        assert code == 535, text
        code, text = auth_plain(client, "user", "pass")
        assert code == 235, text
    (stats,) = server.disconnect_stats(expected=1)
    assert (stats["auth"], stats["auth_total"]) == (1, 2)


def test_postfix_size_limit_and_utf8(postfix_factory: Callable[..., PostfixInstance]) -> None:
    server = postfix_factory(message_size_limit=5000)
    rcpt = "jösé@example.org"
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client.ehlo()
        assert client.esmtp_features["size"] == "5000"
        assert not client.has_extn("starttls")
        code, _ = client.mail("ann@example.com", ["SIZE=6000"])
        assert code == 552
        client.rset()
        body = "Subject: ü\r\n\r\nünïcödé\r\n".encode()
        client.sendmail("ann@example.com", [rcpt], body, mail_options=["SMTPUTF8"])
    (raw,) = server.messages_for(rcpt)
    assert PARSER.parsebytes(raw)["Subject"] == "ü"
    assert server.maildir_messages(expected=1) == [raw]
    server.wait_idle()
    assert server.queue_empty()


# ------------------------------------------------------------------ smtp-sink / source


def test_smtp_sink_accepts_pipelining_no_chunking(smtp_sink: SmtpSink) -> None:
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=10) as client:
        client.ehlo()
        assert client.has_extn("pipelining")
        assert not client.has_extn("chunking")
        assert client.sendmail("a@example.com", ["b@example.org"], b"Subject: s\r\n\r\nx\r\n") == {}


def test_smtp_sink_dump_counts_messages(smtp_sink_factory: Callable[..., SmtpSink]) -> None:
    sink = smtp_sink_factory(dump=True)
    with smtplib.SMTP(sink.host, sink.port, timeout=10) as client:
        client.sendmail(
            "a@example.com", ["b@example.org", "c@example.org"], b"Subject: one\r\n\r\n"
        )
    elapsed = SmtpSource(sink.host, sink.port, sessions=2, size=200, count=20).run(timeout=30)
    assert elapsed > 0
    dumps = sink.wait_for(21)
    assert len(dumps) == 21
    first = next(d for d in dumps if b"Subject: one" in d)
    assert b"X-Rcpt-Args: <c@example.org>" in first


# --------------------------------------------------------------------------- aiosmtpd


def test_capture_server_records_and_scripts_replies(
    capture_server: Callable[..., CaptureServer],
) -> None:
    server = capture_server(rcpt_replies={"bad@example.org": "550 5.1.1 no such user"})
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        refused = client.sendmail(
            "ann@example.com", ["good@example.org", "bad@example.org"], b"Subject: c\r\n\r\nx\r\n"
        )
    assert refused == {"bad@example.org": (550, b"5.1.1 no such user")}
    (msg,) = server.wait_for(1)
    assert (msg.mail_from, msg.rcpt_tos) == ("ann@example.com", ["good@example.org"])
    assert msg.content == b"Subject: c\r\n\r\nx\r\n"
    assert not msg.tls


def test_capture_server_data_reply_starttls_and_auth(
    capture_server: Callable[..., CaptureServer], pki: TestPKI
) -> None:
    server = capture_server(
        tls_context=pki.server_context(),
        require_starttls=True,
        auth_users={"ann": "s3cret"},
        data_reply="554 5.6.0 content rejected",
    )
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client.ehlo()
        assert client.mail("ann@example.com")[0] == 530  # STARTTLS first
        client.starttls(context=pki.client_context())
        client.login("ann", "s3cret")
        with pytest.raises(smtplib.SMTPDataError) as info:
            client.sendmail("ann@example.com", ["b@example.org"], b"x\r\n")
    assert info.value.smtp_code == 554
    assert server.messages == []
    (rejected,) = server.rejected
    assert rejected.tls and rejected.auth_login == "ann"


def test_capture_server_implicit_tls(
    capture_server: Callable[..., CaptureServer], pki: TestPKI
) -> None:
    server = capture_server(tls_context=pki.server_context(), implicit_tls=True)
    with smtplib.SMTP_SSL(server.host, server.port, context=pki.client_context(), timeout=10) as c:
        c.sendmail("a@example.com", ["b@example.org"], b"x\r\n")
    (msg,) = server.wait_for(1)
    assert msg.tls
