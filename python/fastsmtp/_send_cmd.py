"""``fastsmtp send``: a personalized bulk job from the shell, with a results file and resume.

Recipients come from a CSV file (a header row; an ``email`` or ``address`` column, an
optional ``name`` column, every other column is template data) or a JSONL file (one object
per line, the same keys, any JSON values). Each record has an *index*: its 0-based position
among the file's records (CSV data rows, non-blank JSONL lines). The job writes one JSON
line per recipient to the results file (a ``fastsmtp.Result``, with that index) the moment
its outcome is known, with one unbuffered ``write`` each, so a crash or a kill loses nothing
already reported.

``--resume`` reads the results file first and skips every record that already has a line
(index and address must agree, so an edited recipients file is refused rather than
guessed at), then appends. A recipient whose message was on the wire when the process died
has no line yet and is sent again on resume: at most the handful of messages in flight at
that instant can arrive twice, which is why lines are written immediately.

Ctrl-C stops feeding new recipients, drops those queued but not yet handed to the server
(they get no line, so ``--resume`` sends them), waits up to ``--grace`` seconds for the
in-flight ones, prints the summary and exits 130; a second Ctrl-C stops waiting.

Connection problems: before reading any recipient the job opens one connection (greeting,
EHLO, STARTTLS, AUTH), so an unreachable server or wrong credentials end with one line on
stderr and exit 3, and nothing is written. If the server is lost mid-job, the engine gives
up on the queued messages without sending them; those get no line (``--resume`` sends
them) and the job stops with exit 3.

Bad records (no address, an invalid address, a template variable the record lacks, a
malformed JSONL line) become ``failed`` lines with the reason, and the job goes on.

Exit codes: 0 every recipient accepted; 1 some were rejected, deferred or failed; 2 bad
usage or input; 3 cannot connect or authenticate, or the server was lost; 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import email.utils
import getpass
import os
import signal
import ssl
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import msgspec
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from fastsmtp import _fastsmtp as core
from fastsmtp._config import TLS_MODES, TLSMode
from fastsmtp._engine import Engine, run
from fastsmtp._errors import FastSMTPError, InvalidMessage
from fastsmtp._models import Attachment, BatchReport, Message, Recipient, Result

EXIT_OK = 0
EXIT_NOT_ALL_ACCEPTED = 1
EXIT_USAGE = 2
EXIT_CONNECTION = 3
EXIT_INTERRUPTED = 130

PASSWORD_ENV = "FASTSMTP_PASSWORD"
DEFAULT_PORTS: dict[TLSMode, int] = {"implicit": 465, "starttls": 587}
ADDRESS_KEYS = ("email", "address")

INTERRUPTED = "not sent: the job was interrupted before this message reached the server"
"""The reason given to queued recipients dropped by Ctrl-C; they get no results line."""

Format = Literal["csv", "jsonl"]


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class UsageError(Exception):
    """A problem with the command line or the input files: one line, exit 2."""


# -- command line ------------------------------------------------------------------------


def add_parser(sub: Any) -> None:
    """Add the ``send`` subcommand to ``fastsmtp``'s subparsers."""
    p: argparse.ArgumentParser = sub.add_parser(
        "send",
        help="send a personalized message to every recipient of a CSV/JSONL file",
        description=(
            "Send one personalized message per recipient. Subject, text and html are "
            "templates: {{ column }} is replaced by the recipient's value. The password "
            f"comes from ${PASSWORD_ENV} or a prompt, never from the command line."
        ),
        epilog=(
            "exit status: 0 all accepted, 1 some rejected/deferred/failed, 2 bad usage or "
            "input, 3 cannot connect or authenticate (or the server was lost), 130 "
            "interrupted by Ctrl-C or SIGTERM (re-run with --resume)"
        ),
    )
    p.add_argument("--host", required=True, metavar="H", help="SMTP server")
    p.add_argument(
        "--port",
        type=int,
        default=None,
        metavar="P",
        help="default 465 (implicit), 587 (starttls), else 25",
    )
    p.add_argument(
        "--tls",
        choices=TLS_MODES,
        default="starttls",
        metavar="MODE",
        help=f"{', '.join(TLS_MODES)} (default starttls)",
    )
    p.add_argument(
        "--cafile", type=Path, metavar="FILE", help="PEM file of CAs to trust for the server cert"
    )
    p.add_argument(
        "--user", metavar="U", help=f"AUTH user name (password: ${PASSWORD_ENV} or a prompt)"
    )
    p.add_argument(
        "--insecure-plaintext-auth",
        action="store_true",
        help="allow sending the password over a connection without TLS",
    )
    p.add_argument(
        "--from", dest="sender", required=True, metavar="ADDR", help="From, e.g. 'Ann <a@x.org>'"
    )
    p.add_argument("--subject", required=True, metavar="TPL", help="subject template")
    p.add_argument("--text", type=Path, metavar="FILE", help="plain-text body template file")
    p.add_argument("--html", type=Path, metavar="FILE", help="HTML body template file")
    p.add_argument(
        "--attach", type=Path, action="append", default=[], metavar="FILE", help="attach a file"
    )
    p.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra header (value is a template); repeatable",
    )
    p.add_argument(
        "--reply-to", action="append", default=[], metavar="ADDR", help="Reply-To address"
    )
    p.add_argument(
        "--recipients",
        type=Path,
        required=True,
        metavar="FILE",
        help="recipients, FILE.csv or FILE.jsonl",
    )
    p.add_argument("--format", choices=("csv", "jsonl"), help="default: from the file name")
    p.add_argument(
        "--results", type=Path, required=True, metavar="OUT.jsonl", help="results file (JSONL)"
    )
    p.add_argument("--resume", action="store_true", help="skip recipients already in --results")
    p.add_argument(
        "--connections", type=int, default=8, metavar="N", help="parallel connections (8)"
    )
    p.add_argument(
        "--rate", type=float, default=None, metavar="N", help="at most N messages a second"
    )
    p.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="network timeout, s (30)"
    )
    p.add_argument("--dkim-key", type=Path, metavar="FILE", help="sign with DKIM: PEM private key")
    p.add_argument("--dkim-selector", metavar="S", help="DKIM selector (with --dkim-key)")
    p.add_argument("--dkim-domain", metavar="D", help="DKIM d= domain (default: the --from domain)")
    p.add_argument(
        "--grace",
        type=float,
        default=30.0,
        metavar="S",
        help="after Ctrl-C, wait this long for in-flight",
    )


@dataclasses.dataclass(frozen=True, slots=True)
class JobSpec:
    """Everything the job needs, checked and loaded (files read, password obtained)."""

    template: Message
    recipients: Path
    format: Format
    results: Path
    resume: bool
    engine_options: dict[str, Any]
    grace: float


def main(args: argparse.Namespace, console: Console) -> int:
    """Run ``fastsmtp send``; returns the exit code. Problems are one line on stderr."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        spec = _load(args)
    except UsageError as e:
        err.print(f"fastsmtp send: error: {e}", markup=False)
        return EXIT_USAGE
    try:
        return run(SendJob(spec, console, err).run())
    except KeyboardInterrupt:  # before the job installed its own handler
        err.print("fastsmtp send: interrupted", markup=False)
        return EXIT_INTERRUPTED


def _load(args: argparse.Namespace) -> JobSpec:
    if args.text is None and args.html is None:
        raise UsageError("give --text FILE and/or --html FILE")
    if args.connections < 1:
        raise UsageError("--connections must be at least 1")
    if args.rate is not None and args.rate <= 0:
        raise UsageError("--rate must be positive")
    fmt: Format
    if args.format:
        fmt = args.format
    elif args.recipients.suffix.lower() == ".csv":
        fmt = "csv"
    elif args.recipients.suffix.lower() in (".jsonl", ".ndjson"):
        fmt = "jsonl"
    else:
        raise UsageError(f"cannot tell the format of {args.recipients}: use --format")
    if not args.recipients.is_file():
        raise UsageError(f"no such recipients file: {args.recipients}")
    if args.results.exists() and not args.resume:
        raise UsageError(
            f"{args.results} exists: add --resume to continue that job, or choose a new file"
        )
    headers: dict[str, str] = {}
    for item in args.header:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"--header needs 'Name: value', not {item!r}")
        headers[name.strip()] = value.strip()
    try:
        template = Message(
            sender=args.sender,
            subject=args.subject,
            text=_read_text(args.text),
            html=_read_text(args.html),
            attachments=[Attachment.from_path(p) for p in args.attach],
            headers=headers,
            reply_to=list(args.reply_to),
        )
        core.Template(template.to_spec(), None)  # template syntax and sender, checked now
    except OSError as e:
        raise UsageError(f"cannot read {e.filename}: {e.strerror}") from None
    except InvalidMessage as e:
        raise UsageError(f"invalid message: {e}") from None
    tls: TLSMode = args.tls
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port or DEFAULT_PORTS.get(tls, 25),
        "tls": tls,
        "connections": args.connections,
        "rate_limit": args.rate,
        "timeout": args.timeout,
        "allow_plaintext_auth": args.insecure_plaintext_auth,
    }
    if args.cafile is not None:
        try:
            options["ssl_context"] = ssl.create_default_context(cafile=str(args.cafile))
        except (OSError, ssl.SSLError) as e:
            raise UsageError(f"cannot load --cafile {args.cafile}: {e}") from None
    if args.dkim_key is not None:
        options["dkim"] = _dkim_signer(args)
    if args.user:
        options["username"] = args.user
        options["password"] = _password(args.user, args.host)
    return JobSpec(
        template=template,
        recipients=args.recipients,
        format=fmt,
        results=args.results,
        resume=args.resume,
        engine_options=options,
        grace=args.grace,
    )


def _dkim_signer(args: argparse.Namespace) -> core.DKIMSigner:
    if not args.dkim_selector:
        raise UsageError("--dkim-key needs --dkim-selector")
    domain = args.dkim_domain or email.utils.parseaddr(args.sender)[1].rpartition("@")[2]
    try:
        key = args.dkim_key.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read --dkim-key {args.dkim_key}: {e.strerror}") from None
    try:
        return core.DKIMSigner(domain, args.dkim_selector, key)
    except InvalidMessage as e:
        raise UsageError(f"--dkim-key: {e}") from None


def _read_text(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text") from None


def _password(user: str, host: str) -> str:
    password = os.environ.get(PASSWORD_ENV)
    if password is not None:
        return password
    # Never a flag: command lines are visible to every user of the machine (ps, /proc).
    if not sys.stdin.isatty():
        raise UsageError(f"--user needs a password: set ${PASSWORD_ENV} (stdin is not a terminal)")
    try:
        return getpass.getpass(f"password for {user} at {host}: ")
    except (EOFError, KeyboardInterrupt):
        raise UsageError("no password given") from None


# -- reading recipients --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """One record of the recipients file."""

    index: int
    address: str
    name: str | None
    data: dict[str, Any]
    error: str | None = None
    """Why this record cannot be sent at all (it becomes a ``failed`` line)."""


def read_rows(path: Path, fmt: Format) -> Iterator[Row]:
    """The file's records in order, each with its index. Raises UsageError for problems
    with the file as a whole (unreadable, no address column)."""
    try:
        if fmt == "csv":
            yield from _csv_rows(path)
        else:
            yield from _jsonl_rows(path)
    except UnicodeDecodeError as e:
        raise UsageError(f"{path} is not UTF-8: {e}") from None
    except (OSError, csv.Error) as e:
        raise UsageError(f"cannot read {path}: {e}") from None


def _csv_rows(path: Path) -> Iterator[Row]:
    # utf-8-sig: spreadsheet exports often start with a byte-order mark.
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = [name.strip() for name in reader.fieldnames or []]
        reader.fieldnames = fields
        key = next((k for k in fields if k.lower() in ADDRESS_KEYS), None)
        if key is None:
            raise UsageError(f"{path} has no 'email' or 'address' column (header: {fields})")
        name_key = next((k for k in fields if k.lower() == "name"), None)
        for index, raw in enumerate(reader):
            # A short row has None for the missing cells: leave them out, so a template
            # that needs one reports the variable as missing for this recipient.
            data = {k: v for k, v in raw.items() if k is not None and v is not None}
            address = (data.pop(key, None) or "").strip()
            name = data.pop(name_key, None) if name_key else None
            if not address:
                error = f"line {reader.line_num}: no address in column {key!r}"
                yield Row(index, "", None, data, error)
            else:
                yield Row(index, address, name or None, data)


def _jsonl_rows(path: Path) -> Iterator[Row]:
    decoder = msgspec.json.Decoder()
    with open(path, "rb") as f:
        index = 0
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = decoder.decode(line)
            except msgspec.DecodeError as e:
                yield Row(index, "", None, {}, f"line {lineno}: invalid JSON: {e}")
                index += 1
                continue
            if not isinstance(obj, dict):
                yield Row(index, "", None, {}, f"line {lineno}: not a JSON object")
                index += 1
                continue
            key = next((k for k in obj if k.lower() in ADDRESS_KEYS), None)
            address = obj.pop(key, None) if key else None
            name = obj.pop("name", None)
            if not isinstance(address, str) or not address.strip():
                error = f"line {lineno}: no address (an 'email' or 'address' string)"
                yield Row(index, "", None, obj, error)
            else:
                yield Row(index, address.strip(), name if isinstance(name, str) else None, obj)
            index += 1


def count_records(path: Path, fmt: Format) -> int:
    """How many records the file has (a quick pass, for the progress bar's total)."""
    try:
        if fmt == "csv":
            with open(path, newline="", encoding="utf-8-sig") as f:
                return max(0, sum(1 for _ in csv.reader(f)) - 1)
        with open(path, "rb") as f:
            return sum(1 for line in f if line.strip())
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UsageError(f"cannot read {path}: {e}") from None


# -- the results file ----------------------------------------------------------------------


def load_results(path: Path) -> dict[int, str]:
    """Index -> recipient of every line already in the results file.

    A line cut short by a crash (or any undecodable line) is dropped and the file rewritten
    without it, so that appending starts on a fresh line.
    """
    done: dict[int, str] = {}
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return done
    decoder = msgspec.json.Decoder(Result)
    good: list[bytes] = []
    dropped = 0
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            result = decoder.decode(line)
        except msgspec.DecodeError:
            dropped += 1
            continue
        if result.index in done:
            dropped += 1  # a duplicate: keep the first, which is what resume skipped on
            continue
        done[result.index] = result.recipient
        good.append(line)
    if dropped or (raw and not raw.endswith(b"\n")):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(b"".join(line + b"\n" for line in good))
        os.replace(tmp, path)
    return done


class ResultsWriter:
    """Appends one JSON line per Result, each with a single unbuffered write: once a line is
    written, the process can die without losing it (the kernel has it)."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - closed by close()
        self._encoder = msgspec.json.Encoder()
        self._buffer = bytearray()

    def write(self, result: Result) -> None:
        self._encoder.encode_into(result, self._buffer)
        self._buffer.extend(b"\n")
        self._file.write(self._buffer)

    def close(self) -> None:
        self._file.close()


# -- the job -------------------------------------------------------------------------------


class RateColumn(ProgressColumn):
    """Messages per second, from rich's moving average."""

    def render(self, task: Task) -> Text:
        speed = task.speed
        return Text(f"{speed:,.0f} msg/s" if speed else "- msg/s", style="progress.data.speed")


class SendJob:
    """One run of ``fastsmtp send``: feeds the engine, writes results, handles Ctrl-C."""

    def __init__(self, spec: JobSpec, console: Console, err: Console) -> None:
        self.spec = spec
        self.console = console
        self.err = err
        self.report = BatchReport()
        self.statuses: Counter[str] = Counter()
        self.skipped = 0
        self.not_sent = 0
        self.pending: dict[int, int] = {}
        """Engine index -> record index of the recipients handed to the engine."""
        self.fed = 0
        self.stopping = False
        self.interrupted = False
        self.lost: str | None = None
        self.writer: ResultsWriter | None = None
        self.engine: Engine | None = None
        self.done: dict[int, str] = {}
        self._interrupts = 0
        self._give_up = asyncio.Event()

    # Public entry point --------------------------------------------------------------------

    async def run(self) -> int:
        spec = self.spec
        engine = Engine(**spec.engine_options)
        self.engine = engine
        try:
            await _check_connection(engine)
        except (FastSMTPError, ssl.SSLError, OSError) as e:
            host, port = engine.config.host, engine.config.port
            self.err.print(f"fastsmtp send: error: {host}:{port}: {e}", markup=False)
            return EXIT_CONNECTION
        try:
            if spec.resume:
                self.done = load_results(spec.results)
            # Resuming: check every record against the results before sending anything.
            total = (
                self._check_resume() if self.done else count_records(spec.recipients, spec.format)
            )
            self.writer = ResultsWriter(spec.results)
        except (UsageError, OSError) as e:
            self.err.print(f"fastsmtp send: error: {e}", markup=False)
            return EXIT_USAGE
        try:
            return await self._run(engine, total)
        finally:
            self.writer.close()

    async def _run(self, engine: Engine, total: int) -> int:
        loop = asyncio.get_running_loop()
        # SIGTERM (a container or service manager stopping the job) stops it as Ctrl-C does.
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self._on_sigint)
        progress = Progress(
            TextColumn("[bold]sending"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[counts]}"),
            console=self.err,
            transient=False,
            # No bar in a log file or a pipe: the summary says it all there.
            disable=not self.err.is_terminal,
        )
        todo = max(0, total - len(self.done))
        task = progress.add_task("send", total=todo, counts="")
        started = time.perf_counter()
        code: int | None = None
        batch = asyncio.ensure_future(
            engine.send_batch(self.spec.template, self._recipients(), on_result=self._on_result)
        )
        try:
            with progress:
                refresher = asyncio.ensure_future(self._refresh(progress, task))
                give_up = asyncio.ensure_future(self._give_up.wait())
                try:
                    await asyncio.wait({batch, give_up}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    refresher.cancel()
                    give_up.cancel()
                self._update(progress, task)
            if batch.done():
                exc = batch.exception()
                if isinstance(exc, UsageError | InvalidMessage):
                    self.err.print(f"fastsmtp send: error: {exc}", markup=False)
                    code = EXIT_USAGE
                elif exc is not None:
                    raise exc
                await engine.close()
            else:
                # Gave up waiting for in-flight messages: they get no line (resume resends).
                self.not_sent += len(self.pending)
        finally:
            for signum in STOP_SIGNALS:
                loop.remove_signal_handler(signum)
        self.report.elapsed = time.perf_counter() - started
        self._summary()
        if not batch.done():
            # Closing politely would wait for the very replies we gave up on; every line
            # already went out with its own write(), so leaving now loses nothing.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)
        if code is not None:
            return code
        if self.lost is not None:
            return EXIT_CONNECTION
        if self.interrupted:
            return EXIT_INTERRUPTED
        accepted_all = self.report.accepted == self.report.total and not self.not_sent
        return EXIT_OK if accepted_all else EXIT_NOT_ALL_ACCEPTED

    # Feeding -------------------------------------------------------------------------------

    def _recipients(self) -> Iterator[Recipient]:
        """The records still to send, as Recipients; writes bad records' lines directly."""
        for row in read_rows(self.spec.recipients, self.spec.format):
            if self.stopping:
                return
            if row.index in self.done:
                self.skipped += 1
                continue
            if row.error is not None:
                self._record(
                    Result(recipient=row.address, status="failed", text=row.error, index=row.index)
                )
                continue
            self.pending[self.fed] = row.index
            self.fed += 1
            yield Recipient(address=row.address, name=row.name, data=row.data)

    def _check_resume(self) -> int:
        """Count the records, and refuse to resume when the recipients file no longer
        matches the results file (a record's address changed): skipping by index alone
        could then skip someone who never got a message."""
        total = 0
        for row in read_rows(self.spec.recipients, self.spec.format):
            total += 1
            seen = self.done.get(row.index)
            if seen is not None and seen.lower() != row.address.lower():
                raise UsageError(
                    f"{self.spec.results} does not match {self.spec.recipients}: record "
                    f"{row.index} is {row.address!r} there, {seen!r} in the results"
                )
        return total

    # Outcomes ------------------------------------------------------------------------------

    def _on_result(self, result: Result) -> None:
        index = self.pending.pop(result.index)
        if result.text == INTERRUPTED:
            self.not_sent += 1
            return
        if result.status == "failed" and result.attempts == 0 and result.message_id is not None:
            # Built, yet never handed to a server: the engine could not connect (any more).
            # No line, so that --resume sends it; and stop, the rest would fare the same.
            self.not_sent += 1
            if self.lost is None:
                self.lost = result.text
                self._stop()
            return
        self._record(msgspec.structs.replace(result, index=index))

    def _record(self, result: Result) -> None:
        if self.writer is None or self._give_up.is_set():
            return
        self.writer.write(result)
        self.report.count(result)
        self.statuses[result.status] += 1

    # Progress ------------------------------------------------------------------------------

    async def _refresh(self, progress: Progress, task: Any) -> None:
        # Refreshing ten times a second, not per result: at tens of thousands of results a
        # second, per-result updates would cost more than the sending.
        while True:
            self._update(progress, task)
            await asyncio.sleep(0.1)

    def _update(self, progress: Progress, task: Any) -> None:
        counts = " ".join(f"{k}={v}" for k, v in sorted(self.statuses.items()))
        if self.not_sent:
            counts += f" not-sent={self.not_sent}"
        progress.update(task, completed=self.report.total, counts=counts)

    # Stopping ------------------------------------------------------------------------------

    def _on_sigint(self) -> None:
        self._interrupts += 1
        if self._interrupts == 1:
            self.interrupted = True
            self.err.print(
                f"interrupted: finishing messages in flight (up to {self.spec.grace:g} s; "
                "Ctrl-C again to stop now)",
                markup=False,
            )
            self._stop()
            loop = asyncio.get_running_loop()
            loop.call_later(self.spec.grace, self._give_up.set)
        else:
            self._give_up.set()

    def _stop(self) -> None:
        """Stop feeding, and drop what is queued but not yet on the wire."""
        self.stopping = True
        if self.engine is not None:
            self.engine.cancel_pending(INTERRUPTED)

    def _summary(self) -> None:
        from fastsmtp.cli import summary_table

        self.console.print(summary_table(self.report))
        if self.skipped:
            self.console.print(f"skipped {self.skipped} recipients already in {self.spec.results}")
        if self.lost is not None:
            self.err.print(f"fastsmtp send: error: lost the server: {self.lost}", markup=False)
        if self.not_sent:
            self.err.print(
                f"{self.not_sent} recipients were not sent: run again with --resume to send them",
                markup=False,
            )
        self.console.print(f"results: {self.spec.results}")


async def _check_connection(engine: Engine) -> None:
    """Open the first connection up front (greeting, EHLO, STARTTLS, AUTH), so that a wrong
    host, port, certificate or password is one clear error before the job starts."""
    await engine.connect()
