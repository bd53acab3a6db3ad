"""The Python face of the sans-IO protocol core: the binding contract (types, attributes,
exceptions) and hypothesis properties over the bindings (hostile bytes never raise from
``receive_data``; ``parse_replies`` raises only RemoteProtocolError; dot-stuffing
round-trips). The byte-exact tables live in Rust (rust/protocol/connection_tests.rs); the
real-server tests in tests/test_protocol_peers.py.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastsmtp import _fastsmtp as core
from fastsmtp._errors import (
    InvalidMessage,
    LocalProtocolError,
    RemoteProtocolError,
    SMTPUTF8Required,
)
from tests import hypothesis_profiles

hypothesis_profiles.load()

EHLO_FULL = (
    b"250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n"
    b"250-SMTPUTF8\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n"
    b"250-DSN\r\n250 CHUNKING\r\n"
)


def ready(ehlo: bytes = EHLO_FULL) -> core.ClientConnection:
    conn = core.ClientConnection("client.example")
    assert conn.receive_data(b"220 mx.example.org ESMTP\r\n") == []
    assert conn.data_to_send() == b"EHLO client.example\r\n"
    (event,) = conn.receive_data(ehlo)
    assert isinstance(event, core.Ready)
    return conn


def test_ready_event_and_capabilities() -> None:
    conn = core.ClientConnection()
    conn.receive_data(b"220-mx.example.org ESMTP\r\n220 welcome\r\n")
    assert conn.data_to_send() == b"EHLO localhost\r\n"
    assert not conn.is_ready and conn.capabilities is None
    (event,) = conn.receive_data(EHLO_FULL)
    assert isinstance(event, core.Ready)
    assert event.greeting.code == 220 and event.greeting.text == "mx.example.org ESMTP\nwelcome"
    caps = event.capabilities
    assert (caps.pipelining, caps.chunking, caps.size, caps.eight_bit_mime) == (
        True,
        True,
        1000,
        True,
    )
    assert (caps.smtputf8, caps.starttls, caps.enhanced_status_codes, caps.dsn, caps.esmtp) == (
        True,
        True,
        True,
        True,
        True,
    )
    assert caps.auth == ["PLAIN", "LOGIN"]
    assert conn.is_ready and not conn.is_closed and not conn.tls_active
    assert conn.capabilities.size == 1000
    assert "pipelining=True" in repr(caps)


def test_reply_object() -> None:
    (r,) = core.parse_replies(b"550-5.1.1 <x@y>: no such user\r\n550 5.1.1 try another\r\n")
    assert (r.code, r.enhanced_code, r.text) == (550, "5.1.1", "<x@y>: no such user\ntry another")
    assert (r.is_positive, r.is_transient, r.is_permanent) == (False, False, True)
    (ok,) = core.parse_replies(b"354 go ahead\r\n")
    assert ok.is_positive and ok.enhanced_code is None
    assert ok == core.parse_replies(b"354 go ahead\r\n")[0] and ok != r
    assert str(r) == "550 5.1.1 <x@y>: no such user / try another"
    assert core.parse_replies(b"250 ok\r\n250 incomp") == core.parse_replies(b"250 ok\r\n")


def raw(
    recipients: list[str], body: bytes = b"x", sender: str = "a@example.org"
) -> core.RawMessage:
    return core.RawMessage(sender, recipients, body)


def exchange(conn: core.ClientConnection, *replies: bytes) -> list[core.Event]:
    """Take what the connection framed, then feed each reply in turn (a server answers
    only what it has received): the events of all of them."""
    events: list[core.Event] = []
    for reply in replies:
        conn.data_to_send()
        events += conn.receive_data(reply)
    return events


def test_transaction_events() -> None:
    conn = ready()
    conn.submit("lot", 7, raw(["b@example.org", "c@example.org"]))
    assert (conn.in_flight, conn.bytes_in_flight) == (1, 3)
    out = conn.data_to_send()
    # With CHUNKING, the BDAT LAST waits for the MAIL and RCPT replies (data window 1).
    assert out == (
        b"MAIL FROM:<a@example.org> SIZE=3\r\nRCPT TO:<b@example.org>\r\n"
        b"RCPT TO:<c@example.org>\r\n"
    )
    assert conn.receive_data(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 nope\r\n") == []
    assert conn.oldest_unanswered is None  # the BDAT LAST is framed, not yet sent
    bdat = conn.data_to_send()
    assert bdat == b"BDAT 3 LAST\r\nx\r\n"
    oldest = conn.oldest_unanswered
    assert oldest is not None and oldest[0] == "BDAT LAST" and 0 <= oldest[1] < 5
    (result,) = conn.receive_data(b"250 2.0.0 Ok: queued as X\r\n")
    assert isinstance(result, core.TransactionResult)
    assert (result.lot, result.index) == ("lot", 7)
    assert result.mail_reply.code == 250
    assert [r.code for r in result.rcpt_replies if r] == [250, 550]
    assert result.data_reply is not None and result.data_reply.text == "Ok: queued as X"
    assert result.delivered and not result.all_accepted
    assert [(r.code, r.text) for r in result.verdicts() if r] == [
        (250, "Ok: queued as X"),
        (550, "nope"),
    ]
    assert conn.in_flight == 0 and conn.bytes_in_flight == 0
    assert "TransactionResult(lot='lot', index=7, mail=250" in repr(result)
    assert conn.bytes_sent == len(b"EHLO client.example\r\n") + len(out) + len(bdat)


def test_lots_come_back_as_the_same_objects() -> None:
    conn = ready()
    lots = [object(), {"lot": 1}]
    for lot in lots:
        conn.submit(lot, 0, raw(["b@example.org"]))
    events = exchange(
        conn, b"250 ok\r\n250 ok\r\n", b"250 ok\r\n250 ok\r\n250 ok\r\n", b"250 ok\r\n"
    )
    assert all(a is b for a, b in zip((e.lot for e in events), lots, strict=True))


def test_a_cycle_through_a_lot_is_collected() -> None:
    """A lot in flight can reference its connection (lot -> batch -> engine -> ...): the
    garbage collector must see the lots the connection holds to free such a cycle."""
    import gc
    import weakref

    class Lot:
        conn: core.ClientConnection

    conn = ready()
    lot = Lot()
    lot.conn = conn
    conn.submit(lot, 0, raw(["b@example.org"]))
    gone = weakref.ref(lot)
    del conn, lot
    gc.collect()
    assert gone() is None


def test_count_only_acceptances_are_counts_per_lot() -> None:
    conn = core.ClientConnection("client.example", data_window=64)
    conn.receive_data(b"220 mx\r\n")
    conn.data_to_send()
    conn.receive_data(EHLO_FULL)
    first, second = object(), object()
    for i in range(3):
        conn.submit(first, i, raw(["x@b.org", "y@b.org"]), count_only=True)
    conn.submit(second, 0, raw(["x@b.org"]), count_only=True)
    conn.submit(second, 1, raw(["x@b.org"]), count_only=True)
    conn.submit(second, 2, raw(["x@b.org"]))
    conn.data_to_send()
    ok2 = b"250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n"
    ok1 = b"250 ok\r\n250 ok\r\n250 ok\r\n"
    # first's three accepted (merged), second's first accepted, its second refused at
    # RCPT, its third not count-only: a result.
    events = conn.receive_data(ok2 * 3 + ok1 + b"250 ok\r\n550 no\r\n554 no data\r\n" + ok1)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Accepted", "Accepted", "TransactionResult", "TransactionResult"]
    merged, other, refused, plain = events
    assert isinstance(merged, core.Accepted) and isinstance(other, core.Accepted)
    assert (merged.lot, merged.transactions, merged.recipients) == (first, 3, 6)
    assert (other.lot, other.transactions, other.recipients) == (second, 1, 1)
    assert isinstance(refused, core.TransactionResult) and isinstance(plain, core.TransactionResult)
    assert (refused.index, refused.all_accepted) == (1, False)
    assert (plain.index, plain.all_accepted) == (2, True)
    assert conn.in_flight == 0
    assert repr(merged) == "Accepted(transactions=3, recipients=6)"


def lot_messages(*addresses: str) -> list[core.BuiltMessage]:
    t = core.Template({"to": [], "sender": "a@b.org", "subject": "s", "text": "hi\n"})
    messages, failures = t.render_split(list(addresses))
    assert failures == []
    return messages


def test_submit_lot_tags_each_message_with_its_position() -> None:
    conn = ready(b"250-mx\r\n250 PIPELINING\r\n")
    lot = object()
    messages = lot_messages("x@b.org", "y@b.org", "z@b.org", "w@b.org")
    assert conn.submit_lot(lot, messages, 1, 2) == []
    assert conn.submit_lot(lot, messages, 3, 5) == []  # count past the end: up to the end
    assert conn.in_flight == 3
    ok = b"250 ok\r\n250 ok\r\n354 go\r\n"
    refused = b"250 ok\r\n550 no\r\n554 no data\r\n"
    # 1 accepted; 2 refused at RCPT (then RSET); 3 accepted.
    events = exchange(conn, ok, b"250 ok\r\n" + refused, b"250 ok\r\n" + ok, b"250 ok\r\n")
    assert [(type(e).__name__, e.index) for e in events] == [  # type: ignore[union-attr]
        ("TransactionResult", 1),
        ("TransactionResult", 2),
        ("TransactionResult", 3),
    ]
    assert all(e.lot is lot for e in events)  # type: ignore[union-attr]
    assert ", index=2, mail=250" in repr(events[1])
    assert [e.all_accepted for e in events] == [True, False, True]  # type: ignore[union-attr]


def test_submit_lot_refuses_messages_alone() -> None:
    """A message the server cannot take comes back with its position; the others of the
    lot are queued in order, as submit() would have queued them one by one."""
    conn = ready(b"250-mx\r\n250-PIPELINING\r\n250 SIZE 100000\r\n")  # no SMTPUTF8
    messages = lot_messages("x@b.org", "ü@b.org", "y@b.org", "ö@b.org")
    refused = conn.submit_lot("lot", messages, 0, 4)
    assert [(position, type(e)) for position, e in refused] == [
        (1, SMTPUTF8Required),
        (3, SMTPUTF8Required),
    ]
    assert conn.in_flight == 2
    assert conn.data_to_send().endswith(b"RCPT TO:<x@b.org>\r\nDATA\r\n")
    assert conn.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n") == []
    second = conn.data_to_send()  # the first body, then the next envelope
    assert second.split(b".\r\nMAIL FROM:<a@b.org>")[1].endswith(
        b"\r\nRCPT TO:<y@b.org>\r\nDATA\r\n"
    )
    events = conn.receive_data(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    conn.data_to_send()
    events += conn.receive_data(b"250 ok\r\n")
    assert [e.index for e in events] == [0, 2]  # type: ignore[union-attr]
    ((position, error),) = conn.submit_lot("lot", ["not a message"], 0, 1)  # type: ignore[list-item]
    assert position == 0 and isinstance(error, TypeError)


def test_raw_message_validates_and_normalizes_when_made() -> None:
    message = core.RawMessage("a@b.org", ["c@d.org"], b"Subject: x\n\nbare\rcr", "<id@x>")
    assert message.as_bytes() == b"Subject: x\r\n\r\nbare\r\ncr\r\n"
    assert (message.envelope_sender, message.recipients, message.message_id) == (
        "a@b.org",
        ["c@d.org"],
        "<id@x>",
    )
    assert len(message) == len(message.as_bytes())
    for sender, recipients, field in [
        ("a@b.org\r\nRCPT TO:<x@y>", ["c@d.org"], "sender"),
        ("a@b.org", ["c@d.org", "e f@g"], "recipients[1]"),
        ("a@b.org", [], "recipients"),
    ]:
        with pytest.raises(InvalidMessage) as info:
            core.RawMessage(sender, recipients, b"x")
        assert info.value.field == field
    assert core.RawMessage("", ["c@d.org"], b"x").envelope_sender == ""  # null sender


def test_submit_with_other_recipients() -> None:
    conn = ready(b"250-mx\r\n250 PIPELINING\r\n")
    conn.submit("lot", 0, raw(["b@x.org", "c@x.org"]), ["c@x.org"])
    assert b"RCPT TO:<b@x.org>" not in conn.data_to_send()
    with pytest.raises(InvalidMessage):
        conn.submit("lot", 1, raw(["b@x.org"]), ["bad address"])


def test_eof_abort_and_421() -> None:
    conn = ready(b"250-mx\r\n250 PIPELINING\r\n")
    conn.submit(1, 0, raw(["b@example.org"], b"1\r\n"))
    conn.data_to_send()
    conn.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    conn.data_to_send()  # body and "." handed out
    conn.submit(2, 0, raw(["b@example.org"], b"2\r\n"))
    events = conn.receive_data(b"421 4.3.2 going down\r\n")
    assert [type(e) for e in events] == [
        core.TransactionAborted,
        core.TransactionAborted,
        core.Closed,
    ]
    first, second, closed = events
    assert isinstance(first, core.TransactionAborted)
    assert isinstance(second, core.TransactionAborted) and isinstance(closed, core.Closed)
    assert (first.lot, first.end_of_data_sent, first.reason) == (1, True, "421")
    assert (second.lot, second.end_of_data_sent) == (2, False)
    assert first.reply is not None and first.reply.code == 421
    assert closed.reply is not None and closed.reply.enhanced_code == "4.3.2"
    assert closed.reason == "421" and closed.error is None
    assert conn.is_closed and not conn.is_ready
    assert conn.eof() == [] and conn.data_to_send() == b""
    with pytest.raises(LocalProtocolError):
        conn.quit()
    # EOF and the caller's abort.
    conn = ready()
    conn.submit(1, 0, raw(["b@example.org"]))
    assert conn.receive_data(b"") == []  # empty data is not EOF
    aborted, closed = conn.abort("timed out after 1s waiting for the reply to MAIL FROM")
    assert isinstance(aborted, core.TransactionAborted) and isinstance(closed, core.Closed)
    assert (
        aborted.reason == closed.reason == "timed out after 1s waiting for the reply to MAIL FROM"
    )
    conn = ready()
    conn.submit(1, 0, raw(["b@example.org"]))
    aborted, closed = conn.eof()
    assert isinstance(closed, core.Closed) and closed.reason == "eof"


def test_protocol_error_is_sticky_and_typed() -> None:
    conn = ready()
    (closed,) = conn.receive_data(b"250 nobody asked\r\n")
    assert isinstance(closed, core.Closed)
    assert isinstance(closed.error, RemoteProtocolError)
    assert closed.reason.startswith("protocol error")
    for call in (
        conn.quit,
        conn.starttls,
        lambda: conn.submit(1, 0, raw(["d@e.f"])),
    ):
        with pytest.raises(LocalProtocolError):
            call()
    assert conn.receive_data(b"250 more\r\n") == []


def test_command_failed_and_quit() -> None:
    conn = core.ClientConnection()
    (failed,) = conn.receive_data(b"554 5.7.1 no service\r\n")
    assert isinstance(failed, core.CommandFailed)
    assert failed.command == "greeting" and failed.reply.code == 554
    conn.quit()
    assert conn.data_to_send() == b"QUIT\r\n"
    (closed,) = conn.receive_data(b"221 bye\r\n")
    assert closed.reason == "quit" and closed.reply.code == 221


def test_starttls_and_auth_events() -> None:
    conn = ready()
    with pytest.raises(LocalProtocolError, match="TLS"):
        conn.auth("PLAIN", "u", "p")
    conn.starttls()
    assert conn.data_to_send() == b"STARTTLS\r\n"
    (go,) = conn.receive_data(b"220 go ahead\r\n250 injected\r\n")
    assert isinstance(go, core.StartTlsReady)
    conn.tls_established()
    assert conn.tls_active and conn.capabilities is None
    assert conn.data_to_send() == b"EHLO client.example\r\n"
    (again,) = conn.receive_data(b"250-mx\r\n250 AUTH PLAIN\r\n")
    assert isinstance(again, core.Ready) and again.capabilities.auth == ["PLAIN"]
    conn.auth("plain", "u", "p")
    assert conn.data_to_send() == b"AUTH PLAIN AHUAcA==\r\n"
    (failed,) = conn.receive_data(b"535 5.7.8 no\r\n")
    assert isinstance(failed, core.AuthFailed) and failed.reply.code == 535
    conn.auth("PLAIN", "u", "p")
    conn.data_to_send()
    (ok,) = conn.receive_data(b"235 2.7.0 ok\r\n")
    assert isinstance(ok, core.AuthSucceeded) and ok.reply.enhanced_code == "2.7.0"


def test_submit_errors() -> None:
    conn = core.ClientConnection()
    with pytest.raises(LocalProtocolError):
        conn.submit(1, 0, raw(["d@e.f"]))
    conn = ready(b"250-mx\r\n250-PIPELINING\r\n250 SIZE 100\r\n")
    with pytest.raises(SMTPUTF8Required):
        conn.submit(1, 0, raw(["d@e.f"], sender="ä@b.c"))
    with pytest.raises(InvalidMessage) as info:
        conn.submit(1, 0, raw(["d@e.f"], b"x" * 101))
    assert info.value.field == "body"
    for bad in ("d@e.f\r\nRCPT TO:<evil@x>", "d e@f", "<d@e.f>", "d@e.f\x00", ""):
        with pytest.raises(InvalidMessage) as info:
            conn.submit(1, 0, raw(["ok@e.f"]), ["ok@e.f", bad])
        assert info.value.field == "recipients[1]"
    with pytest.raises(InvalidMessage):
        conn.submit(1, 0, raw(["ok@e.f"]), [])
    with pytest.raises(TypeError):
        conn.submit(1, 0, b"not a message")  # type: ignore[arg-type]
    assert conn.data_to_send() == b"" and conn.in_flight == 0
    with pytest.raises(LocalProtocolError):
        core.ClientConnection("bad host name")
    with pytest.raises(LocalProtocolError):
        core.ClientConnection(data_window=0)


def test_dot_stuff() -> None:
    assert core.dot_stuff(b"") == b""
    assert core.dot_stuff(b".") == b"..\r\n"
    assert core.dot_stuff(b"a\n.b\r.c\r\n") == b"a\r\n..b\r\n..c\r\n"


# --------------------------------------------------------------------------------------------
# properties
# --------------------------------------------------------------------------------------------


def normalize(body: bytes) -> bytes:
    """Reference: every CR, LF or CRLF becomes CRLF; a final CRLF is added."""
    out = re.sub(rb"\r\n|\r|\n", b"\r\n", body)
    return out if not out or out.endswith(b"\r\n") else out + b"\r\n"


def unstuff(wire: bytes) -> bytes:
    return b"".join(
        line[1:] if line.startswith(b".") else line for line in wire.splitlines(keepends=True)
    )


replyish = st.lists(
    st.one_of(
        st.sampled_from([b"250", b"354", b"421", b"550", b"-", b" ", b"\r\n", b"\n", b"2.1.5 "]),
        st.binary(max_size=8),
    ),
    max_size=40,
).map(b"".join)


@given(st.binary(max_size=300) | replyish)
def test_parse_replies_only_raises_remote_protocol_error(data: bytes) -> None:
    try:
        replies = core.parse_replies(data)
    except RemoteProtocolError:
        return
    for r in replies:
        assert 200 <= r.code <= 599 and isinstance(r.text, str)


@given(st.binary(max_size=300))
def test_dot_stuff_roundtrip(body: bytes) -> None:
    wire = core.dot_stuff(body)
    assert unstuff(wire) == normalize(body)
    assert b"\r\n.\r\n" not in wire and not wire.startswith(b".\r\n")
    assert re.search(rb"\r(?!\n)|(?<!\r)\n", wire) is None


@given(
    ehlo=st.sampled_from(
        [EHLO_FULL, b"250-x\r\n250 PIPELINING\r\n", b"250 x\r\n", b"250-x\r\n250 CHUNKING\r\n"]
    ),
    recipients=st.lists(st.integers(1, 3), max_size=5),
    chunks=st.lists(replyish, max_size=8),
)
def test_receive_data_never_raises(ehlo: bytes, recipients: list[int], chunks: list[bytes]) -> None:
    conn = ready(ehlo)
    for i, n in enumerate(recipients):
        conn.submit(i, 0, raw([f"r{j}@x.org" for j in range(n)], b".b", "a@x.org"))
    events = []
    for chunk in chunks:
        conn.data_to_send()
        events.extend(conn.receive_data(chunk))
    events.extend(conn.eof())
    ids = sorted(
        e.lot for e in events if isinstance(e, core.TransactionResult | core.TransactionAborted)
    )
    assert ids == list(range(len(recipients)))
    assert isinstance(events[-1], core.Closed)
    assert sum(isinstance(e, core.Closed) for e in events) == 1
