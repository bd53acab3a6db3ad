"""The engine against in-process servers: the capture server (aiosmtpd, lock-step SMTP) and
the fault server (PIPELINING/CHUNKING with chosen failures)."""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
from collections import Counter
from collections.abc import AsyncIterator

import pytest

import fastsmtp
from fastsmtp.testing import CaptureServer
from tests.faultserver import Faults, FaultServer

PARSER = email.parser.BytesParser(policy=email.policy.default)


def plain(**overrides: object) -> fastsmtp.Message:
    fields: dict[str, object] = {
        "sender": "Ann Sender <ann@example.com>",
        "to": ["bob@example.org"],
        "subject": "Hi",
        "text": "Hello",
    }
    fields.update(overrides)
    return fastsmtp.Message(**fields)  # type: ignore[arg-type]


@pytest.fixture
def capture() -> object:
    with CaptureServer() as server:
        yield server


async def test_send_one_message_end_to_end(capture: CaptureServer) -> None:
    msg = plain(cc=["Carol <carol@example.net>"], bcc=["dave@example.org"])
    async with fastsmtp.Engine("127.0.0.1", capture.port, tls="none") as engine:
        results = await engine.send(msg)
    assert [(r.recipient, r.status, r.code) for r in results] == [
        ("bob@example.org", "accepted", 250),
        ("carol@example.net", "accepted", 250),
        ("dave@example.org", "accepted", 250),
    ]
    (captured,) = capture.wait_for(1)
    assert captured.mail_from == "ann@example.com"
    assert captured.rcpt_tos == ["bob@example.org", "carol@example.net", "dave@example.org"]
    parsed = PARSER.parsebytes(captured.content)
    assert parsed["Subject"] == "Hi"
    assert parsed["To"] == "bob@example.org"
    assert "dave" not in captured.content.decode()  # Bcc stays in the envelope only
    assert parsed.get_content().strip() == "Hello"
    assert results[0].message_id == parsed["Message-ID"]


async def test_send_batch_personalizes_each_message(capture: CaptureServer) -> None:
    template = fastsmtp.Message(
        sender="ann@example.com",
        subject="Hello {{ name }}",
        text="Code {{ code }} for {{ address }}",
    )
    recipients = [
        fastsmtp.Recipient(address=f"user{i}@example.org", name=f"User {i}", data={"code": i})
        for i in range(30)
    ]
    seen: list[fastsmtp.Result] = []
    async with fastsmtp.Engine("127.0.0.1", capture.port, tls="none", connections=3) as engine:
        report = await engine.send_batch(template, recipients, on_result=seen.append)
    assert report.total == report.accepted == 30
    assert sorted(r.index for r in seen) == list(range(30))
    by_rcpt = {m.rcpt_tos[0]: PARSER.parsebytes(m.content) for m in capture.wait_for(30)}
    for i in range(30):
        parsed = by_rcpt[f"user{i}@example.org"]
        assert parsed["Subject"] == f"Hello User {i}"
        assert parsed.get_content().strip() == f"Code {i} for user{i}@example.org"


async def test_recipients_from_async_iterable_and_dicts(capture: CaptureServer) -> None:
    async def rows() -> AsyncIterator[dict[str, object]]:
        for i in range(5):
            yield {"address": f"r{i}@example.org", "n": i}
            await asyncio.sleep(0)

    template = fastsmtp.Message(sender="ann@example.com", subject="n={{ n }}", text="x")
    async with fastsmtp.Engine("127.0.0.1", capture.port, tls="none") as engine:
        report = await engine.send_batch(template, rows())
    assert report.accepted == 5
    subjects = sorted(m.subject for m in capture.wait_for(5))
    assert subjects == [f"n={i}" for i in range(5)]


@pytest.mark.parametrize(
    "bad",
    [
        {"subject": "Hi\r\nBcc: victim@example.org"},
        {"subject": "line\nbreak"},
        {"headers": {"X-Tag": "a\rb"}},
        {"to": ["bob"]},
        {"to": ["bob@"]},
        {"sender": ""},
    ],
)
async def test_bad_input_raises_before_connecting(bad: dict[str, object]) -> None:
    async with FaultServer() as server:
        async with fastsmtp.Engine("127.0.0.1", server.port, tls="none") as engine:
            with pytest.raises(fastsmtp.InvalidMessage):
                await engine.send(plain(**bad))
        assert server.connections == 0
        assert server.stored == []


async def test_callback_errors_are_counted_and_do_not_stop_the_batch() -> None:
    calls = 0

    def explode(result: fastsmtp.Result) -> None:
        nonlocal calls
        calls += 1
        if result.index % 2:
            raise RuntimeError("boom")

    async def slow_async(result: fastsmtp.Result) -> None:
        await asyncio.sleep(0)
        if result.index == 3:
            raise ValueError("async boom")

    template = fastsmtp.Message(sender="a@example.com", subject="s", text="t")
    async with FaultServer() as server:
        async with fastsmtp.Engine("127.0.0.1", server.port, tls="none") as engine:
            report = await engine.send_batch(
                template, [f"u{i}@example.org" for i in range(10)], on_result=explode
            )
            assert (report.accepted, report.callback_errors, calls) == (10, 5, 10)
            report = await engine.send_batch(
                template, [f"v{i}@example.org" for i in range(10)], on_result=slow_async
            )
            assert (report.accepted, report.callback_errors) == (10, 1)
            assert engine.stats.callback_errors == 6


async def test_permanent_rejections_are_not_retried() -> None:
    async with (
        FaultServer(Faults(rcpt_550=1.0)) as server,
        fastsmtp.Engine("127.0.0.1", server.port, tls="none", retry_base_delay=0.01) as engine,
    ):
        results = await engine.send(plain(to=["a@example.org", "b@example.org"]))
    assert [(r.status, r.code, r.enhanced_code, r.attempts) for r in results] == [
        ("rejected", 550, "5.1.1", 1),
        ("rejected", 550, "5.1.1", 1),
    ]
    assert server.stored == []


async def test_transient_failures_retry_then_defer() -> None:
    async with (
        FaultServer(Faults(rcpt_451=1.0)) as server,
        fastsmtp.Engine(
            "127.0.0.1", server.port, tls="none", max_attempts=3, retry_base_delay=0.01
        ) as engine,
    ):
        (result,) = await engine.send(plain())
    assert (result.status, result.code, result.attempts) == ("deferred", 451, 3)
    assert engine.stats.retries == 2
    assert server.stored == []


async def test_partial_acceptance_retries_only_the_deferred_recipient() -> None:
    # The first RCPT of the first transaction gets 451, later ones succeed (seeded RNG).
    async with (
        FaultServer(Faults(rcpt_451=0.5), seed=3) as server,
        fastsmtp.Engine(
            "127.0.0.1", server.port, tls="none", max_attempts=10, retry_base_delay=0.01
        ) as engine,
    ):
        results = await engine.send(plain(to=[f"r{i}@example.org" for i in range(6)]))
    assert all(r.status == "accepted" for r in results)
    assert any(r.attempts > 1 for r in results)
    # Each recipient got the message exactly once.
    assert sorted(server.stored_pairs().values()) == [1] * 6


async def test_unreachable_server_fails_after_retries() -> None:
    from tests.peers.ports import free_port

    port = free_port()
    async with fastsmtp.Engine(
        "127.0.0.1", port, tls="none", max_attempts=2, retry_base_delay=0.01
    ) as engine:
        (result,) = await engine.send(plain())
    assert result.status == "failed"
    assert "could not connect" in result.text
    assert engine.stats.connection_failures == 2


async def test_silent_server_times_out() -> None:
    async with (
        FaultServer(greet=False) as server,
        fastsmtp.Engine(
            "127.0.0.1", server.port, tls="none", timeout=0.3, max_attempts=1
        ) as engine,
    ):
        (result,) = await engine.send(plain())
    assert result.status == "failed"
    assert "timed out" in result.text


async def test_template_variable_missing_for_everyone_raises_before_sending() -> None:
    template = fastsmtp.Message(sender="a@example.com", subject="{{ nope }}", text="t")
    async with FaultServer() as server:
        async with fastsmtp.Engine("127.0.0.1", server.port, tls="none") as engine:
            with pytest.raises(fastsmtp.TemplateError) as info:
                await engine.send_batch(template, ["a@example.org", "b@example.org"])
            assert info.value.variable == "nope"
            with pytest.raises(fastsmtp.TemplateError):
                await engine.send_batch(template, iter(["a@example.org", "b@example.org"]))
        assert server.connections == 0


async def test_template_variable_missing_for_some_fails_only_those() -> None:
    template = fastsmtp.Message(sender="a@example.com", subject="{{ code }}", text="t")
    recipients = [
        {"address": "a@example.org", "code": 1},
        {"address": "b@example.org"},
        {"address": "not-an-address", "code": 3},
    ]
    results: list[fastsmtp.Result] = []
    async with FaultServer() as server:
        async with fastsmtp.Engine("127.0.0.1", server.port, tls="none") as engine:
            report = await engine.send_batch(template, recipients, on_result=results.append)
    by_index = {r.index: r for r in results}
    assert by_index[0].status == "accepted"
    assert by_index[1].status == "failed" and "code" in by_index[1].text
    assert by_index[2].status == "failed"
    assert (report.accepted, report.failed) == (1, 2)
    assert [s.rcpt for s in server.stored] == ["a@example.org"]


@pytest.mark.parametrize("counted_only", [False, True])
async def test_batch_indexes_survive_failures_retries_and_chunks(counted_only: bool) -> None:
    """Recipients that cannot be rendered are scattered over several chunks, and the
    server defers or refuses some of the rest: every result names its own recipient and
    index, retried ones included, and what was accepted is stored exactly once."""
    template = fastsmtp.Message(sender="a@example.com", subject="s {{ code }}", text="t")
    recipients = [
        {"address": "bad address" if i % 7 == 3 else f"u{i}@example.org", "code": i}
        for i in range(300)
    ]
    results: list[fastsmtp.Result] = []
    faults = Faults(rcpt_451=0.1, rcpt_550=0.05, data_451=0.05)
    async with FaultServer(faults, seed=7) as server:
        async with fastsmtp.Engine(
            "127.0.0.1", server.port, tls="none", connections=2, window=8, retry_base_delay=0.001
        ) as engine:
            report = await engine.send_batch(
                template,
                iter(recipients),
                chunk_size=50,
                on_result=None if counted_only else results.append,
            )
    bad = sum(1 for r in recipients if r["address"] == "bad address")
    assert report.total == 300 and report.failed >= bad
    assert report.accepted == len(server.stored) > 200
    stored = Counter(s.rcpt for s in server.stored)
    assert set(stored.values()) == {1}
    for message in server.stored:
        index = int(message.rcpt[1:].split("@")[0])
        assert f"Subject: s {index}\r\n".encode() in message.content
    if counted_only:
        return
    assert sorted(r.index for r in results) == list(range(300))
    for r in results:
        assert r.recipient == recipients[r.index]["address"]
        assert (r.status == "accepted") == (stored[r.recipient] == 1)


@pytest.mark.parametrize("chunk_size", [1, 3, 64, 1000])
async def test_every_recipient_of_an_iterator_is_sent_whatever_the_chunk_size(
    chunk_size: int,
) -> None:
    template = fastsmtp.Message(sender="a@example.com", subject="s", text="t")
    recipients = [f"u{i}@example.org" for i in range(130)]
    async with FaultServer() as server:
        async with fastsmtp.Engine("127.0.0.1", server.port, tls="none") as engine:
            report = await engine.send_batch(template, iter(recipients), chunk_size=chunk_size)
            with pytest.raises(ValueError, match="chunk_size"):
                await engine.send_batch(template, recipients, chunk_size=0)
    assert report.accepted == 130
    assert sorted(s.rcpt for s in server.stored) == sorted(recipients)
