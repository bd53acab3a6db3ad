"""End-to-end throughput: fastsmtp against Postfix's smtp-source, aiosmtplib and a ceiling.

    python benches/throughput.py            # the full run (about 10 minutes)
    python benches/throughput.py --quick    # a tenth of the messages (about 1-2 minutes)

Starts Postfix's ``smtp-sink`` (and a private Postfix ``smtpd`` that discards mail) on
127.0.0.1 and measures, interleaved (every sender once per round, A B C A B C ...), the
median of ``--rounds`` rounds:

* ``fastsmtp``: ``Engine.send_batch`` of personalized messages rendered from a template;
* ``smtp-source``: ``smtp-source -d -s <connections> -l <size> -m <N>`` (C, no pipelining);
* ``aiosmtplib``: one client per connection, each sending its share one message at a time
  over a persistent connection; ``aiosmtplib`` sends personalized bytes with ``sendmail``
  (its fastest path), ``aiosmtplib-email`` builds an ``EmailMessage`` per recipient and
  calls ``send_message`` (what its documentation shows);
* ``ceiling``: pre-framed session bytes with no per-message work (RFC 2920 pattern for DATA,
  back-to-back ``BDAT LAST`` transactions for CHUNKING): what the server can take.

It prints a table (msg/s, MB/s, CPU microseconds per message of the sending process, the
server's CPU per message for smtp-sink) and the target ratios, writes
``benches/results/<date>.json`` and, when matplotlib is installed, a PNG plot beside it.
Every sender runs in its own process, so CPU time and peak RSS are its alone.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _peers import (
    ROOT,
    BenchSink,
    bench_postfix,
    run_smtp_source,
)

BENCHES = Path(__file__).resolve().parent
RESULTS_DIR = BENCHES / "results"
SENDER_SCRIPT = BENCHES / "_senders.py"
RUN_TIMEOUT = 600.0
SMTP_SOURCE_HEADERS = 130
"""Octets of headers smtp-source puts before its ``-l`` body (From, To, Date, Message-Id):
the Python senders make messages of ``-l`` + this, so everyone sends the same size."""

SENDERS = ("fastsmtp", "smtp-source", "aiosmtplib", "aiosmtplib-email", "ceiling")
COLORS = dict(zip(SENDERS, ("C0", "C1", "C2", "C3", "C4"), strict=True))
"""One colour per sender in every panel of the plot."""


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One server and message size, measured at several connection counts."""

    name: str
    server: str  # "sink" or "postfix"
    body: int  # smtp-source -l
    connections: tuple[int, ...]
    messages: dict[str, int]  # per sender; a sender not listed is not run
    ceiling: str = "ceiling"  # which _senders.py kind is the ceiling here
    tls: str = "none"  # how the Python senders reach the server: none, implicit, starttls

    @property
    def size(self) -> int:
        return self.body + SMTP_SOURCE_HEADERS


def scenarios(quick: bool) -> list[Scenario]:
    scale = 10 if quick else 1

    def n(count: int) -> int:
        return max(count // scale, 100)

    return [
        Scenario(
            "1KB smtp-sink",
            "sink",
            1000,
            (1, 4, 16),
            {
                "fastsmtp": n(100_000),
                "smtp-source": n(100_000),
                "aiosmtplib": n(3_000) * (3 if quick else 1),
                "aiosmtplib-email": n(2_000) * (3 if quick else 1),
                "ceiling": n(100_000),
            },
        ),
        Scenario(
            "100KB smtp-sink",
            "sink",
            100 * 1024,
            (1, 16),
            {
                "fastsmtp": n(10_000),
                "smtp-source": n(10_000),
                "aiosmtplib": n(1_000) * (3 if quick else 1),
                "ceiling": n(10_000),
            },
        ),
        Scenario(
            "1KB Postfix smtpd (CHUNKING, discard)",
            "postfix",
            1000,
            (1, 16),
            {
                "fastsmtp": n(20_000),
                "smtp-source": n(20_000),
                "aiosmtplib": n(2_000) * (3 if quick else 1),
                "ceiling": n(20_000),
            },
            ceiling="ceiling-bdat",
        ),
        Scenario(
            "1KB implicit TLS (stunnel4 -> smtp-sink)",
            "stunnel",
            1000,
            (4, 16),
            {
                "fastsmtp": n(50_000),
                "aiosmtplib": n(3_000) * (3 if quick else 1),
                "ceiling": n(50_000),
            },
            tls="implicit",
        ),
        Scenario(
            "1KB Postfix STARTTLS (CHUNKING, discard)",
            "postfix-tls",
            1000,
            (16,),
            {
                "fastsmtp": n(20_000),
                "aiosmtplib": n(2_000) * (3 if quick else 1),
                "ceiling": n(20_000),
            },
            ceiling="ceiling-bdat",
            tls="starttls",
        ),
    ]


@dataclasses.dataclass
class Run:
    scenario: str
    sender: str
    connections: int
    round: int
    messages: int
    accepted: int
    elapsed: float
    cpu: float
    message_size: int
    maxrss_kb: int
    server_cpu: float | None = None
    error: str | None = None

    @property
    def msg_per_s(self) -> float:
        return self.accepted / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.msg_per_s * self.message_size / 1e6

    @property
    def cpu_us_per_msg(self) -> float:
        return self.cpu / max(self.accepted, 1) * 1e6

    @property
    def server_cpu_us_per_msg(self) -> float | None:
        if self.server_cpu is None:
            return None
        return self.server_cpu / max(self.accepted, 1) * 1e6


def run_python_sender(
    kind: str, port: int, connections: int, messages: int, size: int, tls: tuple[str, str | None]
) -> dict:
    """One _senders.py run in a fresh interpreter; its last stdout line is JSON."""
    mode, cafile = tls
    cmd = [
        sys.executable,
        str(SENDER_SCRIPT),
        kind,
        "--port",
        str(port),
        "--connections",
        str(connections),
        "--messages",
        str(messages),
        "--size",
        str(size),
        "--tls",
        mode,
        *(["--cafile", cafile] if cafile else []),
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False, cwd=ROOT
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} exited {proc.returncode}: {proc.stderr.strip()[-1500:]}")
    result: dict = json.loads(lines[-1])
    if proc.stderr.strip():
        result["stderr"] = proc.stderr.strip()[-1500:]
    return result


def measure(
    scenario: Scenario,
    sender: str,
    connections: int,
    port: int,
    round_: int,
    cpu_of: Any,
    cafile: str | None = None,
) -> Run:
    messages = scenario.messages[sender]
    server_before = cpu_of()
    try:
        if sender == "smtp-source":
            child = run_smtp_source(port, connections, scenario.body, messages, RUN_TIMEOUT)
            if child.returncode != 0:
                raise RuntimeError(f"smtp-source exited {child.returncode}: {child.stderr}")
            data = {
                "accepted": messages,  # smtp-source exits non-zero on any refusal
                "elapsed": child.elapsed,
                "cpu": child.cpu,
                "maxrss_kb": child.maxrss_kb,
                "message_size": scenario.size,
            }
        else:
            kind = scenario.ceiling if sender == "ceiling" else sender
            tls = (scenario.tls, cafile if scenario.tls != "none" else None)
            data = run_python_sender(kind, port, connections, messages, scenario.size, tls)
    except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
        return Run(scenario.name, sender, connections, round_, messages, 0, 0, 0, 0, 0,
                   error=str(e)[-1500:])  # fmt: skip
    server_cpu = cpu_of() - server_before if server_before is not None else None
    error = None
    if data["accepted"] != messages:
        error = f"only {data['accepted']} of {messages} accepted"
    return Run(
        scenario=scenario.name,
        sender=sender,
        connections=connections,
        round=round_,
        messages=messages,
        accepted=data["accepted"],
        elapsed=data["elapsed"],
        cpu=data["cpu"],
        message_size=data["message_size"],
        maxrss_kb=data["maxrss_kb"],
        server_cpu=server_cpu,
        error=error or data.get("stderr"),
    )


# --------------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Cell:
    """The medians of one (scenario, sender, connections) over the rounds."""

    scenario: str
    sender: str
    connections: int
    rounds: int
    msg_per_s: float
    mb_per_s: float
    cpu_us_per_msg: float
    server_cpu_us_per_msg: float | None
    message_size: int
    maxrss_mb: float
    all_msg_per_s: list[float]


def summarize(runs: list[Run]) -> list[Cell]:
    groups: dict[tuple[str, str, int], list[Run]] = {}
    for run in runs:
        if run.error is None or run.accepted == run.messages:
            groups.setdefault((run.scenario, run.sender, run.connections), []).append(run)
    cells = []
    for (scenario, sender, connections), group in groups.items():
        server = [r.server_cpu_us_per_msg for r in group if r.server_cpu_us_per_msg is not None]
        cells.append(
            Cell(
                scenario=scenario,
                sender=sender,
                connections=connections,
                rounds=len(group),
                msg_per_s=statistics.median(r.msg_per_s for r in group),
                mb_per_s=statistics.median(r.mb_per_s for r in group),
                cpu_us_per_msg=statistics.median(r.cpu_us_per_msg for r in group),
                server_cpu_us_per_msg=statistics.median(server) if server else None,
                message_size=group[0].message_size,
                maxrss_mb=max(r.maxrss_kb for r in group) / 1024,
                all_msg_per_s=[round(r.msg_per_s) for r in group],
            )
        )
    return cells


def lookup(cells: list[Cell], scenario: str, sender: str, connections: int) -> Cell | None:
    for cell in cells:
        if (cell.scenario, cell.sender, cell.connections) == (scenario, sender, connections):
            return cell
    return None


def best(cells: list[Cell], scenario: str, sender: str) -> Cell | None:
    mine = [c for c in cells if c.scenario == scenario and c.sender == sender]
    return max(mine, key=lambda c: c.msg_per_s) if mine else None


def ratio(a: Cell | None, b: Cell | None) -> float | None:
    if a is None or b is None or b.msg_per_s == 0:
        return None
    return a.msg_per_s / b.msg_per_s


def table(cells: list[Cell], plan: list[Scenario]) -> str:
    """A Markdown table: one row per (scenario, connections, sender), ratios for fastsmtp."""
    out = [
        "| scenario | conns | sender | msg/s (median) | MB/s | CPU µs/msg | server CPU µs/msg"
        " | fastsmtp ÷ this | rounds (msg/s) |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for scenario in plan:
        for connections in scenario.connections:
            fast = lookup(cells, scenario.name, "fastsmtp", connections)
            for sender in SENDERS:
                cell = lookup(cells, scenario.name, sender, connections)
                if cell is None:
                    continue
                r = ratio(fast, cell) if sender != "fastsmtp" else None
                server = cell.server_cpu_us_per_msg
                name = f"{sender} ({scenario.ceiling})" if sender == "ceiling" else sender
                out.append(
                    f"| {scenario.name} | {connections} | {name} | {cell.msg_per_s:,.0f} "
                    f"| {cell.mb_per_s:,.1f} | {cell.cpu_us_per_msg:,.1f} "
                    f"| {'' if server is None else f'{server:,.1f}'} "
                    f"| {'' if r is None else f'{r:.2f}x'} "
                    f"| {', '.join(f'{v:,.0f}' for v in cell.all_msg_per_s)} |"
                )
    return "\n".join(out)


def targets(cells: list[Cell], plan: list[Scenario]) -> list[dict[str, Any]]:
    """The issues' targets: on the 1 KB smtp-sink scenario of this run, and on the TLS
    scenarios (against the plaintext one, the TLS ceiling and aiosmtplib over TLS)."""
    checks: list[dict[str, Any]] = []

    def check(what: str, value: float | None, goal: float, at_most: bool = False) -> None:
        met = value is not None and (value <= goal if at_most else value >= goal)
        checks.append(
            {"target": what, "value": value, "goal": goal, "met": met, "at_most": at_most}
        )

    plain_name = "1KB smtp-sink"
    for scenario in plan:
        if scenario.tls == "none":
            continue
        for connections in scenario.connections:
            fast = lookup(cells, scenario.name, "fastsmtp", connections)
            plain = lookup(cells, plain_name, "fastsmtp", connections)
            aio = lookup(cells, scenario.name, "aiosmtplib", connections)
            where = f"{scenario.name}, {connections} conns"
            if fast is not None and plain is not None and scenario.server == "stunnel":
                check(
                    f"fastsmtp CPU/msg over TLS / plaintext ({where})",
                    fast.cpu_us_per_msg / plain.cpu_us_per_msg,
                    1.3,
                    at_most=True,
                )
            check(
                f"fastsmtp / TLS ceiling ({where})",
                ratio(fast, lookup(cells, scenario.name, "ceiling", connections)),
                0.8,
            )
            if fast is not None and aio is not None:
                check(
                    f"aiosmtplib CPU/msg / fastsmtp CPU/msg over TLS ({where})",
                    aio.cpu_us_per_msg / fast.cpu_us_per_msg,
                    10.0,
                )
                check(f"fastsmtp / aiosmtplib msg/s over TLS ({where})", ratio(fast, aio), 10.0)
    if not plan or plan[0].name != plain_name:
        return checks
    name = plain_name

    check(
        "fastsmtp best / smtp-source best",
        ratio(best(cells, name, "fastsmtp"), best(cells, name, "smtp-source")),
        2.0,
    )
    check(
        "fastsmtp 1 conn / smtp-source -s 1",
        ratio(lookup(cells, name, "fastsmtp", 1), lookup(cells, name, "smtp-source", 1)),
        1.6,
    )
    for connections in plan[0].connections:
        fast = lookup(cells, name, "fastsmtp", connections)
        for peer in ("aiosmtplib-email", "aiosmtplib"):
            check(
                f"fastsmtp / {peer} at {connections} conns",
                ratio(fast, lookup(cells, name, peer, connections)),
                30.0,
            )
        check(
            f"fastsmtp / ceiling at {connections} conns",
            ratio(fast, lookup(cells, name, "ceiling", connections)),
            0.8,
        )
    return checks


def targets_text(checks: list[dict[str, Any]]) -> str:
    lines = ["| target | value | goal | met |", "| --- | ---: | ---: | --- |"]
    for c in checks:
        value = "n/a" if c["value"] is None else f"{c['value']:.2f}"
        goal = f"<= {c['goal']:g}" if c.get("at_most") else f">= {c['goal']:g}"
        lines.append(f"| {c['target']} | {value} | {goal} | {'yes' if c['met'] else 'NO'} |")
    return "\n".join(lines)


def plot(cells: list[Cell], plan: list[Scenario], path: Path) -> bool:
    """msg/s against connections, one line per sender, one panel per scenario."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, len(plan), figsize=(6 * len(plan), 4.5), squeeze=False)
    for ax, scenario in zip(axes[0], plan, strict=True):
        for sender in SENDERS:
            points = sorted(
                (c.connections, c.msg_per_s)
                for c in cells
                if c.scenario == scenario.name and c.sender == sender
            )
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", label=sender, color=COLORS[sender])
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(list(scenario.connections), [str(c) for c in scenario.connections])
        ax.set_xlabel("connections")
        ax.set_ylabel("messages per second (median)")
        ax.set_title(scenario.name)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    def version(module: str) -> str | None:
        with contextlib.suppress(Exception):
            return __import__(module).__version__
        return None

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    postfix = subprocess.run(
        ["postconf", "-h", "mail_version"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "commit": commit,
        "python": platform.python_version(),
        "uvloop": version("uvloop"),
        "aiosmtplib": version("aiosmtplib"),
        "postfix": postfix,
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
    }


@contextlib.contextmanager
def servers(plan: list[Scenario]) -> Iterator[dict[str, tuple[int, Any]]]:
    """Start each server the plan needs; yields {server: (port, cpu_seconds callable)} and,
    under "pki", the test CA file the TLS scenarios trust."""
    with contextlib.ExitStack() as stack:
        found: dict[str, tuple[int, Any]] = {}
        kinds = {s.server for s in plan}
        pki = None
        if kinds & {"stunnel", "postfix-tls"}:
            from tests.peers.certs import make_test_ca

            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-pki-"))
            pki = make_test_ca(directory)
            found["pki"] = (0, str(pki.ca_file))
        if kinds & {"sink", "stunnel"}:
            sink = stack.enter_context(BenchSink())
            found["sink"] = (sink.port, sink.cpu_seconds)
            if "stunnel" in kinds:
                from tests.peers.stunnel import Stunnel

                tunnel = stack.enter_context(Stunnel(("127.0.0.1", sink.port), pki))
                found["stunnel"] = (tunnel.port, sink.cpu_seconds)
        if "postfix" in kinds:
            port, _ = stack.enter_context(bench_postfix())
            found["postfix"] = (port, lambda: None)
        if "postfix-tls" in kinds:
            port, _ = stack.enter_context(bench_postfix(pki))
            found["postfix-tls"] = (port, lambda: None)
        yield found


def fastsmtp_available() -> str | None:
    """None when the engine imports and has its native core; else why not."""
    proc = subprocess.run(
        [sys.executable, "-c", "import fastsmtp._fastsmtp, fastsmtp; fastsmtp.Engine"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    return None if proc.returncode == 0 else proc.stderr.strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the messages")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (median; default 3)")
    parser.add_argument(
        "--scenarios", default="", help="comma-separated name prefixes to keep (e.g. '1KB smtp')"
    )
    parser.add_argument("--senders", default=",".join(SENDERS), help="comma-separated senders")
    parser.add_argument("--connections", default="", help="comma-separated, e.g. 1,16")
    parser.add_argument("--out", type=Path, help="JSON path (default benches/results/<date>)")
    args = parser.parse_args(argv)

    plan = scenarios(args.quick)
    if args.scenarios:
        keep = [p.strip() for p in args.scenarios.split(",")]
        plan = [s for s in plan if any(s.name.startswith(k) for k in keep)]
    if args.connections:
        wanted = tuple(int(c) for c in args.connections.split(","))
        plan = [
            dataclasses.replace(s, connections=tuple(c for c in s.connections if c in wanted))
            for s in plan
        ]
    senders = [s for s in args.senders.split(",") if s]
    if "fastsmtp" in senders and (why := fastsmtp_available()):
        print(f"fastsmtp is not runnable here, skipped: {why}", file=sys.stderr)
        senders.remove("fastsmtp")

    stamp = dt.datetime.now().strftime("%Y-%m-%dT%H%M%S")
    out = args.out or RESULTS_DIR / f"{stamp}.json"
    env = environment()
    runs: list[Run] = []
    started = time.monotonic()
    with servers(plan) as ports:
        cafile = ports["pki"][1] if "pki" in ports else None
        for round_ in range(1, args.rounds + 1):
            for scenario in plan:
                port, cpu_of = ports[scenario.server]
                for connections in scenario.connections:
                    for sender in senders:
                        if sender not in scenario.messages:
                            continue
                        run = measure(scenario, sender, connections, port, round_, cpu_of, cafile)
                        runs.append(run)
                        status = f"ERROR {run.error}" if run.error else ""
                        print(
                            f"round {round_} | {scenario.name} | {connections:>2} conns | "
                            f"{sender:<16} {run.msg_per_s:>9,.0f} msg/s "
                            f"{run.cpu_us_per_msg:>7.1f} µs/msg {status}",
                            flush=True,
                        )
    env["loadavg_end"] = os.getloadavg()
    env["wall_seconds"] = round(time.monotonic() - started, 1)

    cells = summarize(runs)
    checks = targets(cells, plan)
    print()
    print(table(cells, plan))
    if checks:
        print()
        print(targets_text(checks))
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "command": " ".join(["python", "benches/throughput.py", *(argv or sys.argv[1:])]),
        "date": stamp,
        "environment": env,
        "scenarios": [dataclasses.asdict(s) for s in plan],
        "summary": [dataclasses.asdict(c) for c in cells],
        "targets": checks,
        "runs": [dataclasses.asdict(r) for r in runs],
    }
    out.write_text(json.dumps(document, indent=1) + "\n")
    print(f"\nwrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    png = out.with_suffix(".png")
    if plot(cells, plan, png):
        print(f"wrote {png.relative_to(ROOT) if png.is_relative_to(ROOT) else png}")
    return 0 if all(r.error is None for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
