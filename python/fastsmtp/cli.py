"""The ``fastsmtp`` command line: ``send`` (a bulk job, see ``_send_cmd``), ``demo`` (the
README's main job) and ``sink``.

``fastsmtp demo`` starts the built-in capture server on 127.0.0.1, sends a personalized
batch to it through the engine with a live progress bar, and prints a summary table and
where the captured ``.eml`` files are.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fastsmtp import _send_cmd
from fastsmtp._engine import Engine, run
from fastsmtp._models import BatchReport, Message, Recipient, Result
from fastsmtp.testing import CaptureServer, serve_forever

DEMO_NAMES = ["Ada", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Radia", "Édouard"]


def demo_template() -> Message:
    return Message(
        sender="fastsmtp demo <demo@example.com>",
        subject="Hello {{ name }}, your order {{ order }} has shipped",
        text="Hi {{ name }},\n\nOrder {{ order }} is on its way to {{ address }}.\n\n-- fastsmtp\n",
        html=(
            "<p>Hi <b>{{ name }}</b>,</p><p>Order <code>{{ order }}</code> is on its way"
            " to {{ address }}.</p><p>&mdash; fastsmtp</p>"
        ),
        headers={"X-Campaign": "demo-{{ campaign }}"},
    )


def demo_recipients(count: int) -> list[Recipient]:
    return [
        Recipient(
            address=f"user{i}@example.org",
            name=f"{DEMO_NAMES[i % len(DEMO_NAMES)]} {i}",
            data={"order": f"A-{10000 + i}"},
        )
        for i in range(count)
    ]


async def _demo(count: int, directory: Path, console: Console) -> int:
    with CaptureServer(directory=directory) as server:
        console.print(f"capture server on 127.0.0.1:{server.port}, writing to {directory}")
        statuses: Counter[str] = Counter()
        with Progress(
            TextColumn("[bold]sending"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("send", total=count, counts="")

            def on_result(result: Result) -> None:
                statuses[result.status] += 1
                counts = " ".join(f"{k}={v}" for k, v in sorted(statuses.items()))
                progress.update(task, advance=1, counts=counts)

            async with Engine("127.0.0.1", server.port, tls="none", connections=4) as engine:
                report = await engine.send_batch(
                    demo_template(),
                    demo_recipients(count),
                    data={"campaign": "readme"},
                    on_result=on_result,
                )
        # The server thread writes files as messages arrive; all were acknowledged already.
        captured = server.wait_for(report.accepted, timeout=10)
    console.print(summary_table(report))
    console.print(f"{len(captured)} .eml files in {directory}")
    if captured and captured[0].path is not None:
        console.print(f"first one: {captured[0].path} (subject: {captured[0].subject!r})")
    return 0 if report.accepted == count else 1


def summary_table(report: BatchReport) -> Table:
    table = Table(title="fastsmtp batch summary")
    table.add_column("status")
    table.add_column("recipients", justify="right")
    for status in ("accepted", "rejected", "deferred", "failed"):
        table.add_row(status, str(getattr(report, status)))
    table.add_row("[bold]total", f"[bold]{report.total}")
    table.add_row("elapsed", f"{report.elapsed:.2f} s")
    table.add_row("rate", f"{report.messages_per_second:,.0f} msg/s")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastsmtp", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _send_cmd.add_parser(sub)
    demo = sub.add_parser("demo", help="send a personalized batch to a built-in capture server")
    demo.add_argument("--count", type=int, default=200, help="recipients (default 200)")
    demo.add_argument("--dir", type=Path, default=None, help="where to write .eml files")
    sink = sub.add_parser("sink", help="run the capture server on 127.0.0.1")
    sink.add_argument("--port", type=int, default=2525)
    sink.add_argument("--dir", default=None, help="write each message as an .eml file here")
    args = parser.parse_args(argv)
    console = Console()
    if args.command == "send":
        return _send_cmd.main(args, console)
    if args.command == "demo":
        directory = args.dir or Path(tempfile.mkdtemp(prefix="fastsmtp-demo-"))
        return run(_demo(args.count, directory, console))
    if args.command == "sink":
        serve_forever(args.port, args.dir)
        return 0
    parser.error(f"unknown command {args.command}")  # pragma: no cover
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
