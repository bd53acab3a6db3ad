"""Engine entry points beyond send/send_batch: send_raw, connect, cancel_pending, and how
the pool reuses connections across calls."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

import fastsmtp
from fastsmtp.testing import CaptureServer
from tests.faultserver import Faults, FaultServer
from tests.peers.ports import free_port

RAW = (
    b"From: ann@example.com\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: raw\r\n"
    b"Message-ID: <raw-1@example.com>\r\n"
    b"\r\n"
    b".leading dot\n"  # a bare LF and a line that needs dot-stuffing
    b"second line\r\n"
)


@pytest.fixture
def capture() -> object:
    with CaptureServer() as server:
        yield server


@pytest.mark.parametrize("chunking", [True, False], ids=["bdat", "data"])
async def test_send_raw_delivers_the_bytes_to_the_envelope(chunking: bool) -> None:
    async with FaultServer(chunking=chunking) as server:
        async with fastsmtp.Engine("127.0.0.1", server.port, tls="none") as engine:
            results = await engine.send_raw(
                "", ["bob@example.org", "carol@example.net"], RAW, message_id="<raw-1@example.com>"
            )
    assert [(r.recipient, r.status, r.message_id) for r in results] == [
        ("bob@example.org", "accepted", "<raw-1@example.com>"),
        ("carol@example.net", "accepted", "<raw-1@example.com>"),
    ]
    stored = server.stored
    assert {s.rcpt for s in stored} == {"bob@example.org", "carol@example.net"}
    # The server sees the caller's bytes, with the bare LF made CRLF and the dot intact.
    assert all(s.mail_from == "" for s in stored)
    assert stored[0].content.endswith(b"\r\n\r\n.leading dot\r\nsecond line\r\n")


async def test_send_raw_to_aiosmtpd(capture: CaptureServer) -> None:
    async with fastsmtp.Engine("127.0.0.1", capture.port, tls="none") as engine:
        (result,) = await engine.send_raw("ann@example.com", ["bob@example.org"], RAW)
    assert result.status == "accepted"
    (captured,) = capture.wait_for(1)
    assert captured.mail_from == "ann@example.com"
    assert b".leading dot\r\nsecond line" in captured.content


@pytest.mark.parametrize(
    ("sender", "recipients", "data", "field"),
    [
        ("ann@example.com\r\nRCPT TO:<x@evil.example>", ["b@example.org"], b"x", "sender"),
        ("ann@example.com", ["b@example.org>\r\nDATA"], b"x", "recipients"),
        ("ann@example.com", ["b@example.org", "no-at-sign"], b"x", "recipients"),
        ("ann@example.com", [], b"x", "recipients"),
        ("ann@example.com", "b@example.org", b"x", "recipients"),
        ("ann@example.com", ["b@example.org"], "text, not bytes", "data"),
    ],
)
async def test_send_raw_rejects_a_bad_envelope_before_connecting(
    sender: str, recipients: list[str], data: bytes, field: str
) -> None:
    async with FaultServer() as server:
        async with fastsmtp.Engine("127.0.0.1", server.port, tls="none") as engine:
            with pytest.raises(fastsmtp.InvalidMessage) as info:
                await engine.send_raw(sender, recipients, data)
        assert (info.value.field or "").split("[")[0] == field
        assert server.connections == 0


async def test_connect_opens_one_connection_that_later_sends_reuse() -> None:
    message = fastsmtp.Message(sender="a@example.com", to=["b@example.org"], text="t")
    async with FaultServer() as server:
        async with fastsmtp.Engine("127.0.0.1", server.port, tls="none", connections=4) as engine:
            await engine.connect()
            assert server.connections == 1
            for _ in range(5):  # one at a time: the idle connection takes each
                (result,) = await engine.send(message)
                assert result.status == "accepted"
            # Several at once still fit in the one connection's window.
            results = await asyncio.gather(*(engine.send(message) for _ in range(10)))
            assert all(r.status == "accepted" for (r,) in results)
        assert server.connections == 1
        assert engine.stats.connections_opened == 1
    # Every octet of the 15 messages went out, plus each one's commands (about 70 octets).
    content = sum(len(stored.content) for stored in server.stored)
    assert len(server.stored) == 15
    assert content + 15 * 40 < engine.stats.bytes_sent < content + 15 * 150


async def test_connect_reports_setup_errors() -> None:
    async with fastsmtp.Engine("127.0.0.1", free_port(), tls="none", timeout=2) as engine:
        with pytest.raises(fastsmtp.SMTPConnectionError):
            await engine.connect()
    async with FaultServer() as server:  # it offers no STARTTLS
        async with fastsmtp.Engine("127.0.0.1", server.port, tls="starttls") as engine:
            with pytest.raises(fastsmtp.TLSRequiredError):
                await engine.connect()


async def test_a_large_batch_still_spreads_over_the_pool() -> None:
    template = fastsmtp.Message(sender="a@example.com", subject="s", text="t")
    async with FaultServer() as server:
        async with fastsmtp.Engine(
            "127.0.0.1", server.port, tls="none", connections=3, window=16
        ) as engine:
            report = await engine.send_batch(template, [f"u{i}@example.org" for i in range(600)])
    assert report.accepted == 600
    assert server.connections == 3


async def test_cancel_pending_fails_what_is_queued_and_finishes_what_is_in_flight() -> None:
    template = fastsmtp.Message(sender="a@example.com", subject="s", text="t")
    results: list[fastsmtp.Result] = []
    cancelled = 0
    faults = Faults(slow_reply=1.0, slow_delay=0.01)  # every reply takes a while

    async with FaultServer(faults, chunking=False) as server:
        async with fastsmtp.Engine(
            "127.0.0.1", server.port, tls="none", connections=1, window=4
        ) as engine:

            def on_result(result: fastsmtp.Result) -> None:
                nonlocal cancelled
                results.append(result)
                if len(results) == 3:
                    cancelled = engine.cancel_pending("job stopped")

            recipients = [f"u{i}@example.org" for i in range(200)]
            report = await engine.send_batch(template, recipients, on_result=on_result)
            assert engine.cancel_pending() == 0  # nothing left

    assert Counter(r.index for r in results) == Counter(range(200))
    failed = [r for r in results if r.status == "failed"]
    assert len(failed) == cancelled > 100
    assert all(r.text == "job stopped" for r in failed)
    assert report.accepted == 200 - cancelled
    stored = server.stored_pairs()
    assert all(stored[(r.message_id, r.recipient)] == 0 for r in failed)
    assert all(stored[(r.message_id, r.recipient)] == 1 for r in results if r.status == "accepted")


async def test_an_idle_connection_is_checked_with_noop_before_reuse() -> None:
    message = fastsmtp.Message(sender="a@example.com", to=["b@example.org"], text="t")
    async with FaultServer() as server:
        async with fastsmtp.Engine(
            "127.0.0.1", server.port, tls="none", health_check_after=0.05
        ) as engine:
            await engine.send(message)
            await engine.send(message)  # straight away: no check
            assert server.commands["NOOP"] == 0
            await asyncio.sleep(0.1)
            (result,) = await engine.send(message)
        assert result.status == "accepted"
        assert server.commands["NOOP"] == 1
        assert server.connections == 1


@pytest.mark.parametrize("chunking", [True, False], ids=["bdat", "data"])
async def test_a_connection_that_went_silent_is_replaced_before_any_message_is_written(
    chunking: bool,
) -> None:
    """Without the check, a BDAT LAST written to a dead connection would leave the message
    in doubt (reported deferred, not re-sent); with it, nothing is written there."""
    message = fastsmtp.Message(sender="a@example.com", to=["b@example.org"], text="t")
    async with FaultServer(chunking=chunking) as server:
        async with fastsmtp.Engine(
            "127.0.0.1",
            server.port,
            tls="none",
            health_check_after=0.05,
            reply_timeout=0.3,
        ) as engine:
            await engine.send(message)
            server.mute_open_connections()
            await asyncio.sleep(0.1)
            mails_before = server.commands["MAIL"]
            results = await asyncio.gather(*(engine.send(message) for _ in range(5)))
        assert [r.status for (r,) in results] == ["accepted"] * 5
        assert all(r.attempts == 1 for (r,) in results)
        assert engine.stats.health_check_failures == 1
        assert server.connections == 2
        assert server.commands["MAIL"] == mails_before + 5  # none went to the silent one
        assert sorted(server.stored_pairs().values()) == [1] * 6


async def test_max_messages_per_connection_splits_a_batch_over_fresh_connections() -> None:
    """A batch's chunk is queued as one run; a connection takes no more of it than its
    message limit allows, and the next connection goes on where it stopped."""
    template = fastsmtp.Message(sender="a@example.com", subject="s", text="t")
    recipients = [f"u{i}@example.org" for i in range(30)]
    async with FaultServer() as server:
        async with fastsmtp.Engine(
            "127.0.0.1", server.port, tls="none", connections=1, max_messages_per_connection=7
        ) as engine:
            report = await engine.send_batch(template, recipients)
    assert report.accepted == 30
    assert sorted(s.rcpt for s in server.stored) == sorted(recipients)
    per_connection = Counter(s.connection for s in server.stored)
    assert server.connections == 5 and max(per_connection.values()) == 7
    assert sum(per_connection.values()) == 30


async def test_rate_limit_holds_a_batch_back() -> None:
    """rate_limit=100: the first second's worth goes at once, the other 50 messages of the
    run wait for tokens (half a second at least), and each is sent once."""
    template = fastsmtp.Message(sender="a@example.com", subject="s", text="t")
    recipients = [f"u{i}@example.org" for i in range(150)]
    async with FaultServer() as server:
        async with fastsmtp.Engine(
            "127.0.0.1", server.port, tls="none", connections=2, rate_limit=100
        ) as engine:
            started = time.monotonic()
            report = await engine.send_batch(template, recipients)
            elapsed = time.monotonic() - started
    assert report.accepted == 150
    assert Counter(s.rcpt for s in server.stored) == Counter(recipients)
    assert elapsed >= 0.45


async def test_concurrent_sends_travel_together_and_each_gets_its_own_results() -> None:
    """send() from many tasks at once: the messages of one loop iteration go out as one
    group (spread over the pool's connections like a batch chunk), and every call gets the
    results of its own recipients, indexed by their position in its to + cc + bcc."""
    faults = Faults(rcpt_550=0.2)
    async with FaultServer(faults, seed=9) as server:
        async with fastsmtp.Engine("127.0.0.1", server.port, tls="none", connections=4) as engine:
            messages = [
                fastsmtp.Message(
                    sender="ann@example.com",
                    to=[f"to{i}@example.org"],
                    cc=[f"cc{i}@example.org"] if i % 2 else [],
                    bcc=[f"bcc{i}@example.org"] if i % 3 == 0 else [],
                    subject=f"m{i}",
                    text="t",
                )
                for i in range(200)
            ]
            all_results = await asyncio.gather(*(engine.send(m) for m in messages))
    assert 1 <= server.connections <= 4
    stored = server.stored_pairs()
    for message, results in zip(messages, all_results, strict=True):
        assert [r.recipient for r in results] == message.recipients
        assert [r.index for r in results] == list(range(len(message.recipients)))
        for r in results:
            assert (stored[(r.message_id, r.recipient)] == 1) == (r.status == "accepted")
    statuses = Counter(r.status for results in all_results for r in results)
    assert statuses["rejected"] > 0 and statuses["accepted"] > 0
    assert engine.stats.accepted == statuses["accepted"]


async def test_a_bad_message_among_concurrent_sends_fails_alone() -> None:
    async with FaultServer() as server:
        async with fastsmtp.Engine("127.0.0.1", server.port, tls="none") as engine:
            good = fastsmtp.Message(sender="ann@example.com", to=["b@example.org"], text="t")
            bad = fastsmtp.Message(sender="ann@example.com", to=["not an address"], text="t")
            outcomes = await asyncio.gather(
                engine.send(good), engine.send(bad), engine.send(good), return_exceptions=True
            )
    assert isinstance(outcomes[1], fastsmtp.InvalidMessage)
    assert [r.status for r in outcomes[0]] == ["accepted"]  # type: ignore[union-attr]
    assert [r.status for r in outcomes[2]] == ["accepted"]  # type: ignore[union-attr]
    assert len(server.stored) == 2
