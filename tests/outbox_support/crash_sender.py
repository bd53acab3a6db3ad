"""A sender process for the crash tests: fills a job, then drains it like an engine, and
logs every change only after the outbox acknowledged it as committed.

    python -m tests.outbox_support.crash_sender DB LOG RECIPIENTS SEED

Log lines (appended; a line cut short by SIGKILL is ignored by the reader):
``start <in_doubt_found>``, ``W <key>...`` (on the wire, committed), ``F <key> <state>...``
(final results, committed), ``D <key>...`` (deferrals, committed), ``done``.
The test SIGKILLs this process at random points and checks the log against the file.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys

from fastsmtp.outbox import BackoffPolicy, Outbox
from tests.outbox_support import TEMPLATE, people

BACKOFF = BackoffPolicy(min_backoff=0.02, max_backoff=0.05, jitter=0, max_queue_lifetime=2.0)


async def main(db: str, log_path: str, n: int, seed: int) -> None:
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def log(line: str) -> None:
        os.write(fd, (line + "\n").encode())

    rng = random.Random(seed)
    outbox = Outbox(db, backoff=BACKOFF)
    outbox.create_job("crash", TEMPLATE, people(n), chunk_size=1000)
    sender = await outbox.open_sender()
    log(f"start {sender.in_doubt_found}")
    while True:
        claims = await sender.claim(rng.randint(1, 400))
        if not claims:
            counts = outbox.job("crash").counts
            if counts.get("deferred") or counts.get("queued"):
                await asyncio.sleep(0.01)
                continue
            break
        commit = await sender.mark_on_wire(claims)
        claims = [c for c in claims if c.key not in commit.refused]
        log("W " + " ".join(str(c.key) for c in claims))
        await asyncio.sleep(rng.uniform(0.001, 0.008))  # the server's replies take a moment
        finals: list[str] = []
        deferred: list[str] = []
        future = None
        for claim in claims:
            roll = rng.random()
            if roll < 0.8:
                future = sender.record(claim, "accepted", 250, "2.0.0", "ok")
                finals.append(f"{claim.key}:accepted")
            elif roll < 0.9:
                future = sender.record(claim, "rejected", 550, "5.1.1", "no")
                finals.append(f"{claim.key}:rejected")
            else:
                at, future = sender.defer(claim, 451, "4.7.1", "later")
                if at is None:
                    finals.append(f"{claim.key}:expired")
                else:
                    deferred.append(str(claim.key))
        if future is not None:
            await future
        if finals:
            log("F " + " ".join(finals))
        if deferred:
            log("D " + " ".join(deferred))
    log("done")
    await sender.close()
    outbox.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
