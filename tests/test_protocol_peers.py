"""The sans-IO ClientConnection against real SMTP servers, driven by ``tests/wire.py``.

* aiosmtpd (no PIPELINING, no CHUNKING): the lock-step path, STARTTLS, AUTH, SMTPUTF8.
* Postfix ``smtp-sink`` (PIPELINING, no CHUNKING): the number of writes per transaction
  proves that MAIL+RCPT+DATA went as one group and body + "." + the next group as another.
* Postfix ``smtpd`` (CHUNKING): ``bdat=`` and several messages per connection in its log,
  and how Postfix leaves a refused transaction, which decides where RSET is needed.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import itertools
import uuid

import pytest

from fastsmtp import _fastsmtp as core
from fastsmtp._errors import InvalidMessage, LocalProtocolError, SMTPUTF8Required
from tests.wire import Wire, connect

_ids = itertools.count(1)


def uid() -> str:
    return uuid.uuid4().hex[:10]


def submit(wire: Wire, sender: str, recipients: list[str], body: bytes) -> int:
    txn_id = next(_ids)
    wire.conn.submit(txn_id, 0, core.RawMessage(sender, recipients, body))
    return txn_id


def codes(result: core.TransactionResult) -> tuple[int, list[int | None], int | None]:
    return (
        result.mail_reply.code,
        [r.code if r else None for r in result.rcpt_replies],
        result.data_reply.code if result.data_reply else None,
    )


def header(raw: bytes, name: str) -> str | None:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    value = msg[name]
    return None if value is None else str(value)


def body_of(raw: bytes) -> bytes:
    return raw.split(b"\n\n", 1)[1]


# --------------------------------------------------------------------------------------------
# aiosmtpd: lock-step
# --------------------------------------------------------------------------------------------


async def test_aiosmtpd_lockstep_one_command_per_write(capture_server) -> None:
    server = capture_server()
    async with connect(*server.address) as wire:
        caps = wire.conn.capabilities
        assert caps is not None and caps.esmtp
        assert not caps.pipelining and not caps.chunking
        first = len(wire.writes)
        bodies = [
            b"Subject: one\r\n\r\n.leading dot\r\n..two dots\r\n",
            b"Subject: two\n\nbare LF\nand bare CR\rend",
            b"Subject: three\r\n\r\nno final newline",
        ]
        ids = [submit(wire, "a@example.org", ["b@example.org", "c@example.org"], b) for b in bodies]
        wire.flush()
        results = await wire.results(len(ids))
        closed = await wire.quit()
    assert closed.reason == "quit" and closed.reply.code == 221
    for txn_id in ids:
        assert codes(results[txn_id]) == (250, [250, 250], 250)
    messages = server.wait_for(3)
    assert [m.content for m in messages] == [
        b"Subject: one\r\n\r\n.leading dot\r\n..two dots\r\n",
        b"Subject: two\r\n\r\nbare LF\r\nand bare CR\r\nend\r\n",
        b"Subject: three\r\n\r\nno final newline\r\n",
    ]
    assert all(m.rcpt_tos == ["b@example.org", "c@example.org"] for m in messages)
    # Lock-step: every write is one command, or one dot-stuffed body with its ".".
    for write in wire.writes[first:]:
        if write.endswith(b"\r\n.\r\n"):
            assert not write.startswith((b"MAIL", b"RCPT", b"DATA"))
        else:
            assert write.count(b"\r\n") == 1, write
    commands = [w.split(b" ")[0].strip() for w in wire.writes[first:] if not w.endswith(b".\r\n")]
    assert commands == [b"MAIL", b"RCPT", b"RCPT", b"DATA"] * 3 + [b"QUIT"]


async def test_aiosmtpd_refused_recipients_and_rset(capture_server) -> None:
    server = capture_server(
        rcpt_replies={"bad@example.org": "550 5.1.1 no such user"},
        mail_replies={"refused@example.org": "451 4.3.0 try later"},
    )
    async with connect(*server.address) as wire:
        partial = submit(wire, "a@example.org", ["bad@example.org", "ok@example.org"], b"1\r\n")
        none_ok = submit(wire, "a@example.org", ["bad@example.org"], b"2\r\n")
        refused = submit(wire, "refused@example.org", ["ok@example.org"], b"3\r\n")
        after = submit(wire, "a@example.org", ["ok2@example.org"], b"4\r\n")
        wire.flush()
        results = await wire.results(4)
    assert codes(results[partial]) == (250, [550, 250], 250)
    assert results[partial].rcpt_replies[0].enhanced_code == "5.1.1"
    # Every recipient refused: no DATA in lock-step; the server is still in a transaction.
    assert codes(results[none_ok]) == (250, [550], None)
    assert codes(results[refused]) == (451, [None], None)
    assert codes(results[after]) == (250, [250], 250)
    sent = b"".join(wire.writes)
    # RSET exactly once: after the transaction left open, not after the refused MAIL.
    assert sent.count(b"RSET\r\n") == 1
    assert sent.index(b"RSET\r\n") < sent.index(b"MAIL FROM:<refused@example.org>")
    assert [m.content for m in server.wait_for(2)] == [b"1\r\n", b"4\r\n"]


async def test_aiosmtpd_starttls_then_auth(capture_server, pki) -> None:
    server = capture_server(tls_context=pki.server_context(), auth_users={"ann": "secret"})
    async with connect(*server.address) as wire:
        conn = wire.conn
        assert conn.capabilities.starttls and not conn.tls_active
        with pytest.raises(LocalProtocolError):
            conn.auth("PLAIN", "ann", "secret")  # not offered (and no TLS)
        await wire.starttls(pki.client_context())
        assert conn.tls_active
        caps = conn.capabilities
        assert not caps.starttls and {"PLAIN", "LOGIN"} <= set(caps.auth)
        conn.auth("PLAIN", "ann", "wrong")
        wire.flush()
        failed = await wire.wait_for(core.AuthFailed)
        assert failed[0].reply.code == 535
        conn.auth("LOGIN", "ann", "secret")
        wire.flush()
        ok = await wire.wait_for(core.AuthSucceeded)
        assert ok[0].reply.code == 235
        txn = submit(wire, "ann@example.org", ["bob@example.org"], b"Subject: tls\r\n\r\nhi\r\n")
        wire.flush()
        results = await wire.results(1)
        await wire.quit()
    assert codes(results[txn]) == (250, [250], 250)
    (message,) = server.wait_for(1)
    assert message.tls and message.auth_login == "ann"
    assert [(a.mechanism, a.success) for a in server.auth_attempts] == [
        ("PLAIN", False),
        ("LOGIN", True),
    ]


async def test_aiosmtpd_no_credentials_in_plaintext(capture_server) -> None:
    server = capture_server(auth_users={"ann": "secret"}, auth_require_tls=False)
    async with connect(*server.address) as wire:
        conn = wire.conn
        assert "PLAIN" in conn.capabilities.auth and not conn.tls_active
        with pytest.raises(LocalProtocolError):
            conn.auth("PLAIN", "ann", "secret")
        assert conn.data_to_send() == b""
        conn.auth("PLAIN", "ann", "secret", allow_plaintext=True)
        wire.flush()
        assert (await wire.wait_for(core.AuthSucceeded))[0].reply.code == 235


async def test_aiosmtpd_smtputf8(capture_server) -> None:
    plain = capture_server(smtputf8=False)
    async with connect(*plain.address) as wire:
        with pytest.raises(SMTPUTF8Required):
            submit(wire, "a@example.org", ["jürgen@example.org"], b"x\r\n")
        assert wire.conn.in_flight == 0
    utf8 = capture_server(smtputf8=True)
    async with connect(*utf8.address) as wire:
        txn = submit(wire, "a@example.org", ["jürgen@example.org"], "é\r\n".encode())
        wire.flush()
        results = await wire.results(1)
    assert codes(results[txn]) == (250, [250], 250)
    (message,) = utf8.wait_for(1)
    assert "SMTPUTF8" in message.mail_options and message.rcpt_tos == ["jürgen@example.org"]


# --------------------------------------------------------------------------------------------
# smtp-sink: PIPELINING without CHUNKING
# --------------------------------------------------------------------------------------------


async def test_smtp_sink_pipelines_groups(smtp_sink_factory) -> None:
    sink = smtp_sink_factory(dump=True)
    count = 10
    async with connect(*sink.address) as wire:
        caps = wire.conn.capabilities
        assert caps.pipelining and not caps.chunking
        first = len(wire.writes)
        ids = [
            submit(wire, "a@example.org", ["b@example.org", "c@example.org"], b".x %d\r\n" % i)
            for i in range(count)
        ]
        wire.conn.quit()
        wire.flush()
        results = await wire.results(count)
        await wire.wait_for(core.Closed)
    assert all(codes(results[i]) == (250, [250, 250], 250) for i in ids)
    writes = wire.writes[first:]
    # One write for the first group, then one per 354: body + "." + the next group
    # (RFC 2920 3.1), the last one carrying QUIT. Lock-step would need 5 writes each.
    assert len(writes) == count + 1
    group = (
        b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
        b"RCPT TO:<c@example.org>\r\nDATA\r\n"
    )
    assert writes[0] == group
    for i, write in enumerate(writes[1:]):
        tail = b"QUIT\r\n" if i == count - 1 else group
        assert write == b"..x %d\r\n.\r\n" % i + tail
    assert len(sink.wait_for(count)) == count


# --------------------------------------------------------------------------------------------
# Postfix smtpd: CHUNKING, and the RSET question
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data_window", [1, 64])
async def test_postfix_bdat_many_messages_per_connection(postfix, data_window: int) -> None:
    """With a data window of 64 everything, QUIT included, goes out in one write; with the
    default of 1 each BDAT LAST waits for every earlier reply: one write per message."""
    tag = uid()
    count = 20
    since = postfix.log_offset()
    async with connect(*postfix.address, data_window=data_window) as wire:
        caps = wire.conn.capabilities
        assert caps.pipelining and caps.chunking and caps.size and caps.eight_bit_mime
        first = len(wire.writes)
        ids = [
            submit(
                wire,
                f"s-{tag}@example.com",
                [f"r-{tag}@example.org"],
                b"Subject: %d\n\n.dot line\nbare LF\n" % i,
            )
            for i in range(count)
        ]
        wire.conn.quit()
        wire.flush()
        results = await wire.results(count)
        await wire.wait_for(core.Closed)
    writes = wire.writes[first:]
    if data_window == 64:
        assert len(writes) == 1  # no reply was waited for
    else:
        # MAIL+RCPT; then per message its BDAT LAST and the next MAIL+RCPT (QUIT last).
        assert len(writes) == count + 1
        assert all(w.count(b" LAST\r\n") == 1 for w in writes[1:])
    sent = b"".join(writes)
    assert sent.count(b" LAST\r\n") == count
    assert all(codes(results[i]) == (250, [250], 250) for i in ids)
    (stats,) = postfix.disconnect_stats(since=since, expected=1)
    assert (stats["mail"], stats["rcpt"], stats["bdat"], stats["quit"]) == (count, count, count, 1)
    assert "bdat_total" not in stats and "rset" not in stats
    delivered = postfix.messages_for(f"r-{tag}@example.org", expected=count)
    assert len(delivered) == count
    # BDAT is raw: the leading dot is not doubled, bare LFs went out as CRLF.
    assert b"BDAT 34 LAST\r\nSubject: 0\r\n\r\n.dot line\r\nbare LF\r\n" in sent
    assert {body_of(m.replace(b"\r\n", b"\n")) for m in delivered} == {b".dot line\nbare LF\n"}


@pytest.mark.parametrize("data_window", [1, 64])
async def test_postfix_refused_transaction_before_the_next(postfix, data_window: int) -> None:
    """CHUNKING path, A (every recipient refused) then B. With a data window of 64 both are
    written back to back: Postfix ends the transaction with its reply to A's BDAT, so B's
    MAIL is accepted without RSET. With the default window of 1, A's BDAT LAST waits for
    its RCPT reply: A's body is never sent, RSET closes A, and B follows."""
    tag = uid()
    since = postfix.log_offset()
    async with connect(*postfix.address, data_window=data_window) as wire:
        first = len(wire.writes)
        a = submit(wire, f"a-{tag}@example.com", ["x@nowhere.invalid"], b"SECRET-A\r\n")
        b = submit(
            wire, f"b-{tag}@example.com", [f"r-{tag}@example.org"], b"Subject: B\r\n\r\nB\r\n"
        )
        wire.flush()
        results = await wire.results(2)
        await wire.quit()
    sent = b"".join(wire.writes[first:])
    assert codes(results[b]) == (250, [250], 250)
    (delivered,) = postfix.messages_for(f"r-{tag}@example.org")
    assert header(delivered, "Return-Path") == f"<b-{tag}@example.com>"
    (stats,) = postfix.disconnect_stats(since=since, expected=1)
    assert stats["mail"] == 2 and "mail_total" not in stats
    if data_window == 64:
        assert len(wire.writes) == first + 2  # both transactions, then QUIT
        assert codes(results[a]) == (250, [554], 554)
        assert "no valid recipients" in results[a].data_reply.text
        assert "rset" not in stats
        assert (stats["bdat"], stats["bdat_total"]) == (1, 2)
    else:
        assert codes(results[a]) == (250, [554], None)
        assert b"SECRET-A" not in sent
        assert sent.index(b"RSET\r\n") < sent.index(f"MAIL FROM:<b-{tag}".encode())
        assert stats["rset"] == 1 and stats["bdat"] == 1 and "bdat_total" not in stats


async def test_postfix_keeps_transaction_open_after_refused_data(postfix) -> None:
    """The premise of RSET in the DATA path, shown on raw sockets: after "554 no valid
    recipients" to DATA, Postfix keeps the transaction, a following MAIL gets "503 nested"
    and the next RCPT joins the OLD transaction (so B would leave with A's sender)."""
    reader, writer = await asyncio.open_connection(*postfix.address)

    async def reply() -> bytes:
        lines = []
        while True:
            line = await reader.readline()
            lines.append(line)
            if line[3:4] != b"-":
                return b"".join(lines)

    try:
        await reply()
        writer.write(b"EHLO client.example\r\n")
        await reply()
        writer.write(
            b"MAIL FROM:<a@example.com>\r\nRCPT TO:<x@nowhere.invalid>\r\nDATA\r\n"
            b"MAIL FROM:<b@example.com>\r\n"
        )
        replies = [await reply() for _ in range(4)]
        writer.write(b"QUIT\r\n")
        await reply()
    finally:
        writer.close()
    assert [r[:3] for r in replies] == [b"250", b"554", b"554", b"503"]
    assert b"nested MAIL" in replies[3]


async def test_postfix_pipelining_refused_data_sends_rset(postfix_factory) -> None:
    """PIPELINING without CHUNKING: A's DATA is refused (no valid recipients), so nothing of
    A's body is sent and RSET precedes B's MAIL; B leaves with its own sender."""
    server = postfix_factory(discard_ehlo_keywords=["chunking"])
    tag = uid()
    async with connect(*server.address) as wire:
        caps = wire.conn.capabilities
        assert caps.pipelining and not caps.chunking
        a = submit(wire, f"a-{tag}@example.com", ["x@nowhere.invalid"], b"SECRET-A\r\n")
        b = submit(
            wire, f"b-{tag}@example.com", [f"r-{tag}@example.org"], b"Subject: B\r\n\r\nB\r\n"
        )
        wire.flush()
        results = await wire.results(2)
        await wire.quit()
    assert codes(results[a]) == (250, [554], 554)
    assert codes(results[b]) == (250, [250], 250)
    sent = b"".join(wire.writes)
    assert b"SECRET-A" not in sent
    assert sent.count(b"RSET\r\n") == 1
    assert sent.index(b"RSET\r\n") < sent.index(f"MAIL FROM:<b-{tag}".encode())
    (delivered,) = server.messages_for(f"r-{tag}@example.org")
    assert header(delivered, "Return-Path") == f"<b-{tag}@example.com>"
    (stats,) = server.disconnect_stats(expected=1)
    assert stats["rset"] == 1 and stats["mail"] == 2 and "mail_total" not in stats


async def test_postfix_size_and_built_message(postfix_factory) -> None:
    server = postfix_factory(message_size_limit=20_000)
    tag = uid()
    async with connect(*server.address) as wire:
        assert wire.conn.capabilities.size == 20_000
        with pytest.raises(InvalidMessage):
            submit(wire, "a@example.com", [f"r-{tag}@example.org"], b"x" * 30_000)
        assert wire.conn.data_to_send() == b"" and wire.conn.in_flight == 0
        message = core.build_message(
            {
                "sender": "Ann <ann@example.com>",
                "to": [f"r-{tag}@example.org"],
                "cc": [],
                "bcc": [],
                "reply_to": [],
                "subject": "built",
                "text": ".dot first\nsecond line\n",
                "html": None,
                "attachments": [],
                "headers": [],
                "envelope_sender": None,
                "message_id": None,
                "date": "Mon, 01 Jan 2024 00:00:00 +0000",
            }
        )
        wire.conn.submit(99, 0, message)
        assert wire.conn.bytes_in_flight == len(message)
        wire.flush()
        results = await wire.results(1)
        await wire.quit()
    assert codes(results[99]) == (250, [250], 250)
    (delivered,) = server.messages_for(f"r-{tag}@example.org")
    assert delivered.replace(b"\r\n", b"\n").endswith(message.as_bytes().replace(b"\r\n", b"\n"))


async def test_postfix_starttls_auth(postfix_factory) -> None:
    server = postfix_factory(tls="may", auth=True, users={"ann": "s3cret"})
    tag = uid()
    async with connect(*server.address) as wire:
        conn = wire.conn
        assert conn.capabilities.starttls and conn.capabilities.auth == []
        await wire.starttls(server.pki.client_context())
        assert {"PLAIN", "LOGIN"} <= set(conn.capabilities.auth)
        conn.auth("PLAIN", "ann", "wrong")
        wire.flush()
        assert (await wire.wait_for(core.AuthFailed))[0].reply.code == 535
        conn.auth("LOGIN", "ann", "s3cret")
        wire.flush()
        assert (await wire.wait_for(core.AuthSucceeded))[0].reply.code == 235
        txn = submit(wire, "ann@example.com", [f"r-{tag}@example.org"], b"Subject: t\r\n\r\nt\r\n")
        wire.flush()
        results = await wire.results(1)
        await wire.quit()
    assert codes(results[txn]) == (250, [250], 250)
    assert len(server.messages_for(f"r-{tag}@example.org")) == 1
