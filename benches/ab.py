"""A/B comparison of two fastsmtp source trees, interleaved, against one smtp-sink.

    python benches/ab.py A_DIR B_DIR [--connections 1,16] [--messages 50000] [--rounds 5]
                         [--a-options "window=256 chunk_size=512"] [--b-options ...]

Each DIR is a directory holding a ``fastsmtp`` package (``python/`` of a checkout, with
the built ``_fastsmtp*.so`` beside its modules, as ``maturin develop`` leaves it); it is
put first on PYTHONPATH for that side's runs. Runs alternate A B A B ... and the medians
of msg/s and of the sending process's CPU microseconds per message are printed: the CPU
figure is the steadier one on a shared machine. Used for the before/after numbers of
hot-path changes (see RESULTS.md). The same tree on both sides with different
``--a-options``/``--b-options`` compares settings (e.g. the default window).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _peers import ROOT, BenchSink

SENDER_SCRIPT = Path(__file__).resolve().parent / "_senders.py"


def run(
    tree: Path, port: int, connections: int, messages: int, size: int, options: list[str]
) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, str(SENDER_SCRIPT), "fastsmtp", "--port", str(port)]
    cmd += ["--connections", str(connections), "--messages", str(messages), "--size", str(size)]
    for option in options:
        cmd += ["--option", option]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=600, check=False, cwd=ROOT
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    result: dict = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--connections", default="1,16")
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=1130)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--a-options",
        default="",
        help='Engine options for side A, e.g. "window=256 chunk_size=512" (see _senders.py)',
    )
    parser.add_argument("--b-options", default="", help="the same for side B")
    args = parser.parse_args(argv)
    trees = {"A": args.a.resolve(), "B": args.b.resolve()}
    for tree in trees.values():
        if not (tree / "fastsmtp").is_dir():
            parser.error(f"{tree} has no fastsmtp package")
    samples: dict[tuple[str, int], list[tuple[float, float]]] = {}
    with BenchSink() as sink:
        for round_ in range(args.rounds):
            for connections in (int(c) for c in args.connections.split(",")):
                for side, tree in trees.items():
                    options = (args.a_options if side == "A" else args.b_options).split()
                    r = run(tree, sink.port, connections, args.messages, args.size, options)
                    if r["accepted"] != args.messages:
                        raise SystemExit(f"{side}: only {r['accepted']} accepted")
                    rate = r["accepted"] / r["elapsed"]
                    cpu = r["cpu"] / r["accepted"] * 1e6
                    samples.setdefault((side, connections), []).append((rate, cpu))
                    print(
                        f"round {round_ + 1} {side} {connections:>2} conns "
                        f"{rate:>9,.0f} msg/s {cpu:6.1f} µs/msg",
                        flush=True,
                    )
    print(f"\nA = {trees['A']}\nB = {trees['B']}")
    print("| conns | side | msg/s (median) | CPU µs/msg (median) |")
    print("| ---: | --- | ---: | ---: |")
    for (side, connections), values in sorted(samples.items(), key=lambda kv: kv[0][::-1]):
        rate = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        print(f"| {connections} | {side} | {rate:,.0f} | {cpu:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
