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
from fastsmtp._pool import NO_REPLY_AFTER_DATA
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
NO_REPLY_MARK = NO_REPLY_AFTER_DATA.split("(")[0]


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
        async with fastsmtp.Engine(
            "127.0.0.1",
            server.port,
            tls="none",
            connections=4,
            max_attempts=4,
            retry_base_delay=0.005,
            retry_max_delay=0.05,
            timeout=5,
        ) as engine:
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
        elif r.status == "deferred" and NO_REPLY_MARK in r.text:
            assert stored[key] <= 1
        else:
            assert stored[key] == 0, f"reported {r.status} but stored: {r}"
    assert engine.stats.accepted == statuses["accepted"]
