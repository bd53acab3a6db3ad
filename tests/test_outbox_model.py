"""The sender's claims and state changes checked against a plain Python model.

Random sequences of operations (add jobs in both lanes, claim with and without lanes,
mark on the wire, record, defer, release, advance the clock, cancel, retry now, restart
the sender, resend in-doubt recipients) run against a real outbox file and against a
model written for clarity, not speed. After every step the file's recipient states and
every claim's exact order must equal the model's. ``OUTBOX_MODEL_SEEDS=700`` runs more
sequences (700 passed when this was written)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from fastsmtp.outbox import BackoffPolicy, Claim, Outbox, Sender
from tests.outbox_support import TEMPLATE

POLICY = BackoffPolicy(min_backoff=10, max_backoff=40, jitter=0, max_queue_lifetime=10**9)
FINAL = ("accepted", "rejected", "failed")


class Model:
    def __init__(self) -> None:
        self.jobs: list[dict[str, object]] = []  # in creation order
        self.state: dict[tuple[str, int], str] = {}
        self.next_at: dict[tuple[str, int], float] = {}
        self.attempts: dict[tuple[str, int], int] = {}
        self.claimed: set[tuple[str, int]] = set()
        self.cancelled: set[str] = set()

    def add(self, name: str, lane: str, n: int) -> None:
        self.jobs.append({"name": name, "lane": lane, "n": n})
        for i in range(n):
            self.state[name, i] = "queued"
            self.attempts[name, i] = 0

    def claim(self, limit: int, lanes: list[str], now: float) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        order = {j["name"]: k for k, j in enumerate(self.jobs)}
        for lane in ("transactional", "bulk"):
            if lane not in lanes:
                continue
            due = sorted(
                (self.next_at[r], order[r[0]], r[1], r)
                for r, s in self.state.items()
                if s == "deferred"
                and self.next_at[r] <= now
                and r not in self.claimed
                and self.lane(r[0]) == lane
                and r[0] not in self.cancelled
            )
            out += [r for *_, r in due][: limit - len(out)]
            for job in self.jobs:
                name = str(job["name"])
                if job["lane"] != lane or name in self.cancelled:
                    continue
                for i in range(int(job["n"])):  # type: ignore[call-overload]
                    if len(out) >= limit:
                        break
                    if self.state[name, i] == "queued" and (name, i) not in self.claimed:
                        out.append((name, i))
        out = out[:limit]
        self.claimed |= set(out)
        return out

    def lane(self, name: str) -> str:
        return next(str(j["lane"]) for j in self.jobs if j["name"] == name)


def key(c: Claim) -> tuple[str, int]:
    return (c.job.job_id, c.index)


async def check(outbox: Outbox, model: Model) -> None:
    for job in model.jobs:
        name = str(job["name"])
        stored = {r.index: r.state for r in outbox.recipients(name)}
        expected = {i: model.state[name, i] for i in range(int(job["n"]))}  # type: ignore[call-overload]
        assert stored == expected, name


@pytest.mark.parametrize("seed", range(int(os.environ.get("OUTBOX_MODEL_SEEDS", "16"))))
async def test_claims_and_states_follow_the_model(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    outbox = Outbox(tmp_path / "mail.db", backoff=POLICY)
    model = Model()
    sender: Sender = await outbox.open_sender()
    now = 1_000_000.0  # the model's clock; every job is due from the start (send_at=0)
    claims: dict[tuple[str, int], Claim] = {}
    on_wire: dict[tuple[str, int], Claim] = {}
    jobs = 0
    for _ in range(70):
        op = rng.choice(
            [
                "add",
                "claim",
                "claim",
                "claim",
                "wire",
                "wire",
                "result",
                "result",
                "defer",
                "release",
                "clock",
                "cancel",
                "retry",
                "restart",
                "resend",
            ]
        )
        if op == "add" or not model.jobs:
            jobs += 1
            name, lane, n = f"j{jobs}", rng.choice(["transactional", "bulk"]), rng.randint(0, 12)
            outbox.create_job(
                name, TEMPLATE, [f"r{i}@example.org" for i in range(n)], lane=lane, send_at=0
            )  # type: ignore[arg-type]
            model.add(name, lane, n)
        elif op == "claim":
            limit = rng.randint(1, 15)
            lanes = rng.choice([["transactional", "bulk"], ["bulk"], ["transactional"]])
            got = await sender.claim(limit, lanes, now=now)  # type: ignore[arg-type]
            assert [key(c) for c in got] == model.claim(limit, lanes, now)
            claims.update((key(c), c) for c in got)
        elif op == "wire" and claims:
            some = rng.sample(sorted(claims), rng.randint(1, len(claims)))
            commit = await sender.mark_on_wire([claims[k] for k in some])
            refused = {key(c) for c in claims.values() if c.key in commit.refused}
            assert refused == {k for k in some if k[0] in model.cancelled}
            for k in some:
                c = claims.pop(k)
                model.claimed.discard(k)
                if k not in refused:
                    model.state[k] = "on_wire"
                    model.attempts[k] += 1
                    on_wire[k] = c
        elif op in ("result", "defer") and on_wire:
            some = rng.sample(sorted(on_wire), rng.randint(1, len(on_wire)))
            for k in some:
                c = on_wire.pop(k)
                if op == "result":
                    status = rng.choice(FINAL)
                    sender.record(c, status, 250)  # type: ignore[arg-type]
                    model.state[k] = status
                else:
                    at, _ = sender.defer(c, 451, now=now)
                    assert at == now + min(40, 10 * 2 ** (model.attempts[k] - 1))
                    model.state[k] = "deferred"
                    model.next_at[k] = at
            await sender.flush()
        elif op == "release" and claims:
            some = rng.sample(sorted(claims), rng.randint(1, len(claims)))
            sender.release([claims.pop(k) for k in some])
            model.claimed -= set(some)
        elif op == "clock":
            now += rng.choice([1, 10, 25, 50])
        elif op == "cancel":
            name = str(rng.choice(model.jobs)["name"])
            await sender.flush()
            n = outbox.cancel(name)
            hit = [
                k
                for k, s in model.state.items()
                if k[0] == name and s in ("queued", "deferred", "in_doubt")
            ]
            assert n == len(hit)
            for k in hit:
                model.state[k] = "cancelled"
            model.cancelled.add(name)
        elif op == "retry":
            name = str(rng.choice(model.jobs)["name"])
            await sender.flush()
            outbox.retry_now(name)
            # retry_now uses the wall clock: every deferred recipient is due for the model's
            # clock too (it runs ahead of the wall clock).
        elif op == "restart":
            await sender.close()
            claims.clear()
            model.claimed.clear()
            sender = await outbox.open_sender()
            moved = [k for k in on_wire]
            assert sender.in_doubt_found == len(moved)
            for k in moved:
                model.state[k] = "in_doubt"
            on_wire.clear()
        elif op == "resend":
            name = str(rng.choice(model.jobs)["name"])
            n = await sender.resend_in_doubt(name)
            hit = [k for k, s in model.state.items() if k[0] == name and s == "in_doubt"]
            assert n == len(hit)
            for k in hit:
                model.state[k] = "queued"
        await check(outbox, model)
    await sender.close()
    outbox.close()
