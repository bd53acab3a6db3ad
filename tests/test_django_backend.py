"""``fastsmtp.django.EmailBackend`` with a real Django settings configuration, against
aiosmtpd and Postfix.

The central check: the same messages sent through Django's own SMTP backend and through
fastsmtp arrive with the same structure (envelope, headers, bodies, alternatives,
attachments), whether fastsmtp built the MIME in Rust or fell back to Django's bytes.

It runs under every supported Django (``scripts/test-django-matrix.sh``: 4.2 LTS, 5.2, 6.0
and the newest 6.x): Django 6.0 brought the modern email API (``MIMEPart`` attachments,
``ADMINS`` as plain addresses), 6.1 the ``MAILERS`` setting (the ``EMAIL_*`` settings and
``get_connection()`` are deprecated there), so configuration goes through the helpers
``connection()`` and ``default_mailer()``.
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import os
import subprocess
import sys
import textwrap
import threading
import warnings
from collections.abc import Callable, Iterator
from email.message import MIMEPart
from email.mime.image import MIMEImage
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any

import django
import pytest
from django.conf import settings

if not settings.configured:
    common: dict[str, Any] = {
        "DEFAULT_FROM_EMAIL": "Site <site@example.com>",
        "SERVER_EMAIL": "server@example.com",
        # Django 6.0 takes ADMINS as addresses, earlier ones as (name, address) pairs.
        "ADMINS": (
            ["admin@example.org"] if django.VERSION >= (6, 0) else [("Admin", "admin@example.org")]
        ),
        "FASTSMTP": {"connections": 2},
    }
    if django.VERSION >= (6, 1):  # MAILERS; the EMAIL_* settings are deprecated
        default = {
            "BACKEND": "fastsmtp.django.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": 25},
        }
        settings.configure(MAILERS={"default": default}, **common)
    else:
        settings.configure(
            EMAIL_BACKEND="fastsmtp.django.EmailBackend",
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=25,
            **common,
        )
    django.setup()

from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage, EmailMultiAlternatives, get_connection
from django.test.utils import override_settings

import fastsmtp
import fastsmtp.django
from fastsmtp import Message, Result
from fastsmtp._django_convert import RawMessage, convert
from fastsmtp.django import EmailBackend, MessageNotSent
from tests.peers.aiosmtpd_server import CapturedMessage, CaptureServer
from tests.peers.certs import TestPKI
from tests.peers.ports import free_port
from tests.peers.postfix import PostfixInstance
from tests.test_dkim import ed25519_pem, verifies

Factory = Callable[..., CaptureServer]
MessageFactory = Callable[[], EmailMessage]

OURS = "fastsmtp.django.EmailBackend"
# Django 6.0: the modern email API (MIMEPart attachments; ADMINS as addresses).
DJANGO_6 = django.VERSION >= (6, 0)
# Django 6.1: MAILERS (the EMAIL_* settings and get_connection() are deprecated).
MAILERS = django.VERSION >= (6, 1)


def connection(backend: str = OURS, **options: Any) -> Any:
    """A backend made from ``options`` (``port``, ``fail_silently``, engine options...), the
    way the running Django makes one: ``get_connection()``, or a MAILERS entry from 6.1."""
    if not MAILERS:
        return get_connection(backend, **options)
    entry = {"BACKEND": backend, "OPTIONS": {"host": "127.0.0.1", **options}}
    with override_settings(MAILERS={"test": entry}):
        return mail.mailers["test"]  # type: ignore[attr-defined, unused-ignore]


def default_mailer(port: int, fastsmtp: dict[str, Any] | None = None, **options: Any) -> Any:
    """Settings whose default mailer is fastsmtp at ``port``, with the SMTP backend's
    ``use_tls``, ``username`` and ``password``: EMAIL_* settings, or MAILERS from 6.1."""
    extra = {} if fastsmtp is None else {"FASTSMTP": fastsmtp}
    if MAILERS:
        entry = {"BACKEND": OURS, "OPTIONS": {"host": "127.0.0.1", "port": port, **options}}
        return override_settings(MAILERS={"default": entry}, **extra)
    names = {"use_tls": "EMAIL_USE_TLS", "username": "EMAIL_HOST_USER"}
    names["password"] = "EMAIL_HOST_PASSWORD"
    return override_settings(EMAIL_PORT=port, **{names[k]: v for k, v in options.items()}, **extra)


def default_connection() -> Any:
    """The default mailer's backend."""
    return mail.mailers.default if MAILERS else get_connection()  # type: ignore[attr-defined, unused-ignore]


DJANGO_SMTP = "django.core.mail.backends.smtp.EmailBackend"
# Headers whose values legitimately differ between two sends, or that describe the MIME
# encoding rather than the content.
VOLATILE = {"date", "message-id", "mime-version", "content-type", "content-transfer-encoding"}
ADDRESS_HEADERS = {"from", "to", "cc", "reply-to"}


@pytest.fixture(autouse=True)
def fresh_engines(capture_server: Factory) -> Iterator[None]:
    # Depends on capture_server so that it is torn down first: the engines QUIT their
    # pooled connections before the servers stop.
    yield
    fastsmtp.django.shutdown()


# -- structure of what the server received ---------------------------------------------------


def parse(raw: bytes) -> email.message.EmailMessage:
    parsed = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def leaf(part: email.message.EmailMessage) -> tuple[Any, ...]:
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    content: str | bytes = payload
    if part.get_content_maintype() == "text":
        text = payload.decode(part.get_content_charset() or "ascii")
        # Line endings belong to the transport; everything else, the last line break or
        # its absence included, is content and must arrive exactly as Django delivers it.
        content = text.replace("\r\n", "\n")
    return (
        part.get_content_type(),
        part.get_content_disposition(),
        part.get_filename(),
        part.get("Content-ID"),
        content,
    )


def tree(part: email.message.EmailMessage) -> Any:
    if part.is_multipart():
        children = [tree(p) for p in part.iter_parts()]  # type: ignore[arg-type]
        # A multipart holding one part says the same as that part.
        return children[0] if len(children) == 1 else (part.get_content_type(), children)
    return leaf(part)


def leaves(part: email.message.EmailMessage) -> list[tuple[Any, ...]]:
    return [leaf(p) for p in part.walk() if not p.is_multipart()]  # type: ignore[arg-type]


def header_values(msg: email.message.EmailMessage, name: str) -> list[Any]:
    values = msg.get_all(name) or []
    if name in ADDRESS_HEADERS:
        return [[(a.display_name, a.addr_spec) for a in v.addresses] for v in values]
    return [str(v) for v in values]


def structure(captured: CapturedMessage, *, flat: bool = False) -> dict[str, Any]:
    msg = parse(captured.content)
    assert msg["Date"] and msg["Message-ID"]
    names = {k.lower() for k in msg} - VOLATILE
    return {
        "envelope": (captured.mail_from, sorted(captured.rcpt_tos)),
        "headers": {name: header_values(msg, name) for name in sorted(names)},
        "body": sorted(leaves(msg), key=repr) if flat else tree(msg),
    }


def by_subject(messages: list[CapturedMessage]) -> dict[str, CapturedMessage]:
    return {str(parse(m.content)["Subject"]): m for m in messages}


def deliver_both(
    server: CaptureServer, factories: list[MessageFactory]
) -> tuple[dict[str, CapturedMessage], dict[str, CapturedMessage], list[EmailMessage]]:
    """Send fresh copies through Django's SMTP backend, then through fastsmtp."""
    reference = connection(DJANGO_SMTP, port=server.port)
    assert reference.send_messages([f() for f in factories]) == len(factories)
    theirs = by_subject(server.wait_for(len(factories)))
    server.clear()
    ours_messages = [f() for f in factories]
    assert connection(port=server.port).send_messages(ours_messages) == len(factories)
    ours = by_subject(server.wait_for(len(factories)))
    assert len(theirs) == len(ours) == len(factories)
    return theirs, ours, ours_messages


# -- the messages ------------------------------------------------------------------------------


def plain() -> EmailMessage:
    return EmailMessage(
        "Plain ✓ subject with ünïcode",
        "Hello Bob,\n\nünïcode body, and a long line " + "x" * 1200 + "\n-- \nAnn",
        "Ann Example <ann@example.com>",
        ["Bob Example <bob@example.org>", "carol@example.org"],
        cc=["Dave <dave@example.org>"],
        bcc=["eve@example.org"],
        reply_to=["Replies <reply@example.com>"],
        headers={"X-Campaign": "spring", "List-Unsubscribe": "<mailto:unsub@example.com>"},
    )


def alternatives() -> EmailMessage:
    msg = EmailMultiAlternatives(
        "Text and HTML", "Plain version", "ann@example.com", ["bob@example.org"]
    )
    msg.attach_alternative("<p>HTML <b>version</b> ünï</p>", "text/html")
    return msg


def html_only() -> EmailMessage:
    msg = EmailMessage("HTML body", "<h1>Only HTML</h1>", "ann@example.com", ["bob@example.org"])
    msg.content_subtype = "html"
    return msg


def html_alternative_without_text() -> EmailMessage:
    msg = EmailMultiAlternatives("Empty text body", "", "ann@example.com", ["bob@example.org"])
    msg.attach_alternative("<p>just html</p>\n", "text/html")
    return msg


def html_alternative_without_text_or_final_newline() -> EmailMessage:
    """Django sends a multipart/alternative holding only the HTML: before Django 6 exactly
    as given, where fastsmtp would send a single part whose last line must be ended (so
    Django's bytes go instead); Django 6 ends the HTML's last line too (native)."""
    msg = EmailMultiAlternatives("Open last line", "", "ann@example.com", ["bob@example.org"])
    msg.attach_alternative("<p>just html</p>", "text/html")
    return msg


def attachments(tmp: Path) -> MessageFactory:
    pdf = tmp / "report.pdf"
    pdf.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 8)

    def make() -> EmailMessage:
        msg = EmailMultiAlternatives(
            "Attachments",
            "See the files.",
            "ann@example.com",
            ["bob@example.org"],
            cc=["carol@example.org"],
        )
        msg.attach_alternative("<p>See the files.</p>", "text/html")
        msg.attach("notes.txt", "line 1\nline 2 ünï\n", "text/plain")
        msg.attach("data.bin", bytes(range(256)), "application/octet-stream")
        msg.attach("résumé.pdf", b"%PDF-1.4 cv")
        msg.attach_file(pdf)
        msg.attach(csv_attachment())
        return msg

    return make


def csv_attachment() -> Any:
    """A MIME part attachment: MIMEBase before Django 6, MIMEPart from 6.0."""
    if DJANGO_6:
        part = MIMEPart()
        part.set_content("a,b\n1,2\n", subtype="csv", charset="utf-8")
        part.add_header("Content-Disposition", "attachment", filename="table.csv")
        return part
    legacy = MIMEText("a,b\n1,2\n", "csv", "utf-8")
    legacy.add_header("Content-Disposition", "attachment", filename="table.csv")
    return legacy


def header_overrides() -> EmailMessage:
    return EmailMessage(
        "Header overrides",
        "body",
        "bounces@example.com",
        ["bob@example.org"],
        headers={
            "From": "Newsletter <news@example.com>",
            "Reply-To": "Desk <desk@example.com>, other@example.com",
            "Message-ID": "<fixed-id-1@example.com>",
            "Date": "Mon, 01 Jan 2024 10:00:00 +0000",
            "X-Priority": "1",
        },
    )


def inline_image() -> EmailMessage:
    msg = EmailMultiAlternatives("Inline image", "text", "ann@example.com", ["bob@example.org"])
    msg.attach_alternative('<p><img src="cid:logo"></p>', "text/html")
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    image: Any
    if DJANGO_6:
        image = MIMEPart()
        image.set_content(png, maintype="image", subtype="png", cid="<logo>")
    else:
        image = MIMEImage(png, "png")
        image.add_header("Content-ID", "<logo>")
    image.add_header("Content-Disposition", "inline", filename="logo.png")
    msg.attach(image)
    return msg


class Stamped(EmailMessage):
    """A subclass that changes the MIME it makes: fastsmtp must send Django's bytes."""

    def message(self, *args: Any, **kwargs: Any) -> Any:
        msg = super().message(*args, **kwargs)
        msg["X-Stamped"] = "yes"
        return msg


def custom_subclass() -> EmailMessage:
    return Stamped("Custom subclass", "body", "ann@example.com", ["bob@example.org"])


def latin1() -> EmailMessage:
    msg = EmailMessage("Latin-1", "café crème", "ann@example.com", ["bob@example.org"])
    msg.encoding = "iso-8859-1"
    return msg


def calendar_alternative() -> EmailMessage:
    msg = EmailMultiAlternatives("Calendar", "invite", "ann@example.com", ["bob@example.org"])
    msg.attach_alternative("BEGIN:VCALENDAR\nEND:VCALENDAR\n", "text/calendar")
    return msg


def forwarded() -> EmailMessage:
    msg = EmailMessage("Forwarded", "see below", "ann@example.com", ["bob@example.org"])
    inner = EmailMessage("Inner", "inner body", "x@example.com", ["y@example.org"])
    msg.attach("inner.eml", inner.message().as_bytes(), "message/rfc822")
    return msg


# -- same as Django's SMTP backend -------------------------------------------------------------


def test_native_messages_match_djangos_smtp_backend(
    capture_server: Factory, tmp_path: Path
) -> None:
    factories = [
        plain,
        alternatives,
        html_only,
        html_alternative_without_text,
        attachments(tmp_path),
        header_overrides,
        *([html_alternative_without_text_or_final_newline] if DJANGO_6 else []),
    ]
    for factory in factories:  # these are all built in Rust, not Django's bytes
        assert isinstance(convert(factory()), Message), factory
    server = capture_server()
    theirs, ours, sent = deliver_both(server, factories)
    for subject, reference in theirs.items():
        assert structure(ours[subject]) == structure(reference), subject
    # Headers Django was given verbatim survive verbatim.
    fixed = parse(ours["Header overrides"].content)
    assert fixed["Message-ID"] == "<fixed-id-1@example.com>"
    assert fixed["Date"] == "Mon, 01 Jan 2024 10:00:00 +0000"
    assert ours["Header overrides"].mail_from == "bounces@example.com"
    # Per-recipient results on the message: bcc included, never in the headers.
    first = sent[0]
    results = first.fastsmtp_results  # type: ignore[attr-defined]
    assert [r.recipient for r in results] == [
        "bob@example.org", "carol@example.org", "dave@example.org", "eve@example.org",
    ]  # fmt: skip
    assert all(isinstance(r, Result) and r.status == "accepted" for r in results)
    assert "eve@example.org" not in ours["Plain ✓ subject with ünïcode"].content.decode()


def test_inline_parts_go_into_multipart_related(capture_server: Factory) -> None:
    assert isinstance(convert(inline_image()), Message)
    server = capture_server()
    theirs, ours, _ = deliver_both(server, [inline_image])
    ref, got = theirs["Inline image"], ours["Inline image"]
    # The same parts, headers and envelope; fastsmtp nests the image with the HTML it
    # belongs to (multipart/related) where Django puts it in multipart/mixed.
    assert structure(got, flat=True) == structure(ref, flat=True)
    related = [p.get_content_type() for p in parse(got.content).walk()]
    assert "multipart/related" in related


def test_unrepresentable_messages_fall_back_to_djangos_bytes(capture_server: Factory) -> None:
    factories = [
        custom_subclass,
        latin1,
        calendar_alternative,
        forwarded,
        *([] if DJANGO_6 else [html_alternative_without_text_or_final_newline]),
    ]
    for factory in factories:
        assert isinstance(convert(factory()), RawMessage), factory
    server = capture_server()
    theirs, ours, sent = deliver_both(server, factories)
    for subject, reference in theirs.items():
        assert structure(ours[subject]) == structure(reference), subject
    assert parse(ours["Custom subclass"].content)["X-Stamped"] == "yes"
    assert parse(ours["Latin-1"].content).get_content_charset() == "iso-8859-1"
    assert all(m.fastsmtp_results[0].ok for m in sent)  # type: ignore[attr-defined]


# -- Django's mail API ---------------------------------------------------------------------


def test_send_mail_send_mass_mail_and_mail_admins(capture_server: Factory) -> None:
    server = capture_server()
    with default_mailer(server.port):
        assert mail.send_mail("One", "body", None, ["one@example.org"]) == 1
        sent = mail.send_mass_mail(
            (
                ("Mass 1", "m1", "ann@example.com", ["m1@example.org"]),
                ("Mass 2", "m2", "ann@example.com", ["m2@example.org", "m3@example.org"]),
            )
        )
        assert sent == 2
        mail.mail_admins("Disk full", "details", html_message="<p>details</p>")
    got = by_subject(server.wait_for(4))
    assert got["One"].mail_from == "site@example.com"
    assert sorted(got["Mass 2"].rcpt_tos) == ["m2@example.org", "m3@example.org"]
    admin = got["[Django] Disk full"]
    assert admin.rcpt_tos == ["admin@example.org"] and admin.mail_from == "server@example.com"
    assert parse(admin.content).get_body(("html",)) is not None


def sequential_sends(port: int, count: int, **options: Any) -> Any:
    engine = connection(port=port, **options).engine
    for i in range(count):
        # A new backend object each time, as Django makes one per send_mail call.
        with connection(port=port, **options) as backend:
            assert backend.send_messages([EmailMessage(f"n{i}", "b", None, ["a@x.org"])]) == 1
    assert connection(port=port, **options).engine is engine
    return engine


def test_pool_is_reused_across_calls_and_backends(capture_server: Factory) -> None:
    server = capture_server()
    engine = sequential_sends(server.port, 5, connections=1)
    assert engine.stats.connections_opened == 1
    assert engine.stats.accepted == 5
    assert len(server.wait_for(5)) == 5
    # Another configuration is another engine (and pool).
    assert connection(port=server.port, connections=2).engine is not engine


def test_pool_with_room_for_more_connections_reuses_the_idle_one(
    capture_server: Factory,
) -> None:
    server = capture_server()
    engine = sequential_sends(server.port, 5)  # FASTSMTP["connections"] == 2
    assert engine.stats.connections_opened == 1


def test_thread_safe_under_concurrent_senders(capture_server: Factory) -> None:
    server = capture_server()
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(5):
                msg = EmailMessage(f"t{n}-{i}", "b", None, [f"t{n}@example.org"])
                assert connection(port=server.port).send_messages([msg]) == 1
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    engine = connection(port=server.port).engine
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(server.wait_for(40)) == 40
    assert connection(port=server.port).engine is engine  # one engine for all threads
    assert engine.stats.accepted == 40


# -- outcomes and errors -------------------------------------------------------------------


def test_rejections_fail_silently_and_partial_success(capture_server: Factory) -> None:
    server = capture_server(rcpt_replies={"nobody@example.org": "550 5.1.1 no such user"})
    partial = EmailMessage("partial", "b", None, ["nobody@example.org", "ok@example.org"])
    assert connection(port=server.port).send_messages([partial]) == 1
    statuses = [(r.recipient, r.status, r.code) for r in partial.fastsmtp_results]  # type: ignore[attr-defined]
    assert statuses == [
        ("nobody@example.org", "rejected", 550),
        ("ok@example.org", "accepted", 250),
    ]

    refused = EmailMessage("refused", "b", None, ["nobody@example.org"])
    fine = EmailMessage("fine", "b", None, ["ok@example.org"])
    with pytest.raises(MessageNotSent) as info:
        connection(port=server.port).send_messages([refused, fine])
    assert info.value.email_message is refused
    assert info.value.results[0].code == 550
    assert fine.fastsmtp_results[0].ok  # type: ignore[attr-defined]  # the others were sent
    quiet = connection(port=server.port, fail_silently=True)
    assert quiet.send_messages([EmailMessage("again", "b", None, ["nobody@example.org"])]) == 0
    assert quiet.send_messages([]) == 0
    assert quiet.send_messages([EmailMessage("nobody", "b", None, [])]) == 0


def test_invalid_message_raises_unless_silent(capture_server: Factory) -> None:
    server = capture_server()
    bad = EmailMessage("bad", "b", None, ["not an address"])
    with pytest.raises(ValueError):
        connection(port=server.port).send_messages([bad])
    assert bad.fastsmtp_results[0].status == "failed"  # type: ignore[attr-defined]
    quiet = connection(port=server.port, fail_silently=True)
    good = EmailMessage("good", "b", None, ["ok@example.org"])
    assert quiet.send_messages([EmailMessage("bad", "b", None, ["nope"]), good]) == 1


def test_unreachable_server(capture_server: Factory) -> None:
    port = free_port()
    msg = EmailMessage("lost", "b", None, ["a@example.org"])
    backend = connection(port=port, max_attempts=1, retry_base_delay=0.01)
    with pytest.raises(MessageNotSent, match="connect"):
        backend.send_messages([msg])
    assert msg.fastsmtp_results[0].status == "failed"  # type: ignore[attr-defined]
    quiet = connection(port=port, max_attempts=1, fail_silently=True)
    assert quiet.send_messages([EmailMessage("lost", "b", None, ["a@example.org"])]) == 0


def test_configuration_errors() -> None:
    if MAILERS:  # a MAILERS entry: errors name it, as Django's InvalidMailer does
        with pytest.raises(ImproperlyConfigured, match=r"MAILERS\['test'\].*incompatible"):
            connection(use_tls=True, use_ssl=True)
        with pytest.raises(ImproperlyConfigured, match=r"MAILERS\['test'\].*host"):
            EmailBackend(alias="test")
    else:
        with pytest.raises(ValueError, match="mutually exclusive"):
            EmailBackend(use_tls=True, use_ssl=True)
    with pytest.raises(ImproperlyConfigured, match="conections"):
        connection(conections=3)
    with override_settings(FASTSMTP={"host": "x"}), pytest.raises(ImproperlyConfigured):
        connection()


@pytest.mark.skipif(not MAILERS, reason="MAILERS is Django 6.1's")
def test_mailers_aliases_options_and_fail_silently(capture_server: Factory) -> None:
    """Django 6.1: each MAILERS entry is a backend with its OPTIONS (engine options too);
    send(using=...) picks one; fail_silently is honoured, and fastsmtp adds no warning of
    its own to Django's deprecation of passing it around."""
    server = capture_server(rcpt_replies={"nobody@example.org": "550 5.1.1 no such user"})
    options = {"host": "127.0.0.1", "port": server.port}
    mailers = {
        "default": {"BACKEND": OURS, "OPTIONS": options},
        "bulk": {"BACKEND": OURS, "OPTIONS": {**options, "connections": 1}},
        "quiet": {"BACKEND": OURS, "OPTIONS": {**options, "fail_silently": True}},
    }
    with override_settings(MAILERS=mailers), warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        handler = mail.mailers  # type: ignore[attr-defined, unused-ignore]
        assert handler["bulk"].engine.config.connections == 1
        assert handler["quiet"].fail_silently and not handler.default.fail_silently
        assert EmailMessage("bulk", "b", None, ["a@example.org"]).send(using="bulk") == 1
        refused = EmailMessage("refused", "b", None, ["nobody@example.org"])
        assert refused.send(using="quiet") == 0
        with pytest.raises(MessageNotSent):
            EmailMessage("loud", "b", None, ["nobody@example.org"]).send(using="default")
    assert seen == []
    # The deprecated way still works; Django warns, fastsmtp does not add to it.
    with override_settings(MAILERS=mailers), warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert mail.send_mail("q", "b", None, ["nobody@example.org"], fail_silently=True) == 0
        quiet = get_connection(fail_silently=True)
        assert quiet.fail_silently
    assert seen and all("fastsmtp" not in w.filename for w in seen), seen
    assert {"bulk"} == {str(parse(m.content)["Subject"]) for m in server.wait_for(1)}


# -- TLS and AUTH ------------------------------------------------------------------------------


def test_starttls_and_auth_from_django_settings(capture_server: Factory, pki: TestPKI) -> None:
    server = capture_server(
        tls_context=pki.server_context(), require_starttls=True, auth_users={"web": "pw"}
    )
    with default_mailer(
        server.port, {"cafile": str(pki.ca_file)}, use_tls=True, username="web", password="pw"
    ):
        assert mail.send_mail("tls", "b", None, ["a@example.org"]) == 1
        assert default_connection().engine.config.tls == "starttls"
    (got,) = server.wait_for(1)
    assert got.tls and got.auth_login == "web"


def test_implicit_tls_from_use_ssl(capture_server: Factory, pki: TestPKI) -> None:
    server = capture_server(tls_context=pki.server_context(), implicit_tls=True)
    backend = connection(port=server.port, use_ssl=True, cafile=str(pki.ca_file))
    assert backend.engine.config.tls == "implicit"
    assert backend.send_messages([EmailMessage("ssl", "b", None, ["a@example.org"])]) == 1
    assert server.wait_for(1)[0].tls


def test_no_plaintext_credentials_unless_allowed(capture_server: Factory) -> None:
    server = capture_server(auth_users={"web": "pw"}, auth_require_tls=False)
    creds = {"port": server.port, "username": "web", "password": "pw", "max_attempts": 1}
    with pytest.raises(MessageNotSent, match="plaintext"):
        connection(**creds).send_messages([EmailMessage("x", "b", None, ["a@example.org"])])
    allowed = connection(**creds, allow_plaintext_auth=True)
    assert allowed.send_messages([EmailMessage("y", "b", None, ["a@example.org"])]) == 1
    assert server.wait_for(1)[0].auth_login == "web"


def test_dkim_from_the_fastsmtp_setting(capture_server: Factory) -> None:
    server = capture_server()
    signer = fastsmtp.DKIMSigner("example.com", "web", ed25519_pem())
    with default_mailer(server.port, {"dkim": signer}):
        assert mail.send_mail("signed", "body", "ann@example.com", ["a@example.org"]) == 1
        fallback = EmailMessage("signed raw", "body", "ann@example.com", ["b@example.org"])
        fallback.encoding = "iso-8859-1"  # not representable: Django's bytes, signed too
        assert default_connection().send_messages([fallback]) == 1
    assert all(verifies(m.content, signer) for m in server.wait_for(2))


# -- batch mode (django-anymail conventions) -------------------------------------------------


def test_merge_data_sends_one_personalized_message_per_to(capture_server: Factory) -> None:
    server = capture_server()
    msg = EmailMultiAlternatives(
        "Hello {{ name }}: your {{ plan }} plan",
        "Dear {{ name }}, {{ plan }} at {{ site }}.",
        "ann@example.com",
        ["Ann Example <ann@example.org>", "bob@example.org"],
        headers={"X-Plan": "{{ plan }}"},
    )
    msg.attach_alternative("<p>{{ plan }} &amp; {{ site }}</p>", "text/html")
    msg.merge_data = {  # type: ignore[attr-defined]
        "ann@example.org": {"plan": "gold"},
        "bob@example.org": {"plan": "free"},
    }
    msg.merge_global_data = {"site": "Example"}  # type: ignore[attr-defined]
    assert connection(port=server.port).send_messages([msg]) == 1
    got = {m.rcpt_tos[0]: parse(m.content) for m in server.wait_for(2)}
    assert got["ann@example.org"]["Subject"] == "Hello Ann Example: your gold plan"
    assert got["ann@example.org"]["To"].addresses[0].display_name == "Ann Example"
    assert got["bob@example.org"]["X-Plan"] == "free"
    assert str(got["bob@example.org"]["To"]) == "bob@example.org"  # only its own recipient
    body = got["bob@example.org"].get_body(("plain",))
    assert body is not None and "free at Example" in body.get_content()  # type: ignore[attr-defined]
    results = msg.fastsmtp_results  # type: ignore[attr-defined]
    assert [(r.recipient, r.status) for r in results] == [
        ("ann@example.org", "accepted"),
        ("bob@example.org", "accepted"),
    ]


def test_merge_data_refuses_cc(capture_server: Factory) -> None:
    server = capture_server()
    msg = EmailMessage("x", "b", None, ["a@example.org"], cc=["c@example.org"])
    msg.merge_data = {}  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="cc"):
        connection(port=server.port).send_messages([msg])
    assert server.messages == []


# -- against Postfix, and process lifetime ---------------------------------------------------


def test_postfix_starttls_one_session_for_many_calls(
    postfix: PostfixInstance, pki: TestPKI
) -> None:
    since = postfix.log_offset()
    addresses = [f"django-pool-{i}@example.org" for i in range(3)]
    with default_mailer(postfix.port, {"cafile": str(pki.ca_file), "connections": 1}, use_tls=True):
        for i, address in enumerate(addresses):
            assert mail.send_mail(f"pool {i}", f"body {i}", None, [address]) == 1
        fastsmtp.django.shutdown()  # QUIT, so Postfix logs the session
    for i, address in enumerate(addresses):
        (raw,) = postfix.messages_for(address)
        assert parse(raw)["Subject"] == f"pool {i}"
    (session,) = postfix.disconnect_stats(since=since, expected=1)
    assert session["mail"] == 3 and session["starttls"] == 1


@pytest.mark.parametrize("style", ["EMAIL_settings", "MAILERS"])
def test_engine_closes_cleanly_at_exit(capture_server: Factory, tmp_path: Path, style: str) -> None:
    if style == "MAILERS" and not MAILERS:
        pytest.skip("MAILERS is Django 6.1's")
    server = capture_server()
    if style == "MAILERS":
        config = f"""MAILERS={{"default": {{"BACKEND": "{OURS}",
                 "OPTIONS": {{"host": "127.0.0.1", "port": {server.port}}}}}}}"""
    else:
        config = f'EMAIL_BACKEND="{OURS}", EMAIL_HOST="127.0.0.1", EMAIL_PORT={server.port}'
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            """
            import django
            from django.conf import settings
            settings.configure(CONFIG)
            django.setup()
            from django.core.mail import send_mail
            assert send_mail("atexit", "b", "a@example.com", ["b@example.org"]) == 1
            print("sent")
            """
        ).replace("CONFIG", config)
    )
    # Warnings are errors, except Django 6.1's own deprecation of the EMAIL_* settings.
    allow = ["-W", "ignore::PendingDeprecationWarning"] if MAILERS and style != "MAILERS" else []
    proc = subprocess.run(
        [sys.executable, "-W", "error", *allow, str(script)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "sent" and proc.stderr == ""
    assert len(server.wait_for(1)) == 1
