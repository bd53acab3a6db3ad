"""Nothing lost under fire: 10,000 recipients against a server that fails at random.

Invariants checked (the engine's promises):
- every recipient gets exactly one result, and the callback count equals the report;
- every ``accepted`` recipient's message is in the server's store, exactly once;
- nothing reported rejected, deferred or failed was stored, except messages reported as
  "end of data sent, no reply" (the server may have taken those; they are not re-sent).
"""

from __future__ import annotations

from collections import Counter

import pytest

import fastsmtp
from tests.faultserver import Faults, FaultServer

STORM = Faults(
    mail_421=0.002,
    mail_451=0.01,
    rcpt_451=0.02,
    rcpt_452=0.01,
    rcpt_550=0.02,
    data_451=0.02,
    data_554=0.01,
    disconnect_before_end=0.002,
    disconnect_after_end=0.002,
    slow_reply=0.002,
    slow_delay=0.02,
)


def storm_engine(port: int) -> fastsmtp.Engine:
    """An engine that retries quickly and often enough to ride out STORM."""
    return fastsmtp.Engine(
        "127.0.0.1",
        port,
        tls="none",
        connections=4,
        max_attempts=4,
        retry_base_delay=0.005,
        retry_max_delay=0.05,
        timeout=5,
    )


@pytest.mark.parametrize(
    ("chunking", "pipelining", "count"),
    [(True, True, 10_000), (False, True, 10_000), (False, False, 2_000)],
    ids=["chunking", "pipelining", "lockstep"],
)
async def test_fault_storm_every_recipient_exactly_one_true_result(
    chunking: bool, pipelining: bool, count: int
) -> None:
    template = fastsmtp.Message(
        sender="bulk@example.com", subject="Hello {{ name }}", text="Body for {{ address }}"
    )
    recipients = [
        fastsmtp.Recipient(address=f"user{i}@example.org", name=f"U{i}") for i in range(count)
    ]
    results: list[fastsmtp.Result] = []
    async with FaultServer(STORM, seed=count, chunking=chunking, pipelining=pipelining) as server:
        async with storm_engine(server.port) as engine:
            report = await engine.send_batch(template, recipients, on_result=results.append)

    # Exactly one result per recipient, matching the report.
    assert len(results) == count
    assert Counter(r.index for r in results) == Counter(range(count))
    statuses = Counter(r.status for r in results)
    assert report.total == count
    assert (report.accepted, report.rejected, report.deferred, report.failed) == (
        statuses["accepted"],
        statuses["rejected"],
        statuses["deferred"],
        statuses["failed"],
    )
    # The faults really happened, and most mail still went through.
    assert server.events["rcpt_550"] > 0 and server.events["data_451"] > 0
    assert statuses["rejected"] > 0 and statuses["accepted"] > count * 0.8

    stored = server.stored_pairs()
    for r in results:
        key = (r.message_id, r.recipient)
        if r.status == "accepted":
            assert r.code is not None and 200 <= r.code < 300
            assert stored[key] == 1, f"accepted but stored {stored[key]} times: {r}"
        elif r.in_doubt:
            assert r.status == "deferred" and stored[key] <= 1
        else:
            assert stored[key] == 0, f"reported {r.status} but stored: {r}"
    assert engine.stats.accepted == statuses["accepted"]
    assert report.in_doubt == sum(r.in_doubt for r in results)


@pytest.mark.parametrize("chunking", [True, False], ids=["chunking", "pipelining"])
async def test_a_broken_connection_uses_up_one_attempt_only(chunking: bool) -> None:
    """A 421 closes the connection with a full window in flight. Only the transaction the
    server was answering used an attempt; those queued behind it are retried for free, so
    with max_attempts=1 exactly one recipient per 421 is deferred and the rest get through."""
    count = 600
    template = fastsmtp.Message(sender="bulk@example.com", subject="Hi", text="Body {{ name }}")
    recipients = [f"user{i}@example.org" for i in range(count)]
    results: list[fastsmtp.Result] = []
    async with FaultServer(Faults(mail_421=0.02), seed=7, chunking=chunking) as server:
        async with fastsmtp.Engine(
            "127.0.0.1", server.port, tls="none", connections=2, max_attempts=1, timeout=5
        ) as engine:
            await engine.send_batch(
                template, recipients, data={"name": "x"}, on_result=results.append
            )
    statuses = Counter(r.status for r in results)
    assert server.events["mail_421"] >= 3
    assert statuses["deferred"] == server.events["mail_421"]
    assert statuses["accepted"] == count - server.events["mail_421"]
    stored = server.stored_pairs()
    assert all(stored[(r.message_id, r.recipient)] == 1 for r in results if r.status == "accepted")


@pytest.mark.parametrize("data_window", [1, 8])
async def test_chunking_leaves_at_most_data_window_messages_in_doubt(data_window: int) -> None:
    """With CHUNKING every BDAT LAST without a reply may have been taken when the server
    vanishes; at most data_window are unanswered at once, so one disconnect strands at most
    that many (one with the default)."""
    template = fastsmtp.Message(sender="bulk@example.com", subject="Hi", text="Body")
    results: list[fastsmtp.Result] = []
    faults = Faults(disconnect_after_end=0.01)
    async with FaultServer(faults, seed=3, chunking=True) as server:
        async with fastsmtp.Engine(
            "127.0.0.1",
            server.port,
            tls="none",
            connections=1,
            data_window=data_window,
            timeout=5,
        ) as engine:
            recipients = [f"user{i}@example.org" for i in range(1000)]
            await engine.send_batch(template, recipients, on_result=results.append)
    in_doubt = [r for r in results if r.in_doubt]
    assert all(r.status == "deferred" and "no reply came" in r.text for r in in_doubt)
    drops = server.events["disconnect_after_end"]
    assert drops >= 3
    assert 0 < len(in_doubt) <= data_window * drops
    if data_window == 1:
        assert len(in_doubt) == drops  # exactly the message each drop swallowed
    assert Counter(r.status for r in results)["accepted"] == 1000 - len(in_doubt)


async def test_chunking_with_defaults_keeps_up_with_data_mode_under_drops() -> None:
    """0.5% of transactions stored and then dropped without a reply, 3,000 recipients, 8
    connections, default settings: CHUNKING's accepted share stays within 3 points of
    DATA mode's (each drop leaves one message in doubt in both), every recipient has one
    result, nothing is stored twice and every acceptance is stored."""
    template = fastsmtp.Message(sender="bulk@example.com", subject="Hi", text="Body {{ name }}")
    shares = {}
    for chunking in (True, False):
        results: list[fastsmtp.Result] = []
        recipients = [{"address": f"u{i}@example.org", "name": f"U{i}"} for i in range(3000)]
        async with FaultServer(
            Faults(disconnect_after_end=0.005), seed=11, chunking=chunking
        ) as server:
            async with fastsmtp.Engine(
                "127.0.0.1", server.port, tls="none", connections=8, timeout=5
            ) as engine:
                await engine.send_batch(template, recipients, on_result=results.append)
        assert Counter(r.index for r in results) == Counter(range(3000))
        stored = server.stored_pairs()
        assert all(n == 1 for n in stored.values())
        accepted = [r for r in results if r.status == "accepted"]
        assert all(stored[(r.message_id, r.recipient)] == 1 for r in accepted)
        assert sum(r.in_doubt for r in results) == server.events["disconnect_after_end"]
        shares[chunking] = len(accepted) / 3000
    assert abs(shares[True] - shares[False]) <= 0.03, shares


@pytest.mark.parametrize("chunking", [True, False], ids=["chunking", "pipelining"])
async def test_fault_storm_counting_only(chunking: bool) -> None:
    """Without on_result, all-accepted transactions are only counted (the protocol core
    merges them into Accepted events, no per-message Result): the counts must still be
    exact. Every recipient is counted once, nothing counted accepted is missing from the
    store, and nothing is stored twice."""
    count = 5_000
    template = fastsmtp.Message(sender="bulk@example.com", subject="Hi", text="Body {{ name }}")
    recipients = [{"address": f"user{i}@example.org", "name": f"U{i}"} for i in range(count)]
    async with FaultServer(STORM, seed=count + chunking, chunking=chunking) as server:
        async with storm_engine(server.port) as engine:
            report = await engine.send_batch(template, recipients)
    assert report.total == count
    assert report.accepted + report.rejected + report.deferred + report.failed == count
    assert server.events["rcpt_550"] > 0 and report.rejected > 0
    stored = server.stored_pairs()
    assert all(n == 1 for n in stored.values()), "a message was stored twice"
    # Accepted means stored; only deferred ones ("no reply after end of data") may also be.
    assert report.accepted <= len(stored) <= report.accepted + report.deferred
    assert report.accepted > count * 0.8
    assert engine.stats.accepted == report.accepted
