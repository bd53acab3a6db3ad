"""User-space instructions per message of a fastsmtp ``send_batch`` run, by function.

    python benches/callgrind.py [--connections 16] [--small 1000] [--large 6000] [--top 40]

Runs ``benches/_senders.py fastsmtp`` under ``valgrind --tool=callgrind`` twice against
one smtp-sink, with ``--small`` and ``--large`` messages, and prints (large - small) /
(large - small messages) per function, inclusive: the start-up and imports cancel out.
Instruction counts are exact whatever the machine's load, which is why hot-path changes
are measured with this rather than with wall-clock timing alone (see RESULTS.md).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _peers import ROOT, BenchSink

SENDER_SCRIPT = Path(__file__).resolve().parent / "_senders.py"
LINE = re.compile(r"^\s*([\d,]+) \([^)]*\)\s+(?:\*\s+)?(.*)$")


def profile(
    port: int, connections: int, messages: int, out: Path, inclusive: bool
) -> dict[str, int]:
    """Instruction count per function of one run (inclusive or self)."""
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    cmd += [sys.executable, str(SENDER_SCRIPT), "fastsmtp", "--port", str(port)]
    cmd += ["--connections", str(connections), "--messages", str(messages)]
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, timeout=1800)
    total = subprocess.run(
        ["callgrind_annotate", str(out)], check=True, capture_output=True, text=True
    ).stdout
    annotated = subprocess.run(
        [
            "callgrind_annotate",
            f"--inclusive={'yes' if inclusive else 'no'}",
            "--threshold=100",
            str(out),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    counts: dict[str, int] = {}
    for line in annotated.splitlines():
        match = LINE.match(line)
        if match:
            name = match.group(2).strip()
            counts[name] = max(counts.get(name, 0), int(match.group(1).replace(",", "")))
    summary = re.search(r"^([\d,]+) \([^)]*\)\s+PROGRAM TOTALS", total, re.M)
    if summary:
        counts["PROGRAM TOTALS"] = int(summary.group(1).replace(",", ""))
    return counts


def short(name: str) -> str:
    """``/long/path/file.c:function'2 [/object.so]`` -> ``file.c:function'2``."""
    name = name.split(" [", 1)[0]
    path, sep, function = name.rpartition(":")
    return f"{path.rsplit('/', 1)[-1]}{sep}{function}" if sep else name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=6000)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--self", action="store_true", help="self cost instead of inclusive")
    args = parser.parse_args(argv)
    messages = args.large - args.small
    with tempfile.TemporaryDirectory() as tmp, BenchSink() as sink:
        os.environ.setdefault("PYTHONHASHSEED", "0")
        inclusive = not args.self
        runs = [
            profile(sink.port, args.connections, n, Path(tmp) / f"{n}.out", inclusive)
            for n in (args.small, args.large)
        ]
    small, large = runs
    per_message = {
        name: (large[name] - small.get(name, 0)) / messages for name in large if name in small
    }
    ranked = sorted(per_message.items(), key=lambda item: -item[1])
    kind = "self" if args.self else "inclusive"
    print(f"instructions per message ({args.connections} connections, {kind})")
    for name, count in ranked[: args.top]:
        print(f"{count:12,.0f}  {short(name)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
