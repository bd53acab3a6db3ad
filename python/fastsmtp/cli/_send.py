"""``fastsmtp send``: a personalized bulk job from the shell, with a results file and resume.

The recipients and results files are described in ``_records``. ``--resume`` reads the
results file first and skips every record that already has a line (index and address must
agree, so an edited recipients file is refused rather than guessed at), then appends. A
recipient whose message was on the wire when the process died has no line yet and is sent
again on resume: at most the handful of messages in flight at that instant can arrive
twice, which is why lines are written immediately. ``--limit N`` handles at most N records
in this run (each gets a line); ``--resume`` continues from there.

Ctrl-C stops feeding new recipients, drops those queued but not yet handed to the server
(they get no line, so ``--resume`` sends them), waits up to ``--grace`` seconds for the
in-flight ones, prints the summary and exits 130; a second Ctrl-C stops waiting.

Before anything is sent: the options, the files and the templates are checked (a template
variable that is not a CSV column is a usage error); a password that would travel without
TLS (``--tls none``) is refused before it is asked for; when the password must be typed at
the prompt, the server is contacted first (reachable, certificate trusted, STARTTLS offered
when the password needs it), so nobody types a password for a job that cannot run. Then the
job opens one connection (greeting, EHLO, STARTTLS, AUTH), so an unreachable server or wrong
credentials end with one line on stderr and exit 3, and nothing is written. If the server
is lost mid-job, the engine gives up on the queued messages without sending them; those get
no line (``--resume`` sends them) and the job stops with exit 3.

Bad records (no address, an invalid address, a template variable the record lacks, a
malformed JSONL line) become ``failed`` lines with the reason, and the job goes on.

``--dry-run`` renders every record's message exactly as the job would (addresses, template
variables, header values), prints the summary and the reasons for the invalid ones, and
sends and writes nothing.

Exit codes: 0 every recipient accepted (with ``--dry-run``: every message valid); 1 some
were rejected, deferred or failed (invalid); 2 bad usage or input; 3 cannot connect or
authenticate, or the server was lost; 130 interrupted.
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
from itertools import islice
from pathlib import Path
from typing import Any

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
from fastsmtp._config import TLSMode
from fastsmtp._engine import Engine, run
from fastsmtp._errors import FastSMTPError, InvalidMessage, TLSRequiredError
from fastsmtp._models import Attachment, BatchReport, Message, Recipient, Result
from fastsmtp.cli._advice import cli_syntax, describe
from fastsmtp.cli._parser import PASSWORD_ENV
from fastsmtp.cli._records import (
    Format,
    ResultsWriter,
    Row,
    UsageError,
    count_records,
    load_results,
    read_rows,
)
from fastsmtp.cli._summary import Reasons, summary_table

EXIT_OK = 0
EXIT_NOT_ALL_ACCEPTED = 1
EXIT_USAGE = 2
EXIT_CONNECTION = 3
EXIT_INTERRUPTED = 130

DEFAULT_PORTS: dict[TLSMode, int] = {"implicit": 465, "starttls": 587}

INTERRUPTED = "not sent: the job was interrupted before this message reached the server"
"""The reason given to queued recipients dropped by Ctrl-C; they get no results line."""

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

DRY_RUN_CHUNK = 1000
"""Records rendered per call in --dry-run (the engine's batches render in chunks too)."""

DRY_RUN_EXAMPLES = 5
"""Invalid records --dry-run lists one by one (after the table of reasons)."""


class ConnectionProblem(Exception):
    """The server cannot be used for this job (unreachable, untrusted, no STARTTLS for a
    password): one line, exit 3."""


@dataclasses.dataclass(frozen=True, slots=True)
class JobSpec:
    """Everything the job needs, checked and loaded (files read; the password is added
    after the checks that must come before asking for it)."""

    template: Message
    recipients: Path
    format: Format
    results: Path
    resume: bool
    engine_options: dict[str, Any]
    grace: float
    limit: int | None
    dry_run: bool


def main(args: argparse.Namespace) -> int:
    """Run ``fastsmtp send``; returns the exit code. Problems are one line on stderr."""
    console = Console()
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        spec = _load(args)
        if spec.dry_run:
            return DryRun(spec, console, err).run()
        if args.user:
            spec.engine_options["password"] = _obtain_password(args.user, spec)
        return run(SendJob(spec, console, err).run())
    except UsageError as e:
        err.print(f"fastsmtp send: error: {e}", markup=False)
        return EXIT_USAGE
    except ConnectionProblem as e:
        err.print(f"fastsmtp send: error: {e}", markup=False)
        return EXIT_CONNECTION
    except KeyboardInterrupt:  # before the job installed its own handler
        err.print("fastsmtp send: interrupted", markup=False)
        return EXIT_INTERRUPTED


# -- checking the command line ---------------------------------------------------------------


def _load(args: argparse.Namespace) -> JobSpec:
    if args.text is None and args.html is None:
        raise UsageError("give --text FILE and/or --html FILE")
    for option, value in (
        ("--connections", args.connections),
        ("--max-attempts", args.max_attempts),
    ):
        if value < 1:
            raise UsageError(f"{option} must be at least 1")
    if args.limit is not None and args.limit < 0:
        raise UsageError("--limit must be 0 or more")
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
    tls: TLSMode = args.tls
    if args.user and tls == "none" and not args.insecure_plaintext_auth:
        raise UsageError(
            "--user with --tls none would send the password without TLS: use --tls "
            "starttls or --tls implicit, or add --insecure-plaintext-auth if you really "
            "mean it"
        )
    template = _template(args)
    if fmt == "csv":
        _check_columns(template, args.recipients)
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port or DEFAULT_PORTS.get(tls, 25),
        "tls": tls,
        "connections": args.connections,
        "rate_limit": args.rate,
        "timeout": args.timeout,
        "max_attempts": args.max_attempts,
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
    return JobSpec(
        template=template,
        recipients=args.recipients,
        format=fmt,
        results=args.results,
        resume=args.resume,
        engine_options=options,
        grace=args.grace,
        limit=args.limit,
        dry_run=args.dry_run,
    )


def _template(args: argparse.Namespace) -> Message:
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
    return template


def _check_columns(template: Message, path: Path) -> None:
    """A template variable that is no column of the CSV file is missing for every
    recipient: say so now, before connecting or asking for a password."""
    needed = core.Template(template.to_spec(), None).recipient_variables
    if not needed:
        return
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UsageError(f"cannot read {path}: {e}") from None
    missing = sorted(needed - {name.strip() for name in header})
    if missing:
        names = ", ".join(missing)
        raise UsageError(
            f"the templates use {names}, but {path} has no such column "
            f"(columns: {', '.join(header) or 'none'})"
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


# -- the password ------------------------------------------------------------------------------


def _obtain_password(user: str, spec: JobSpec) -> str:
    password = os.environ.get(PASSWORD_ENV)
    if password is not None:
        return password
    # Never a flag: command lines are visible to every user of the machine (ps, /proc).
    if not sys.stdin.isatty():
        raise UsageError(f"--user needs a password: set ${PASSWORD_ENV} (stdin is not a terminal)")
    run(_probe(spec.engine_options))
    host = spec.engine_options["host"]
    try:
        return getpass.getpass(f"password for {user} at {host}: ")
    except (EOFError, KeyboardInterrupt):
        raise UsageError("no password given") from None


async def _probe(options: dict[str, Any]) -> None:
    """Connect once without credentials before the password is typed: the server must be
    reachable with this TLS setup, and with ``--tls opportunistic`` it must offer STARTTLS,
    unless ``--insecure-plaintext-auth`` allows the password without it."""
    probe = {k: v for k, v in options.items() if k not in ("username", "allow_plaintext_auth")}
    plaintext_ok = options["allow_plaintext_auth"]
    if options["tls"] == "opportunistic" and not plaintext_ok:
        probe["tls"] = "starttls"
    where = f"{options['host']}:{options['port']}"
    try:
        async with Engine(**probe) as engine:
            await engine.connect()
    except TLSRequiredError:
        raise ConnectionProblem(
            f"{where} does not offer STARTTLS, so the password would travel without TLS "
            "(add --insecure-plaintext-auth if you really mean it)"
        ) from None
    except (FastSMTPError, ssl.SSLError, OSError) as e:
        raise ConnectionProblem(f"{where}: {describe(e)}") from None


# -- the dry run -----------------------------------------------------------------------------


class DryRun:
    """``--dry-run``: every record rendered as the job would render it; nothing sent."""

    def __init__(self, spec: JobSpec, console: Console, err: Console) -> None:
        self.spec = spec
        self.console = console
        self.err = err
        self.report = BatchReport()
        self.reasons = Reasons()
        self.skipped = 0
        self.examples: list[str] = []
        """The first few invalid records, to find them in the file."""

    def run(self) -> int:
        spec = self.spec
        done = load_results(spec.results, rewrite=False) if spec.resume else {}
        template = core.Template(spec.template.to_spec(), None)
        started = time.perf_counter()
        rows: Iterator[Row] = (
            row for row in read_rows(spec.recipients, spec.format) if not self._done(row, done)
        )
        if spec.limit is not None:
            rows = islice(rows, spec.limit)
        while chunk := list(islice(rows, DRY_RUN_CHUNK)):
            good = [row for row in chunk if row.error is None]
            rendered = template.render([(row.address, row.name, row.data) for row in good])
            for row in chunk:
                if row.error is not None:
                    self._invalid(row, row.error)
            for row, outcome in zip(good, rendered, strict=True):
                if isinstance(outcome, Exception):
                    self._invalid(row, str(outcome))
                else:
                    self.report.count_accepted(1)
        self.report.elapsed = time.perf_counter() - started
        invalid = self.report.failed
        valid = self.report.accepted
        self.console.print(
            f"dry run: {self.report.total} recipients checked, {valid} messages valid, "
            f"{invalid} invalid; nothing was sent and no results were written"
        )
        if self.skipped:
            self.console.print(f"skipped {self.skipped} recipients already in {spec.results}")
        if self.reasons:
            self.console.print(self.reasons.table(title="why messages are invalid"))
            self.console.print("first invalid records (index from 0, as in the results file):")
            for example in self.examples:
                self.console.print(f"  {example}", markup=False, highlight=False)
        return EXIT_OK if not invalid else EXIT_NOT_ALL_ACCEPTED

    def _done(self, row: Row, done: dict[int, str]) -> bool:
        if row.index in done:
            self.skipped += 1
            return True
        return False

    def _invalid(self, row: Row, reason: str) -> None:
        result = Result(recipient=row.address, status="failed", text=reason)
        self.report.count(result)
        self.reasons.add(result)
        if len(self.examples) < DRY_RUN_EXAMPLES:
            self.examples.append(f"record {row.index} ({row.address or 'no address'}): {reason}")


# -- the job ---------------------------------------------------------------------------------


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
        self.reasons = Reasons()
        self.statuses: Counter[str] = Counter()
        self.skipped = 0
        self.not_sent = 0
        self.handled = 0
        """Records of this run that were handed to the engine or got a line directly."""
        self.left_by_limit = False
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
            await engine.connect()
        except (FastSMTPError, ssl.SSLError, OSError) as e:
            host, port = engine.config.host, engine.config.port
            self.err.print(f"fastsmtp send: error: {host}:{port}: {describe(e)}", markup=False)
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
        if self.spec.limit is not None:
            todo = min(todo, self.spec.limit)
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
                    self.err.print(f"fastsmtp send: error: {describe(exc)}", markup=False)
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
        if code is None or self.report.total:
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
        limit = self.spec.limit
        for row in read_rows(self.spec.recipients, self.spec.format):
            if self.stopping:
                return
            if row.index in self.done:
                self.skipped += 1
                continue
            if limit is not None and self.handled >= limit:
                self.left_by_limit = True
                return
            self.handled += 1
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
        self.reasons.add(result)
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
        self.console.print(summary_table(self.report))
        if self.reasons:
            self.console.print(self.reasons.table())
        if self.skipped:
            self.console.print(f"skipped {self.skipped} recipients already in {self.spec.results}")
        if self.lost is not None:
            self.err.print(
                f"fastsmtp send: error: lost the server: {cli_syntax(self.lost)}",
                markup=False,
            )
        if self.not_sent:
            self.err.print(
                f"{self.not_sent} recipients were not sent: run again with --resume to send them",
                markup=False,
            )
        if self.left_by_limit:
            self.console.print(
                f"stopped after --limit {self.spec.limit} recipients: run again with --resume "
                "to continue"
            )
        if self.spec.results.exists():
            self.console.print(f"results: {self.spec.results}")
