"""Peak memory of one big batch, and of one large message.

    python benches/memory.py                       # 1,000,000 recipients, 16 connections
    python benches/memory.py --recipients 100000   # a quicker check
    python benches/memory.py --large-mb 100        # one message with a 100 MB attachment

Large message: each run is a fresh process that makes the attachment's bytes (the caller's
data, counted in the baseline), then sends one message carrying them with ``Engine.send``
to smtp-sink (DATA: dot-stuffed) and to a private Postfix (CHUNKING: BDAT); the extra
memory is the peak RSS minus the RSS before the message was built, held against twice the
encoded message size (exit 1 when above).

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


async def send_large(port: int, megabytes: int) -> dict[str, Any]:
    """One message with a ``megabytes`` MB attachment; peak extra memory and encoded size."""
    import os

    from fastsmtp import Attachment, Engine, Message

    content = os.urandom(megabytes * 2**20)  # the caller's data
    async with Engine(HOST, port, tls="none", timeout=120.0) as engine:
        await engine.connect()
        before = rss_mb()
        message = Message(
            sender="bench@example.com",
            to=["big@example.org"],
            subject="large",
            text="see the attachment\n",
            attachments=[Attachment(filename="big.bin", content=content)],
        )
        (result,) = await engine.send(message)
        peak = peak_rss_mb()  # before anything else is built
    encoded = len(message.as_bytes()) / 2**20
    return {
        "status": result.status,
        "attachment_mb": megabytes,
        "encoded_mb": round(encoded, 1),
        "rss_before_mb": round(before, 1),
        "peak_rss_mb": round(peak, 1),
        "extra_mb": round(peak - before, 1),
        "extra_per_encoded": round((peak - before) / encoded, 2),
    }


def large_child(server: str, port: int, megabytes: int) -> dict[str, Any]:
    """``send_large`` in a fresh process (peak RSS is per process)."""
    import subprocess

    proc = subprocess.run(
        [sys.executable, __file__, "--large-child", f"{server}:{port}:{megabytes}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return {"server": server, **json.loads(proc.stdout.strip().splitlines()[-1])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large-mb", type=int, help="one message with an attachment this big")
    parser.add_argument("--large-child", help=argparse.SUPPRESS)
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--size", type=int, default=1130, help="message size in octets")
    parser.add_argument("--limit-mb", type=float, default=200.0)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    if args.large_child:
        _server, port, megabytes = args.large_child.split(":")
        print(json.dumps(uvloop.run(send_large(int(port), int(megabytes)))))
        return 0
    if args.large_mb:
        from _peers import bench_postfix

        runs = []
        with BenchSink() as sink:
            runs.append(large_child("smtp-sink (DATA)", sink.port, args.large_mb))
        with bench_postfix(message_size_limit=0) as (port, _):
            runs.append(large_child("Postfix (CHUNKING)", port, args.large_mb))
        ok = all(r["status"] == "accepted" and r["extra_per_encoded"] <= 2.0 for r in runs)
        for r in runs:
            print(
                f"{r['server']}: {r['status']}; {r['attachment_mb']} MB attachment, "
                f"{r['encoded_mb']} MB encoded; RSS {r['rss_before_mb']} -> peak "
                f"{r['peak_rss_mb']} MB: {r['extra_mb']} MB extra = "
                f"{r['extra_per_encoded']}x the encoded size (limit 2x)"
            )
        if args.json:
            args.json.write_text(json.dumps(runs, indent=1) + "\n")
        return 0 if ok else 1
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
