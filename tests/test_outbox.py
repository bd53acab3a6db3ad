"""The durable outbox on real SQLite files: jobs, idempotence, claims and lanes, the
state machine, in-doubt recovery, backoff, inspection and operations, the sender lock."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest

import fastsmtp
from fastsmtp.outbox import (
    BackoffPolicy,
    JobConflict,
    JobNotFound,
    Outbox,
    OutboxClosed,
    OutboxError,
    OutboxLocked,
)
from tests.outbox_support import TEMPLATE, people


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    ob = Outbox(tmp_path / "mail.db", backoff=BackoffPolicy(min_backoff=10, max_backoff=40))
    yield ob
    ob.close()  # every test closes its sender first


# -- jobs --------------------------------------------------------------------------------


def test_job_stores_template_once_and_rows(outbox: Outbox) -> None:
    attachment = fastsmtp.Attachment(filename="terms.pdf", content=b"%PDF" + bytes(range(256)))
    template = msgspec.structs.replace(TEMPLATE, attachments=[attachment])
    info = outbox.create_job("spring", template, people(3), data={"shop": "Acme"})
    assert info.total == 3 and info.state == "active" and info.lane == "bulk"
    stored = outbox.template("spring")
    assert stored.message.attachments == [attachment]
    assert stored.message.subject == TEMPLATE.subject
    assert isinstance(stored.message.date, str) and stored.message.date  # fixed at creation
    assert stored.data == {"shop": "Acme"}
    records = list(outbox.recipients("spring"))
    assert [r.address for r in records] == [f"user{i}@example.org" for i in range(3)]
    assert records[1].data == {"first": "User1", "code": 1}  # address/name not duplicated
    assert {r.state for r in records} == {"queued"}
    assert outbox.job("spring").counts == {"queued": 3}


def test_message_ids_are_fixed_per_job_and_index(tmp_path: Path) -> None:
    path = tmp_path / "mail.db"
    with Outbox(path) as ob:
        ob.create_job("a", TEMPLATE, people(2))
        ids = [r.message_id for r in ob.recipients("a")]
    assert ids[0] != ids[1] and all(i.endswith("@shop.example>") for i in ids)
    with Outbox(path) as ob:  # another process later sees the same ones
        assert [r.message_id for r in ob.recipients("a")] == ids
        assert ob.template("a").message_id(1) == ids[1]


def test_a_literal_message_is_a_job_of_its_envelope_recipients(outbox: Outbox) -> None:
    receipt = fastsmtp.Message(
        sender="shop@shop.example",
        to=["ann@example.org"],
        cc=["bob@example.org"],
        bcc=["audit@shop.example"],
        subject="Your receipt",
        text="Thanks",
    )
    info = outbox.create_job("receipt-1", receipt, lane="transactional")
    assert info.total == 3 and info.lane == "transactional"
    job = outbox.template("receipt-1")
    assert job.literal and job.message.to == ["ann@example.org"]
    records = list(outbox.recipients("receipt-1"))
    assert [r.address for r in records] == [
        "ann@example.org",
        "bob@example.org",
        "audit@shop.example",
    ]
    ids = {r.message_id for r in records}  # one message: one Message-ID for all
    assert len(ids) == 1 and ids == {job.message.message_id}
    assert job.message.message_id.endswith("@shop.example>")
    assert outbox.create_job("receipt-1", receipt).total == 3  # idempotent too
    own = msgspec.structs.replace(receipt, message_id="order-42@shop.example")
    outbox.create_job("receipt-2", own)
    assert outbox.template("receipt-2").message_id(2) == "<order-42@shop.example>"
    with pytest.raises(fastsmtp.InvalidMessage):
        outbox.create_job("x", receipt, ["someone@example.org"])  # both: ambiguous
    with pytest.raises(fastsmtp.InvalidMessage):
        outbox.create_job("y", TEMPLATE)  # neither


def test_create_job_is_idempotent(outbox: Outbox) -> None:
    first = outbox.create_job("j", TEMPLATE, people(5), data={"a": 1, "b": 2})

    def never() -> object:
        raise AssertionError("the recipients of an existing job must not be read")
        yield  # pragma: no cover

    # Same template (its dicts filled in another order): the stored job, untouched.
    again = outbox.create_job("j", TEMPLATE, never(), data={"b": 2, "a": 1})
    assert again.total == 5 and again.fingerprint == first.fingerprint
    assert outbox.job("j").counts == {"queued": 5}
    other = msgspec.structs.replace(TEMPLATE, subject="Something else")
    with pytest.raises(JobConflict) as caught:
        outbox.create_job("j", other, people(5))
    assert caught.value.job_id == "j"
    with pytest.raises(JobConflict):
        outbox.create_job("j", TEMPLATE, people(5), data={"a": 2})


def test_interrupted_fill_resumes_where_it_stopped(outbox: Outbox) -> None:
    everyone = people(25)
    filler = outbox._begin_job("big", TEMPLATE, None, "bulk", None)
    filler.add(everyone[:10])  # the process died after this chunk
    assert outbox.job("big").state == "filling"
    info = outbox.create_job("big", TEMPLATE, everyone, chunk_size=4)
    assert info.total == 25 and info.state == "active"
    assert [r.address for r in outbox.recipients("big")] == [p["address"] for p in everyone]


async def test_enqueue_takes_an_async_iterable(outbox: Outbox) -> None:
    async def stream() -> AsyncIterator[object]:
        for p in people(7):
            await asyncio.sleep(0)
            yield p

    info = await outbox.enqueue("async", TEMPLATE, stream(), chunk_size=3)
    assert info.total == 7
    again = await outbox.enqueue("async", TEMPLATE, stream())
    assert again.total == 7
    # Interrupted after 4 recipients: the same call skips them (across chunk borders).
    filler = outbox._begin_job("resumed", TEMPLATE, None, "bulk", None)
    filler.add(people(4))
    done = await outbox.enqueue("resumed", TEMPLATE, stream(), chunk_size=3)
    assert done.total == 7 and done.state == "active"
    assert [r.address for r in outbox.recipients("resumed")] == [p["address"] for p in people(7)]


@pytest.mark.parametrize(
    ("recipients", "field"),
    [
        ([123], "recipients[0]"),
        (["ok@example.org", {"name": "no address"}], "recipients[1]"),
        ([{"address": "a@example.org", "x": object()}], "recipients[0]"),
        ([{"address": "a@example.org", "name": 5}], "recipients[0]"),
    ],
)
def test_bad_recipients_are_invalid_message(
    outbox: Outbox, recipients: list[object], field: str
) -> None:
    with pytest.raises(fastsmtp.InvalidMessage) as caught:
        outbox.create_job("bad", TEMPLATE, recipients)
    assert caught.value.field == field


def test_bad_job_arguments(outbox: Outbox) -> None:
    with pytest.raises(fastsmtp.InvalidMessage):
        outbox.create_job("", TEMPLATE, [])
    with pytest.raises(fastsmtp.InvalidMessage):
        outbox.create_job("x", TEMPLATE, [], lane="urgent")  # type: ignore[arg-type]
    with pytest.raises(fastsmtp.InvalidMessage):
        outbox.create_job("x", msgspec.structs.replace(TEMPLATE, to=["a@b.example"]), [])
    with pytest.raises(TypeError):
        outbox.create_job("x", {"sender": "a@b.example"}, [])  # type: ignore[arg-type]
    with pytest.raises(JobNotFound):
        outbox.job("nope")


# -- claiming and states ---------------------------------------------------------------


async def test_claims_go_transactional_first_then_by_index(outbox: Outbox) -> None:
    outbox.create_job("bulk", TEMPLATE, people(50))
    outbox.create_job("later", TEMPLATE, people(3), send_at=time.time() + 3600)
    outbox.create_job("tx", TEMPLATE, people(2, start=1000), lane="transactional")
    filler = outbox._begin_job("filling", TEMPLATE, None, "bulk", None)
    filler.add(people(2))
    sender = await outbox.open_sender()
    try:
        first = await sender.claim(5)
        assert [(c.job.job_id, c.index) for c in first] == [
            ("tx", 0),
            ("tx", 1),
            ("bulk", 0),
            ("bulk", 1),
            ("bulk", 2),
        ]
        assert first[0].message_id == outbox.template("tx").message_id(0)
        assert first[2].data == {"first": "User0", "code": 0}
        rest = await sender.claim(1000)
        # Never twice; not the scheduled job, not the one still being filled.
        assert [c.index for c in rest] == list(range(3, 50))
        assert await sender.claim(10) == []
        # Released claims come back, in order.
        sender.release(rest[:2])
        again = await sender.claim(10)
        assert [c.index for c in again] == [3, 4]
        # A transactional job added while the bulk job is being sent goes first.
        outbox.create_job("tx2", TEMPLATE, ["vip@example.org"], lane="transactional")
        sender.release(rest[2:10])
        mixed = await sender.claim(3)
        assert [c.job.job_id for c in mixed] == ["tx2", "bulk", "bulk"]
        # Lanes can be asked for separately.
        outbox.create_job("tx3", TEMPLATE, ["vip2@example.org"], lane="transactional")
        assert [c.job.job_id for c in await sender.claim(10, ["bulk"])] == ["bulk"] * 6
        assert [c.job.job_id for c in await sender.claim(10, ["transactional"])] == ["tx3"]
        # One job only (a durable send_batch drains its own job).
        sender.release(rest[10:14])
        outbox.create_job("tx4", TEMPLATE, ["vip3@example.org"], lane="transactional")
        only = await sender.claim(4, job_id="bulk")
        assert [(c.job.job_id, c.index) for c in only] == [("bulk", i) for i in range(13, 17)]
        assert [c.job.job_id for c in await sender.claim(1)] == ["tx4"]
        # The scheduled job is due at its time.
        due = await sender.claim(10, now=time.time() + 3601)
        assert [c.job.job_id for c in due] == ["later"] * 3
    finally:
        await sender.close()


async def test_outcomes_are_recorded_and_reported(outbox: Outbox) -> None:
    outbox.create_job("j", TEMPLATE, people(4))
    sender = await outbox.open_sender()
    claims = await sender.claim(4)
    commit = await sender.mark_on_wire(claims)
    assert commit.rows == 4 and not commit.refused
    assert outbox.job("j").counts == {"on_wire": 4}
    sender.record(claims[0], "accepted", 250, "2.0.0", "Ok: queued as A1")
    sender.record(claims[1], "rejected", 550, "5.1.1", "no such user")
    sender.record(claims[2], "failed", None, None, "template variable missing")
    at, future = sender.defer(claims[3], 451, "4.7.1", "greylisted")
    await future
    assert await sender.flush() is None  # that was the last group
    assert at is not None and time.time() + 8 < at <= time.time() + 10
    with pytest.raises(ValueError):  # a 4xx goes through defer, with its backoff
        sender.record(claims[3], "deferred", 451)  # type: ignore[arg-type]
    await sender.close()
    results = list(outbox.results("j"))
    assert [(r.index, r.status, r.code, r.enhanced_code, r.text, r.attempts) for r in results] == [
        (0, "accepted", 250, "2.0.0", "Ok: queued as A1", 1),
        (1, "rejected", 550, "5.1.1", "no such user", 1),
        (2, "failed", None, None, "template variable missing", 1),
    ]
    assert results[0].message_id == outbox.template("j").message_id(0)
    deferred = list(outbox.recipients("j", states=["deferred"]))
    assert [(d.index, d.attempts, d.code) for d in deferred] == [(3, 1, 451)]


async def test_a_change_of_the_wrong_type_is_refused_at_once(outbox: Outbox) -> None:
    outbox.create_job("j", TEMPLATE, people(2))
    sender = await outbox.open_sender()
    claims = await sender.claim(2)
    await sender.mark_on_wire(claims)
    good = sender.record(claims[0], "accepted", 250, "2.0.0", "ok")
    with pytest.raises(TypeError):
        sender.record(claims[1], "accepted", 250, "2.0.0", b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        sender.defer(claims[1], "451")  # type: ignore[arg-type]
    await good  # the group it would have joined is unharmed
    sender.record(claims[1], "accepted", 250, None, "ok")
    await sender.close()
    assert outbox.job("j").counts == {"accepted": 2}


async def test_a_closed_sender_refuses(outbox: Outbox) -> None:
    sender = await outbox.open_sender()
    await sender.close()
    with pytest.raises(OutboxClosed):
        await sender.claim(1)


async def test_deferred_recipients_come_back_with_backoff_then_expire(tmp_path: Path) -> None:
    policy = BackoffPolicy(min_backoff=10, max_backoff=25, jitter=0, max_queue_lifetime=100)
    ob = Outbox(tmp_path / "mail.db", backoff=policy)
    info = ob.create_job("grey", TEMPLATE, ["a@example.org"])
    start = info.send_at
    sender = await ob.open_sender()
    now = start
    waits = []
    while True:
        claims = await sender.claim(10, now=now)
        assert len(claims) == 1
        assert await sender.claim(10, now=now) == []  # not handed out twice
        await sender.mark_on_wire(claims)
        at, future = sender.defer(claims[0], 451, "4.7.1", "try later", now=now)
        await future
        if at is None:
            break
        waits.append(round(at - now, 3))
        assert await sender.claim(10, now=at - 0.5) == []  # not before its time
        now = at
    assert waits == [10, 20, 25, 25, 20]  # doubling, capped, the last one at the deadline
    await sender.close()
    (result,) = ob.results("grey")
    assert result.status == "deferred" and result.code == 451 and result.attempts == 6
    assert ob.job("grey").counts == {"expired": 1} and ob.job("grey").done
    ob.close()


def test_backoff_policy() -> None:
    policy = BackoffPolicy()
    assert (policy.min_backoff, policy.max_backoff) == (300, 4000)
    assert policy.max_queue_lifetime == 5 * 24 * 3600
    rng = random.Random(7)
    delays = [policy.delay(n, rng) for n in range(1, 10)]
    assert all(0.9 * min(4000, 300 * 2 ** (n - 1)) <= d for n, d in enumerate(delays, 1))
    assert all(d <= min(4000, 300 * 2 ** (n - 1)) for n, d in enumerate(delays, 1))
    assert policy.next_attempt(3, first_due=0, now=5 * 24 * 3600) is None
    assert policy.next_attempt(10**6, first_due=0, now=10) is not None  # no overflow
    for bad in ({"min_backoff": 0}, {"jitter": 1.0}, {"multiplier": 0.5}):
        with pytest.raises(ValueError):
            BackoffPolicy(**bad)  # type: ignore[arg-type]


async def test_on_wire_after_restart_is_in_doubt_and_not_resent(tmp_path: Path) -> None:
    path = tmp_path / "mail.db"
    ob = Outbox(path)
    ob.create_job("j", TEMPLATE, people(6))
    sender = await ob.open_sender()
    claims = await sender.claim(4)
    await sender.mark_on_wire(claims)
    sender.record(claims[0], "accepted", 250, "2.0.0", "ok")
    await sender.flush()
    await sender.close()  # as if it died: 1, 2, 3 never got a reply
    ob.close()

    ob = Outbox(path)
    sender = await ob.open_sender()
    assert sender.in_doubt_found == 3
    claims = await sender.claim(10)
    assert [c.index for c in claims] == [4, 5]  # the in-doubt ones are not sent again
    await sender.mark_on_wire(claims)
    for c in claims:
        sender.record(c, "accepted", 250, "2.0.0", "ok")
    await sender.flush()
    info = ob.job("j")
    assert info.counts == {"accepted": 3, "in_doubt": 3} and not info.done and info.settled
    doubtful = [r for r in ob.results("j") if r.status == "deferred"]
    assert [r.index for r in doubtful] == [1, 2, 3]
    assert all(r.text.startswith("in doubt") for r in doubtful)
    # Asked for, they are sent again and keep their flag.
    assert await sender.resend_in_doubt("j") == 3
    again = await sender.claim(10)
    assert [(c.index, c.in_doubt) for c in again] == [(1, True), (2, True), (3, True)]
    await sender.mark_on_wire(again)
    for c in again:
        sender.record(c, "accepted", 250, "2.0.0", "ok")
    await sender.close()
    records = list(ob.recipients("j"))
    assert [(r.state, r.in_doubt, r.attempts) for r in records[1:4]] == [("accepted", True, 2)] * 3
    assert ob.job("j").done
    ob.close()


async def test_resend_in_doubt_when_opening(tmp_path: Path) -> None:
    path = tmp_path / "mail.db"
    with Outbox(path) as ob:
        ob.create_job("j", TEMPLATE, people(2))
        sender = await ob.open_sender()
        await sender.mark_on_wire(await sender.claim(2))
        await sender.close()
    with Outbox(path) as ob:
        sender = await ob.open_sender(resend_in_doubt=True)
        assert sender.in_doubt_found == 2
        assert [(c.index, c.in_doubt) for c in await sender.claim(5)] == [(0, True), (1, True)]
        await sender.close()


async def test_group_commit_batches_many_changes(outbox: Outbox) -> None:
    outbox.create_job("j", TEMPLATE, people(3000))
    sender = await outbox.open_sender()
    try:
        claims = await sender.claim(3000)
        await sender.mark_on_wire(claims)
        before = sender.stats.commits
        groups = {}
        for c in claims:
            future = sender.record(c, "accepted", 250, "2.0.0", "ok")
            groups[id(future)] = future
        last = await sender.flush()
        commits = [await f for f in groups.values()]
        assert last == commits[-1]
        # Thousands of changes, a few commits: each group holds what arrived while the
        # previous one was being written (the writer may wake once or twice mid-loop).
        assert len(commits) <= 5
        assert sum(c.rows for c in commits) == 3000
        assert sender.stats.commits - before == len(commits)
        assert await sender.flush() is None  # nothing pending
    finally:
        await sender.close()
    assert outbox.job("j").counts == {"accepted": 3000}


def test_claim_queries_use_an_index(outbox: Outbox) -> None:
    """A claim must never scan the whole table (a million rows per claim): due deferred
    recipients come from their partial index, queued ones from a key range."""
    from fastsmtp.outbox import _writer

    outbox.create_job("j", TEMPLATE, people(10))
    db = outbox._db()
    for where, order, expected in (
        (_writer.DUE_WHERE, _writer.DUE_ORDER, "USING INDEX recipients_due"),
        (_writer.QUEUED_WHERE, _writer.QUEUED_ORDER, "USING INTEGER PRIMARY KEY"),
    ):
        sql = _writer._CLAIM_JSON.format(where=where, order=order)
        params = (1,) * sql.count("?")
        plan = " / ".join(str(row[3]) for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))
        assert f"SEARCH recipients {expected}" in plan, plan


# -- inspecting and operating ----------------------------------------------------------


def test_results_stream_page_by_page(outbox: Outbox) -> None:
    outbox.create_job("j", TEMPLATE, people(4500))
    stream = outbox.recipients("j")
    first = next(stream)
    assert first.index == 0
    # Rows added to another job meanwhile do not disturb the running iterator.
    outbox.create_job("k", TEMPLATE, people(10))
    assert sum(1 for _ in stream) == 4499
    assert list(outbox.results("j")) == []  # nothing has an outcome yet


async def test_cancel_retry_now_purge(outbox: Outbox) -> None:
    outbox.create_job("c", TEMPLATE, people(5))
    outbox.create_job("r", TEMPLATE, people(2))
    sender = await outbox.open_sender()
    claims = await sender.claim(3, ["bulk"])
    assert [c.job.job_id for c in claims] == ["c"] * 3
    await sender.mark_on_wire(claims[:1])
    # Cancelled with one recipient on the wire and two claimed but not yet marked.
    assert outbox.cancel("c") == 4
    commit = await sender.mark_on_wire(claims[1:])
    assert commit.refused == {claims[1].key, claims[2].key}
    sender.record(claims[0], "accepted", 250, "2.0.0", "ok")
    await sender.flush()
    assert outbox.job("c").counts == {"accepted": 1, "cancelled": 4}
    assert outbox.job("c").state == "cancelled"
    assert [r.status for r in outbox.results("c")] == ["accepted"] + ["failed"] * 4

    deferred = await sender.claim(2)
    assert [c.job.job_id for c in deferred] == ["r", "r"]
    await sender.mark_on_wire(deferred)
    for c in deferred:
        sender.defer(c, 421, "4.4.2", "timeout")
    await sender.flush()
    assert await sender.claim(5) == []
    assert outbox.retry_now("r") == 2
    assert [c.index for c in await sender.claim(5)] == [0, 1]
    await sender.close()

    assert outbox.purge(older_than=3600) == 0  # too young
    assert outbox.purge(older_than=0) == 1  # "c" is all final; "r" is not
    assert [j.job_id for j in outbox.jobs()] == ["r"]
    with pytest.raises(JobNotFound):
        outbox.job("c")


def test_jobs_lists_with_counts(outbox: Outbox) -> None:
    outbox.create_job("a", TEMPLATE, people(2))
    outbox.create_job("b", TEMPLATE, people(3), lane="transactional")
    listed = outbox.jobs(counts=True)
    assert [(j.job_id, j.lane, j.total, j.counts) for j in listed] == [
        ("a", "bulk", 2, {"queued": 2}),
        ("b", "transactional", 3, {"queued": 3}),
    ]
    assert outbox.check() == ["ok"]


# -- the sender lock -------------------------------------------------------------------

_HOLD = """
import asyncio, sys
from fastsmtp.outbox import Outbox
async def main():
    sender = await Outbox(sys.argv[1]).open_sender()
    print("holding", flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""


async def test_one_sender_at_a_time_even_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "mail.db")
    with Outbox(path) as first:
        first.create_job("j", TEMPLATE, people(1))
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLD, path, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        assert (await holder.stdout.readline()).strip() == b"holding"
        ob = Outbox(path)
        with pytest.raises(OutboxLocked) as caught:
            await ob.open_sender()
        assert caught.value.holder == f"pid {holder.pid} on {os.uname().nodename}"
        assert ob.sender_holder() == caught.value.holder
        # Readers and job creation keep working meanwhile.
        ob.create_job("k", TEMPLATE, people(1))
        assert ob.job("j").counts == {"queued": 1}
        holder.send_signal(signal.SIGKILL)  # the kernel releases its lock
        await holder.wait()
        assert ob.sender_holder() is None
        sender = await ob.open_sender()
        assert ob.sender_holder() == f"pid {os.getpid()} on {os.uname().nodename}"
        assert len(await sender.claim(5)) == 2
        # A second sender in this very process is refused too.
        with pytest.raises(OutboxError):
            await ob.open_sender()
        other = Outbox(path)
        with pytest.raises(OutboxLocked):
            await other.open_sender()
        other.close()
        await sender.close()
        ob.close()
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
