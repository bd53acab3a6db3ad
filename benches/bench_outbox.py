"""The durable outbox's speed and size: enqueue, state changes, and the SQLite driver.

    python benches/bench_outbox.py                      # everything, 1,000,000 recipients
    python benches/bench_outbox.py enqueue --recipients 100000
    python benches/bench_outbox.py changes --messages 200000
    python benches/bench_outbox.py drivers              # apsw vs the stdlib sqlite3

* ``enqueue``: ``Outbox.create_job`` of N personalized recipients (an address and a small
  dict each) streamed from a generator, run in a fresh child process so its peak RSS
  (``ru_maxrss``) is the enqueue's alone. Reports seconds, recipients/s, bytes per
  recipient (file size after a checkpoint / N) and peak RSS.
* ``changes``: a sender drains a job the way the engine will: ``claim`` 256 at a time,
  ``await mark_on_wire``, then ``record`` each (accepted) and wait for the group, with 16
  such loops at once (16 connections). Reports messages/s, state changes/s (on_wire +
  result = 2 row writes per message; claims are not written), commits/s, rows per commit
  and fsyncs/s counted by ``strace -f -c`` (when strace is installed) in a second run.
* ``drivers``: the same 1,000,000-row insert (chunks of 20,000 per transaction) through
  apsw and through ``sqlite3``, and 100,000 single-row updates committed 1,000 per
  transaction: the measurement behind choosing apsw.

Medians of ``--rounds`` runs; the machine is shared, compare numbers of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import apsw
import msgspec

import fastsmtp
from fastsmtp.outbox import Outbox

TEMPLATE = fastsmtp.Message(
    sender="Shop <news@shop.example>",
    subject="Hello {{ first }}, your code {{ code }}",
    text="Hi {{ first }},\nyour code is {{ code }}.\n",
    html="<p>Hi {{ first }}, your code is <b>{{ code }}</b>.</p>",
)


def recipients(n: int) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {"address": f"user{i}@example.org", "first": f"User{i}", "code": i * 7919 % 100000}


def fresh(directory: str, name: str) -> str:
    path = os.path.join(directory, name)
    for suffix in ("", "-wal", "-shm", "-sender.lock"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    return path


# -- enqueue ---------------------------------------------------------------------------


def enqueue_child(path: str, n: int) -> dict[str, float]:
    """Run in a child: one create_job of n recipients, then measure."""
    outbox = Outbox(path)
    started = time.perf_counter()
    info = outbox.create_job("bench", TEMPLATE, recipients(n))
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert info.total == n, info
    outbox.close()
    db = apsw.Connection(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    size = os.path.getsize(path)
    return {
        "seconds": elapsed,
        "per_second": n / elapsed,
        "bytes_per_recipient": size / n,
        "peak_rss_mb": peak,
    }


def bench_enqueue(directory: str, n: int, rounds: int) -> dict[str, Any]:
    runs = []
    for _ in range(rounds):
        path = fresh(directory, "enqueue.db")
        out = subprocess.run(
            [sys.executable, __file__, "_enqueue_child", path, str(n)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        runs.append(json.loads(out))
    summary = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(
        f"enqueue {n:,} recipients: {summary['seconds']:.2f} s "
        f"({summary['per_second']:,.0f}/s), {summary['bytes_per_recipient']:.0f} B/recipient, "
        f"peak RSS {summary['peak_rss_mb']:.0f} MB  (median of {rounds}: "
        + ", ".join(f"{r['seconds']:.2f}s" for r in runs)
        + ")"
    )
    return {"recipients": n, **summary, "runs": runs}


# -- state changes ---------------------------------------------------------------------


def burn(seconds: float) -> None:
    """Hold the CPU (and the GIL) like the engine's per-message work would."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def drain(path: str, loops: int, batch: int, work_us: float) -> dict[str, float]:
    outbox = Outbox(path)
    sender = await outbox.open_sender()
    done = 0
    work = work_us / 1e6

    async def connection() -> None:
        nonlocal done
        while True:
            claims = await sender.claim(batch)
            if not claims:
                return
            if work:
                burn(work * len(claims) / 2)  # rendering
            commit = await sender.mark_on_wire(claims)
            assert not commit.refused
            if work:
                burn(work * len(claims) / 2)  # the wire and the replies
            future = None
            for claim in claims:
                future = sender.record(claim, "accepted", 250, "2.0.0", "Ok: queued as 4F2A9C1B3D")
            assert future is not None
            await future
            done += len(claims)

    started = time.perf_counter()
    cpu = time.process_time()
    await asyncio.gather(*(connection() for _ in range(loops)))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    stats = sender.stats
    await sender.close()
    info = outbox.job("bench")
    outbox.close()
    assert info.counts == {"accepted": info.total}, info.counts
    return {
        "messages": done,
        "seconds": elapsed,
        "messages_per_second": done / elapsed,
        "cpu_us_per_message": cpu / done * 1e6,
        "changes_per_second": stats.rows / elapsed,
        "commits": stats.commits,
        "commits_per_second": stats.commits / elapsed,
        "rows_per_commit": stats.rows / max(1, stats.commits),
        "largest_group": stats.largest_group,
        "writer_busy_share": stats.busy_seconds / elapsed,
    }


async def in_memory(n: int, loops: int, batch: int, work_us: float) -> dict[str, float]:
    """The same loops and the same simulated work with no outbox: the ceiling."""
    remaining = n
    work = work_us / 1e6
    done = 0

    async def connection() -> None:
        nonlocal remaining, done
        while remaining > 0:
            take = min(batch, remaining)
            remaining -= take
            await asyncio.sleep(0)
            if work:
                burn(work * take)
            await asyncio.sleep(0)
            done += take

    started = time.perf_counter()
    cpu = time.process_time()
    await asyncio.gather(*(connection() for _ in range(loops)))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    return {
        "messages": done,
        "seconds": elapsed,
        "messages_per_second": done / elapsed,
        "cpu_us_per_message": cpu / done * 1e6,
    }


def changes_child(path: str, loops: int, batch: int, work_us: float) -> dict[str, float]:
    import uvloop

    return uvloop.run(drain(path, loops, batch, work_us))


def bench_changes(
    directory: str, n: int, rounds: int, loops: int, batch: int, work_us: float
) -> dict[str, Any]:
    runs = []
    ceiling = None
    if work_us:
        import uvloop

        ceiling = statistics.median(
            uvloop.run(in_memory(n, loops, batch, work_us))["messages_per_second"]
            for _ in range(rounds)
        )
    template = fresh(directory, "changes-template.db")
    Outbox(template).create_job("bench", TEMPLATE, recipients(n)).total  # noqa: B018
    for _ in range(rounds):
        path = fresh(directory, "changes.db")
        for suffix in ("", "-wal"):
            if os.path.exists(template + suffix):
                shutil.copy(template + suffix, path + suffix)
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "_changes_child",
                path,
                str(loops),
                str(batch),
                str(work_us),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        runs.append(json.loads(out))
    summary = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    fsyncs = None
    if shutil.which("strace"):
        path = fresh(directory, "changes.db")
        for suffix in ("", "-wal"):
            if os.path.exists(template + suffix):
                shutil.copy(template + suffix, path + suffix)
        trace = os.path.join(directory, "strace.txt")
        out = subprocess.run(
            [
                "strace",
                "-f",
                "-c",
                "-o",
                trace,
                "-e",
                "trace=fsync,fdatasync",
                sys.executable,
                __file__,
                "_changes_child",
                path,
                str(loops),
                str(batch),
                str(work_us),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        traced = json.loads(out)
        calls = 0
        for line in Path(trace).read_text().splitlines():
            parts = line.split()
            if parts and parts[-1] in ("fsync", "fdatasync"):
                calls += int(parts[3])
        fsyncs = {
            "fsyncs": calls,
            "fsyncs_per_second": calls / traced["seconds"],
            "commits_under_strace": traced["commits"],
            "messages_per_second_under_strace": traced["messages_per_second"],
        }
    print(
        f"state changes, {n:,} messages, {loops} loops x {batch}: "
        f"{summary['messages_per_second']:,.0f} msg/s, "
        f"{summary['changes_per_second']:,.0f} row changes/s, "
        f"{summary['commits_per_second']:,.0f} commits/s, "
        f"{summary['rows_per_commit']:,.0f} rows/commit, "
        f"{summary['cpu_us_per_message']:.1f} us CPU/msg (both threads), writer busy "
        f"{summary['writer_busy_share']:.0%}  (median of {rounds}: "
        + ", ".join(f"{r['messages_per_second']:,.0f}" for r in runs)
        + " msg/s)"
    )
    if ceiling:
        print(
            f"  with {work_us:g} us of simulated engine work per message: in memory "
            f"{ceiling:,.0f} msg/s, durable {summary['messages_per_second']:,.0f} msg/s "
            f"({summary['messages_per_second'] / ceiling:.2f} of it)"
        )
    if fsyncs:
        print(
            f"  under strace: {fsyncs['fsyncs']:,} fsyncs for {fsyncs['commits_under_strace']:,} "
            f"commits, {fsyncs['fsyncs_per_second']:,.0f} fsyncs/s "
            f"({fsyncs['messages_per_second_under_strace']:,.0f} msg/s)"
        )
    return {
        "messages": n,
        "loops": loops,
        "batch": batch,
        "work_us": work_us,
        "in_memory_messages_per_second": ceiling,
        **summary,
        "fsync": fsyncs,
        "runs": runs,
    }


# -- drivers ---------------------------------------------------------------------------

_DDL = (
    "CREATE TABLE r (key INTEGER PRIMARY KEY, address TEXT NOT NULL, name TEXT, data BLOB, "
    "state INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0)"
)


def driver_run(driver: str, path: str, n: int) -> dict[str, float]:
    encode = msgspec.msgpack.Encoder().encode
    conn: Any
    if driver == "sqlite3":
        conn = sqlite3.connect(path, isolation_level=None)
    else:
        conn = apsw.Connection(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(_DDL)
    rows = (
        ((1 << 32) | i, f"user{i}@example.org", None, encode({"first": f"User{i}", "n": i}))
        for i in range(n)
    )
    started = time.perf_counter()
    while chunk := list(islice(rows, 20_000)):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO r (key, address, name, data) VALUES (?, ?, ?, ?)", chunk)
        conn.execute("COMMIT")
    insert = time.perf_counter() - started
    updates = min(n, 100_000)
    started = time.perf_counter()
    for lo in range(0, updates, 1000):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "UPDATE r SET state = 1, attempts = attempts + 1 WHERE key = ?",
            [((1 << 32) | i,) for i in range(lo, lo + 1000)],
        )
        conn.execute("COMMIT")
    update = time.perf_counter() - started
    conn.close()
    return {"insert_per_second": n / insert, "update_per_second": updates / update}


def bench_drivers(directory: str, n: int, rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for driver in ("apsw", "sqlite3"):
        runs = [driver_run(driver, fresh(directory, f"{driver}.db"), n) for _ in range(rounds)]
        out[driver] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    a, s = out["apsw"], out["sqlite3"]
    print(
        f"drivers, {n:,} rows: insert apsw {a['insert_per_second']:,.0f}/s vs sqlite3 "
        f"{s['insert_per_second']:,.0f}/s ({a['insert_per_second'] / s['insert_per_second']:.2f}x);"
        f" grouped updates apsw {a['update_per_second']:,.0f}/s vs sqlite3 "
        f"{s['update_per_second']:,.0f}/s ({a['update_per_second'] / s['update_per_second']:.2f}x)"
        f"  [SQLite {apsw.sqlite_lib_version()} vs {sqlite3.sqlite_version}]"
    )
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_enqueue_child":
        print(json.dumps(enqueue_child(sys.argv[2], int(sys.argv[3]))))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_changes_child":
        path, loops, batch, work = sys.argv[2:6]
        print(json.dumps(changes_child(path, int(loops), int(batch), float(work))))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", nargs="*", default=["enqueue", "changes", "drivers"])
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--loops", type=int, default=16)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument(
        "--work-us",
        type=float,
        default=0.0,
        help="simulated engine CPU per message (held with the GIL), e.g. 20",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where the databases go (a real disk)")
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args()
    directory = args.dir or tempfile.mkdtemp(prefix="bench-outbox-", dir="/var/tmp")
    figures: dict[str, Any] = {"sqlite": apsw.sqlite_lib_version()}
    try:
        if "enqueue" in args.what:
            figures["enqueue"] = bench_enqueue(directory, args.recipients, args.rounds)
        if "changes" in args.what:
            figures["changes"] = bench_changes(
                directory, args.messages, args.rounds, args.loops, args.batch, args.work_us
            )
        if "drivers" in args.what:
            figures["drivers"] = bench_drivers(directory, args.recipients, args.rounds)
    finally:
        if args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
