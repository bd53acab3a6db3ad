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


def test_transaction_events() -> None:
    conn = ready()
    conn.submit(7, sender="a@example.org", recipients=["b@example.org", "c@example.org"], body=b"x")
    assert (conn.in_flight, conn.bytes_in_flight) == (1, 3)
    out = conn.data_to_send()
    assert out == (
        b"MAIL FROM:<a@example.org> SIZE=3\r\nRCPT TO:<b@example.org>\r\n"
        b"RCPT TO:<c@example.org>\r\nBDAT 3 LAST\r\nx\r\n"
    )
    (result,) = conn.receive_data(
        b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 nope\r\n250 2.0.0 Ok: queued as X\r\n"
    )
    assert isinstance(result, core.TransactionResult)
    assert result.tag == 7
    assert result.mail_reply.code == 250
    assert [r.code for r in result.rcpt_replies] == [250, 550]
    assert result.data_reply.text == "Ok: queued as X"
    assert conn.in_flight == 0 and conn.bytes_in_flight == 0
    assert "TransactionResult(tag=7" in repr(result)
    assert conn.bytes_sent == len(b"EHLO client.example\r\n") + len(out)


def test_tags_come_back_as_the_same_objects() -> None:
    conn = ready()
    tags = [object(), {"job": 1}]
    for tag in tags:
        conn.submit(tag, sender="a@example.org", recipients=["b@example.org"], body=b"x")
    conn.data_to_send()
    events = conn.receive_data(b"250 ok\r\n250 ok\r\n250 ok\r\n" * 2)
    assert [e.tag for e in events if isinstance(e, core.TransactionResult)] == tags
    assert all(a is b for a, b in zip((e.tag for e in events), tags, strict=True))


def test_a_cycle_through_a_tag_is_collected() -> None:
    """A job in flight can reference its connection (job -> callback -> engine -> ...):
    the garbage collector must see the tags the connection holds to free such a cycle."""
    import gc
    import weakref

    class Job:
        conn: core.ClientConnection

    conn = ready()
    job = Job()
    job.conn = conn
    conn.submit(job, sender="a@example.org", recipients=["b@example.org"], body=b"x")
    gone = weakref.ref(job)
    del conn, job
    gc.collect()
    assert gone() is None


def test_on_accepted_counts_instead_of_results() -> None:
    conn = ready()
    first: list[int] = []
    second: list[int] = []

    on_first = first.append
    for tag in range(3):
        conn.submit(
            tag,
            sender="a@b.org",
            recipients=["x@b.org", "y@b.org"],
            body=b"x",
            on_accepted=on_first,
        )
    conn.submit(3, sender="a@b.org", recipients=["x@b.org"], body=b"x", on_accepted=second.append)
    conn.submit(4, sender="a@b.org", recipients=["x@b.org"], body=b"x", on_accepted=on_first)
    conn.submit(5, sender="a@b.org", recipients=["x@b.org"], body=b"x")
    conn.data_to_send()
    ok2 = b"250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n"
    ok1 = b"250 ok\r\n250 ok\r\n250 ok\r\n"
    # 0-2 accepted (merged), 3 accepted with another callback, 4 refused at RCPT, 5 has
    # no callback: a result.
    events = conn.receive_data(ok2 * 3 + ok1 + b"250 ok\r\n550 no\r\n554 no data\r\n" + ok1)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Accepted", "Accepted", "TransactionResult", "TransactionResult"]
    merged, other, refused, plain = events
    assert (merged.on_accepted, merged.recipients) == (on_first, 6)
    assert other.recipients == 1 and other.on_accepted == second.append
    assert refused.tag == 4 and not refused.all_positive
    assert plain.tag == 5 and plain.all_positive
    assert conn.in_flight == 0 and first == [] and second == []  # the caller calls them
    assert "Accepted(recipients=6)" in repr(merged)
    assert merged() is None and other() is None
    assert first == [6] and second == [1]
    with pytest.raises(TypeError):
        merged(1)  # type: ignore[call-arg]


def run_messages(*addresses: str) -> list[core.BuiltMessage]:
    t = core.Template({"to": [], "sender": "a@b.org", "subject": "s", "text": "hi\n"})
    messages, failures = t.render_split(list(addresses))
    assert failures == []
    return messages


def test_submit_run_tags_each_message_with_its_position() -> None:
    conn = ready()
    run = object()
    messages = run_messages("x@b.org", "y@b.org", "z@b.org", "w@b.org")
    assert conn.submit_run(run, messages, 1, 2) == []
    assert conn.submit_run(run, messages, 3, 5) == []  # count past the end: up to the end
    assert conn.in_flight == 3
    out = conn.data_to_send()
    assert [line for line in out.split(b"\r\n") if line.startswith(b"RCPT")] == [
        b"RCPT TO:<y@b.org>",
        b"RCPT TO:<z@b.org>",
        b"RCPT TO:<w@b.org>",
    ]
    ok = b"250 ok\r\n250 ok\r\n250 ok\r\n"
    events = conn.receive_data(ok + b"250 ok\r\n550 no\r\n554 no data\r\n" + ok)
    assert [(type(e).__name__, e.index) for e in events] == [
        ("TransactionResult", 1),
        ("TransactionResult", 2),
        ("TransactionResult", 3),
    ]
    assert all(e.tag is run for e in events)
    assert ", index=2, mail=250" in repr(events[1])
    assert [e.all_positive for e in events] == [True, False, True]
    # submit() leaves index None.
    conn.submit(9, messages[0])
    conn.data_to_send()
    (plain,) = conn.receive_data(ok)
    assert (plain.tag, plain.index) == (9, None)


def test_submit_run_counts_accepted_and_reports_the_rest() -> None:
    conn = ready()
    counted: list[int] = []
    messages = run_messages("x@b.org", "y@b.org", "z@b.org")
    assert conn.submit_run("run", messages, 0, 3, counted.append) == []
    conn.data_to_send()
    ok = b"250 ok\r\n250 ok\r\n250 ok\r\n"
    events = conn.receive_data(ok + b"250 ok\r\n450 later\r\n554 no data\r\n" + ok)
    assert [type(e).__name__ for e in events] == ["Accepted", "TransactionResult", "Accepted"]
    assert [events[0].recipients, events[2].recipients] == [1, 1]
    assert (events[1].tag, events[1].index) == ("run", 1)


def test_submit_run_refuses_messages_alone() -> None:
    """A message the server cannot take comes back with its position; the others of the
    run are queued in order, as submit() would have queued them one by one."""
    conn = ready(b"250-mx\r\n250-PIPELINING\r\n250 SIZE 100000\r\n")  # no SMTPUTF8
    messages = run_messages("x@b.org", "ü@b.org", "y@b.org", "ö@b.org")
    refused = conn.submit_run("run", messages, 0, 4)
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
    assert [e.index for e in events] == [0, 2]
    ((position, error),) = conn.submit_run("run", ["not a message"], 0, 1)  # type: ignore[list-item]
    assert position == 0 and isinstance(error, TypeError)


def test_abort_then_closed_events() -> None:
    conn = ready()
    conn.submit(1, sender="a@example.org", recipients=["b@example.org"], body=b"1\r\n")
    conn.data_to_send()
    conn.submit(2, sender="a@example.org", recipients=["b@example.org"], body=b"2\r\n")
    events = conn.receive_data(b"421 4.3.2 going down\r\n")
    assert [type(e) for e in events] == [
        core.TransactionAborted,
        core.TransactionAborted,
        core.Closed,
    ]
    first, second, closed = events
    assert (first.tag, first.end_of_data_sent, first.reason) == (1, True, "421")
    assert (second.tag, second.end_of_data_sent) == (2, False)
    assert first.reply.code == 421 and closed.reply.enhanced_code == "4.3.2"
    assert closed.reason == "421" and closed.error is None
    assert conn.is_closed and not conn.is_ready
    assert conn.receive_data(b"") == [] and conn.data_to_send() == b""
    with pytest.raises(LocalProtocolError):
        conn.quit()


def test_protocol_error_is_sticky_and_typed() -> None:
    conn = ready()
    (closed,) = conn.receive_data(b"250 nobody asked\r\n")
    assert isinstance(closed, core.Closed)
    assert isinstance(closed.error, RemoteProtocolError)
    assert closed.reason.startswith("protocol error")
    for call in (
        conn.quit,
        conn.starttls,
        lambda: conn.submit(1, sender="a@b.c", recipients=["d@e.f"], body=b""),
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
    (ok,) = conn.receive_data(b"235 2.7.0 ok\r\n")
    assert isinstance(ok, core.AuthSucceeded) and ok.reply.enhanced_code == "2.7.0"


def test_submit_errors() -> None:
    conn = core.ClientConnection()
    with pytest.raises(LocalProtocolError):
        conn.submit(1, sender="a@b.c", recipients=["d@e.f"], body=b"x")
    conn = ready(b"250-mx\r\n250-PIPELINING\r\n250 SIZE 100\r\n")
    with pytest.raises(SMTPUTF8Required):
        conn.submit(1, sender="ä@b.c", recipients=["d@e.f"], body=b"x")
    with pytest.raises(InvalidMessage) as info:
        conn.submit(1, sender="a@b.c", recipients=["d@e.f"], body=b"x" * 101)
    assert info.value.field == "body"
    for bad in ("d@e.f\r\nRCPT TO:<evil@x>", "d e@f", "<d@e.f>", "d@e.f\x00", ""):
        with pytest.raises(InvalidMessage) as info:
            conn.submit(1, sender="a@b.c", recipients=["ok@e.f", bad], body=b"x")
        assert info.value.field == "recipients[1]"
    with pytest.raises(InvalidMessage):
        conn.submit(1, sender="a@b.c", recipients=[], body=b"x")
    with pytest.raises(TypeError):
        conn.submit(1, sender="a@b.c", body=b"x")
    with pytest.raises(TypeError):
        conn.submit(1, b"not a message")  # type: ignore[arg-type]
    assert conn.data_to_send() == b"" and conn.in_flight == 0
    with pytest.raises(LocalProtocolError):
        core.ClientConnection("bad host name")


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
        conn.submit(i, sender="a@x.org", recipients=[f"r{j}@x.org" for j in range(n)], body=b".b")
    events = []
    for chunk in [*chunks, b""]:
        conn.data_to_send()
        events.extend(conn.receive_data(chunk))
    ids = sorted(
        e.tag for e in events if isinstance(e, core.TransactionResult | core.TransactionAborted)
    )
    assert ids == list(range(len(recipients)))
    assert isinstance(events[-1], core.Closed)
    assert sum(isinstance(e, core.Closed) for e in events) == 1
