"""Peak memory of one big batch: 1,000,000 recipients streamed from a generator.

    python benches/memory.py                       # 1,000,000 recipients, 16 connections
    python benches/memory.py --recipients 100000   # a quicker check

Sends one personalized ~1 KB message per recipient with ``Engine.send_batch`` to Postfix's
``smtp-sink`` on 127.0.0.1, the recipients coming from a generator (never a list), and
reports the process's peak RSS (``resource.getrusage().ru_maxrss``) with the RSS sampled
every second along the way. Exits 1 when the peak exceeds ``--limit-mb`` (200) or when any
recipient was not accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import uvloop

from _peers import BenchSink
from _senders import HOST, fastsmtp_template, recipient

PAGE = resource.getpagesize()


def rss_mb() -> float:
    """The current resident set size in MB (from /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def recipients(count: int) -> Iterator[dict[str, str]]:
    for i in range(count):
        yield recipient(i)


async def run(port: int, count: int, connections: int, size: int) -> dict[str, Any]:
    from fastsmtp import Engine

    template, message_size = fastsmtp_template(size)
    before = rss_mb()
    samples: list[tuple[float, float]] = []
    results = 0

    def on_result(_result: object) -> None:
        nonlocal results
        results += 1

    async def sample() -> None:
        started = time.perf_counter()
        while True:
            samples.append((round(time.perf_counter() - started, 1), round(rss_mb(), 1)))
            await asyncio.sleep(1.0)

    sampler = asyncio.create_task(sample())
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        async with Engine(
            HOST,
            port,
            tls="none",
            connections=connections,
            max_messages_per_connection=10**9,
            timeout=60.0,
        ) as engine:
            report = await asyncio.wait_for(
                engine.send_batch(template, recipients(count), on_result=on_result),
                timeout=1800,
            )
    finally:
        sampler.cancel()
    elapsed = time.perf_counter() - started
    return {
        "recipients": count,
        "accepted": report.accepted,
        "results": results,
        "connections": connections,
        "message_size": message_size,
        "elapsed": round(elapsed, 2),
        "msg_per_s": round(report.accepted / elapsed),
        "cpu_us_per_msg": round((time.process_time() - cpu_started) / count * 1e6, 1),
        "rss_before_mb": round(before, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--size", type=int, default=1130, help="message size in octets")
    parser.add_argument("--limit-mb", type=float, default=200.0)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    with BenchSink() as sink:
        result = uvloop.run(run(sink.port, args.recipients, args.connections, args.size))
    result["limit_mb"] = args.limit_mb
    ok = result["peak_rss_mb"] <= args.limit_mb and result["accepted"] == args.recipients
    result["ok"] = ok
    samples = result["rss_samples"]
    shown = samples if len(samples) <= 12 else samples[:: max(1, len(samples) // 12)]
    print(
        f"{result['accepted']:,} of {result['recipients']:,} accepted in {result['elapsed']} s "
        f"({result['msg_per_s']:,} msg/s, {result['cpu_us_per_msg']} µs CPU/msg, "
        f"{result['connections']} connections)\n"
        f"RSS before the batch {result['rss_before_mb']} MB; "
        f"peak RSS {result['peak_rss_mb']} MB (limit {args.limit_mb:g} MB): "
        f"{'OK' if ok else 'FAILED'}\n"
        f"RSS over time (s, MB): {', '.join(f'{t:g}:{m:g}' for t, m in shown)}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
