"""``fastsmtp demo``: the README's main job, on this machine alone.

First a personalized batch goes to the built-in capture server on 127.0.0.1 with a live
progress bar; the server writes every message as an ``.eml`` file to look at. That server
is pure Python (aiosmtpd) and takes a few hundred messages a second, which is its limit,
not the engine's. So when Postfix's ``smtp-sink`` (a C server that accepts and discards)
is installed, a larger batch of the same template then goes to it, and the demo prints both
rates side by side: the second is what the engine does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fastsmtp._engine import Engine, run
from fastsmtp._models import BatchReport, Message, Recipient, Result
from fastsmtp.cli._summary import summary_table
from fastsmtp.testing import CaptureServer, free_port

DEMO_NAMES = ["Ada", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Radia", "Édouard"]

SMTP_SINK_PATHS = ("smtp-sink", "/usr/sbin/smtp-sink")


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


def main(args: argparse.Namespace) -> int:
    console = Console()
    if args.count < 1 or args.sink_count < 0 or args.connections < 1:
        console.print(
            "fastsmtp demo: error: --count and --connections must be at least 1, "
            "--sink-count 0 or more"
        )
        return 2
    directory = args.dir or Path(tempfile.mkdtemp(prefix="fastsmtp-demo-"))
    return run(_demo(args.count, args.sink_count, args.connections, directory, console))


async def _demo(
    count: int, sink_count: int, connections: int, directory: Path, console: Console
) -> int:
    rates = Table(title="messages per second")
    rates.add_column("server")
    rates.add_column("messages", justify="right")
    rates.add_column("elapsed", justify="right")
    rates.add_column("rate", justify="right")

    report = await _to_capture_server(count, connections, directory, console)
    ok = report.accepted == count
    rates.add_row("capture server (Python, writes .eml)", *_rate_cells(report), end_section=True)

    sink = smtp_sink_path()
    if sink_count and sink is not None:
        console.print()
        sink_report = await _to_smtp_sink(sink, sink_count, connections, console)
        ok = ok and sink_report.accepted == sink_count
        rates.add_row("Postfix smtp-sink (C, discards)", *_rate_cells(sink_report))
        console.print()
        console.print(rates)
        console.print(
            "The capture server is the limit of the first run; the smtp-sink run shows "
            "what the engine sends."
        )
    elif sink_count:
        console.print(
            "Postfix's smtp-sink is not installed (Debian: apt-get install postfix), so only "
            "the capture server ran: its rate is the pure-Python server's limit, not the "
            "engine's."
        )
    return 0 if ok else 1


def _rate_cells(report: BatchReport) -> tuple[str, str, str]:
    return (
        f"{report.total:,}",
        f"{report.elapsed:.2f} s",
        f"{report.messages_per_second:,.0f} msg/s",
    )


async def _to_capture_server(
    count: int, connections: int, directory: Path, console: Console
) -> BatchReport:
    with CaptureServer(directory=directory) as server:
        console.print(f"capture server on 127.0.0.1:{server.port}, writing to {directory}")
        statuses: Counter[str] = Counter()
        with _progress(console) as progress:
            task = progress.add_task("send", total=count, counts="")

            def on_result(result: Result) -> None:
                statuses[result.status] += 1
                counts = " ".join(f"{k}={v}" for k, v in sorted(statuses.items()))
                progress.update(task, advance=1, counts=counts)

            async with Engine(
                "127.0.0.1", server.port, tls="none", connections=connections
            ) as engine:
                report = await engine.send_batch(
                    demo_template(),
                    demo_recipients(count),
                    data={"campaign": "readme"},
                    on_result=on_result,
                )
        # The server thread writes files as messages arrive; all were acknowledged already.
        captured = server.wait_for(report.accepted, timeout=10)
    console.print(summary_table(report, "capture server: batch summary"))
    console.print(f"{len(captured)} .eml files in {directory}")
    if captured and captured[0].path is not None:
        console.print(f"first one: {captured[0].path} (subject: {captured[0].subject!r})")
    return report


async def _to_smtp_sink(path: str, count: int, connections: int, console: Console) -> BatchReport:
    recipients = demo_recipients(count)
    with SmtpSink(path) as sink:
        console.print(f"Postfix smtp-sink on 127.0.0.1:{sink.port} ({count:,} recipients)")
        done = Counter[str]()

        def on_result(result: Result) -> None:
            done[result.status] += 1

        with _progress(console) as progress:
            task = progress.add_task("send", total=count, counts="")
            async with Engine("127.0.0.1", sink.port, tls="none", connections=connections) as e:
                batch = asyncio.ensure_future(
                    e.send_batch(
                        demo_template(),
                        recipients,
                        data={"campaign": "readme"},
                        on_result=on_result,
                    )
                )
                # Ten refreshes a second instead of one per result: at tens of thousands of
                # messages a second, drawing per result would cost more than sending.
                while not batch.done():
                    await asyncio.wait({batch}, timeout=0.1)
                    counts = " ".join(f"{k}={v}" for k, v in sorted(done.items()))
                    progress.update(task, completed=done.total(), counts=counts)
                report = batch.result()
    if report.accepted != count:
        console.print(summary_table(report, "smtp-sink: batch summary"))
    return report


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]sending"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        console=console,
    )


def smtp_sink_path() -> str | None:
    """Postfix's smtp-sink, if installed (it lives in /usr/sbin, often not on PATH)."""
    for candidate in SMTP_SINK_PATHS:
        found = shutil.which(candidate)
        if found is not None:
            return found
    return None


class SmtpSink:
    """``smtp-sink`` on 127.0.0.1 and a free port, as a child process for one demo run."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SmtpSink:
        cmd = [self.path, "-4"]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]  # smtp-sink refuses to run as root without a user
        cmd += [f"127.0.0.1:{self.port}", "1024"]
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError as e:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(f"smtp-sink did not start on 127.0.0.1:{self.port}") from e
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
