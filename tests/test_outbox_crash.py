"""Crash safety with real processes: a sender (tests/outbox_support/crash_sender.py) is
SIGKILLed at random points while it fills and drains a job, and restarted each time.
After every kill the file passes ``PRAGMA integrity_check``, every change the process had
been told was committed is there, recipients left on the wire become in doubt at the next
start and are never sent again, and in the end every recipient is final or in doubt."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastsmtp.outbox import Outbox
from fastsmtp.outbox._models import STATE_CODES

ROOT = Path(__file__).resolve().parent.parent
RECIPIENTS = 50_000
KILLS = 12


def parse(log: Path) -> list[tuple[str, list[str]]]:
    if not log.exists():
        return []
    lines = log.read_text().split("\n")
    complete = lines[:-1]  # the last piece has no newline: cut short or empty
    return [(line.split(" ")[0], line.split(" ")[1:]) for line in complete if line]


def states(path: Path) -> dict[int, tuple[str, bool]]:
    with Outbox(path, readonly=True) as ob:
        return {r.index: (r.state, r.in_doubt) for r in ob.recipients("crash")}


@pytest.mark.timeout(300)
def test_sigkill_at_random_points_loses_nothing_acknowledged(tmp_path: Path) -> None:
    seed = int(os.environ.get("OUTBOX_CRASH_SEED", random.randrange(1 << 30)))
    print(f"OUTBOX_CRASH_SEED={seed}")
    rng = random.Random(seed)
    db = tmp_path / "mail.db"
    log = tmp_path / "sender.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    key_base = None
    in_doubt_forever: set[int] = set()
    finals: dict[int, str] = {}
    kills = 0
    finished = False
    run = 0
    total_in_doubt = 0
    while not finished:
        run += 1
        before = len(parse(log))
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.outbox_support.crash_sender",
                str(db),
                str(log),
                str(RECIPIENTS),
                str(seed + run),
            ],
            cwd=ROOT,
            env=env,
        )
        if kills < KILLS:
            if rng.random() < 0.3:
                time.sleep(rng.uniform(0.05, 0.6))  # anywhere, the fill included
            else:  # while sending: a moment after this run's sender started
                deadline = time.monotonic() + 30
                while child.poll() is None and time.monotonic() < deadline:
                    if any(kind == "start" for kind, _ in parse(log)[before:]):
                        break
                    time.sleep(0.005)
                # Short enough that 12 kills come before the job is done (~2 s of work).
                time.sleep(rng.uniform(0.0, 0.15))
            child.send_signal(signal.SIGKILL)
        child.wait(timeout=120)
        if child.returncode == 0:
            finished = True
        else:
            assert child.returncode == -signal.SIGKILL
            kills += 1
        entries = parse(log)[before:]
        if not db.exists() or (not entries and not finished):
            continue  # killed before the outbox existed or before the sender started
        with Outbox(db, readonly=True) as ob:
            assert ob.check() == ["ok"]
            if key_base is None:
                key_base = ob.template("crash").rowid << 32
        rows = states(db)
        # Every acknowledged change is there.
        for kind, items in entries:
            if kind == "start":
                total_in_doubt += int(items[0])
            elif kind == "W":
                for key in map(int, items):
                    index = key - key_base
                    assert index not in in_doubt_forever, "an in-doubt recipient was resent"
                    assert index not in finals, "a recipient with a final result was resent"
                    assert rows[index][0] != "queued"
            elif kind == "F":
                for item in items:
                    key, state = item.split(":")
                    index = int(key) - key_base
                    assert rows[index][0] == state
                    finals[index] = state
            elif kind == "D":
                for key in map(int, items):
                    assert rows[int(key) - key_base][0] != "queued"
        # What was on the wire at the kill is in doubt from the next start on.
        in_doubt_forever |= {i for i, (state, _) in rows.items() if state == "on_wire"}
        for index, state in finals.items():
            assert rows[index][0] == state
    assert kills == KILLS
    rows = states(db)
    assert len(rows) == RECIPIENTS
    final_names = {s for s, code in STATE_CODES.items() if code >= STATE_CODES["accepted"]}
    leftover = {i: s for i, (s, _) in rows.items() if s not in final_names}
    assert set(leftover.values()) <= {"in_doubt"}
    assert set(leftover) == in_doubt_forever
    assert all(rows[i][1] for i in in_doubt_forever)  # flagged
    assert total_in_doubt == len(in_doubt_forever)
    print(
        f"{kills} kills, {run} runs: {RECIPIENTS - len(leftover)} final, "
        f"{len(leftover)} in doubt (reported, not resent)"
    )
