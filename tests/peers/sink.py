"""Postfix's C test programs as peers: ``smtp-sink`` (fast discard server) and
``smtp-source`` (load generator, for benchmark baselines).

``SmtpSink`` runs ``smtp-sink -u nobody 127.0.0.1:PORT BACKLOG`` as our own child and throws
every message away. Its EHLO reply (Postfix 3.7) is PIPELINING, 8BITMIME, XCLIENT, XFORWARD,
ENHANCEDSTATUSCODES, DSN and then a bare ``250`` line with empty text; there is no CHUNKING,
STARTTLS, SIZE or SMTPUTF8 (a client must not send ``SMTPUTF8`` to it). It would announce
``AUTH PLAIN LOGIN`` (accepting anything); we pass ``-a`` unless ``auth=True``.

What works for counting messages: ``dump=True`` passes ``-d DIR/%Y%m%d%H%M%S.``, so each mail
transaction becomes one file (smtp-sink appends a random hex suffix) holding its
``X-Mail-Args``/``X-Rcpt-Args`` headers, a ``Received`` header and the message as received.
Dumping costs disk I/O per message, so leave it off for throughput measurements. A file is
written while its transaction is in progress; count after the client has finished.
``-c`` (live counters) is never used: it rewrites a terminal line forever.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from .lifecycle import Peer
from .ports import LOCALHOST, free_port, wait_for_listen
from .postfix import claim_dir, reap_stale_once, scratch_root

__all__ = ["SmtpSink", "SmtpSinkError", "SmtpSource", "SmtpSourceError"]

SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
NOBODY_UID = 65534
KEEP_ENV = "FASTSMTP_KEEP_PEERS"


_LIVE: weakref.WeakSet[SmtpSink] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    # Safety net for interrupted test runs: smtp-sink runs in its own session and would
    # outlive us.
    for sink in list(_LIVE):
        with contextlib.suppress(Exception):
            sink.stop()


class SmtpSinkError(RuntimeError):
    """smtp-sink failed to start."""


class SmtpSourceError(RuntimeError):
    """smtp-source exited with an error."""


class SmtpSink(Peer):
    """``smtp-sink`` on ``127.0.0.1:<free port>``.

    Args:
        dump: write each received mail transaction to a file (see module docstring).
        auth: announce (and accept any) AUTH PLAIN/LOGIN.
        hostname: name in the greeting and EHLO reply (``-h``).
        backlog: listen(2) backlog.
        max_connections: simultaneous sessions served (``-m``; more wait in the backlog).
        extra_args: further smtp-sink options, e.g. ``["-r", "RCPT"]`` (4xx every RCPT),
            ``["-f", "DATA"]`` (5xx), ``["-w", "1"]`` (1 s delay before the DATA reply),
            ``["-Q", "MAIL"]`` (421 and disconnect). Never ``-c``.
    """

    def __init__(
        self,
        *,
        dump: bool = False,
        auth: bool = False,
        hostname: str = "localhost",
        backlog: int = 1024,
        max_connections: int = 1024,
        extra_args: Sequence[str] = (),
        start_timeout: float = 10.0,
    ) -> None:
        if "-c" in extra_args:
            raise ValueError("smtp-sink -c rewrites a counter line forever; do not use it")
        self.host = LOCALHOST
        self.port = 0
        self.dump = dump
        self.auth = auth
        self.hostname = hostname
        self.backlog = backlog
        self.max_connections = max_connections
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.base: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def dump_dir(self) -> Path:
        if self.base is None:
            raise SmtpSinkError("sink has not been started")
        return self.base / "dump"

    @property
    def log_file(self) -> Path:
        if self.base is None:
            raise SmtpSinkError("sink has not been started")
        return self.base / "smtp-sink.log"

    def __repr__(self) -> str:
        state = "running" if self._proc is not None else "stopped"
        return f"<SmtpSink {self.host}:{self.port} dump={self.dump} {state}>"

    def command(self) -> list[str]:
        """The smtp-sink argv (without the listen address and backlog)."""
        args = [SMTP_SINK, "-4", "-u", "nobody", "-h", self.hostname]
        args += ["-m", str(self.max_connections)]
        if not self.auth:
            args.append("-a")
        if self.dump:
            # strftime template plus smtp-sink's random suffix: one file per transaction.
            args += ["-d", f"{self.dump_dir}/%Y%m%d%H%M%S."]
        return args + self.extra_args

    def start(self) -> Self:
        if self._proc is not None:
            return self
        reap_stale_once()
        self.base = Path(tempfile.mkdtemp(prefix="fastsmtp-sink-", dir=scratch_root()))
        claim_dir(self.base)
        _LIVE.add(self)
        os.chmod(self.base, 0o755)
        if self.dump:
            self.dump_dir.mkdir()
            # smtp-sink writes the dumps after dropping to "nobody".
            os.chown(self.dump_dir, NOBODY_UID, NOBODY_UID)
        last = ""
        for _attempt in range(3):  # the free port may be taken before smtp-sink binds it
            self.port = free_port(self.host)
            with open(self.log_file, "ab") as log:
                proc = subprocess.Popen(
                    [*self.command(), f"{self.host}:{self.port}", str(self.backlog)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            # Lets reap_stale() find this sink if the test process dies without stop().
            (self.base / "sink.pid").write_text(f"{proc.pid}\n")
            deadline = time.monotonic() + self.start_timeout
            try:
                while proc.poll() is None and time.monotonic() < deadline:
                    with contextlib.suppress(TimeoutError):
                        wait_for_listen(self.host, self.port, timeout=0.2)
                        self._proc = proc
                        return self
            except BaseException:
                _kill(proc)
                raise
            _kill(proc)
            last = self.log_file.read_text(errors="replace")
            if "in use" not in last:
                break
        self._cleanup()
        raise SmtpSinkError(f"smtp-sink did not start on {self.host}:{self.port}:\n{last}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            _kill(proc)
        self._cleanup()

    def _cleanup(self) -> None:
        _LIVE.discard(self)
        if self.base is not None and not os.environ.get(KEEP_ENV):
            shutil.rmtree(self.base, ignore_errors=True)

    # ----------------------------------------------------------------- dumps

    def message_files(self) -> list[Path]:
        """Dump files written so far (needs ``dump=True``), oldest first."""
        if not self.dump:
            raise SmtpSinkError("start the sink with dump=True to capture messages")
        files = [p for p in self.dump_dir.rglob("*") if p.is_file()]
        files.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
        return files

    def message_count(self) -> int:
        return len(self.message_files())

    def messages(self) -> list[bytes]:
        """Raw dump files: smtp-sink's X-* and Received headers, then the message."""
        return [p.read_bytes() for p in self.message_files()]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[bytes]:
        """Wait until at least ``count`` transactions were dumped; return all dumps."""
        deadline = time.monotonic() + timeout
        while (got := self.message_count()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{got}/{count} messages dumped after {timeout}s")
            time.sleep(0.02)
        return self.messages()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    # smtp-sink is a single process with its own process group; SIGKILL loses nothing.
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@dataclass
class SmtpSource:
    """``smtp-source`` run against ``host:port``; ``run()`` returns the elapsed seconds.

    ``smtp-source -d -s SESSIONS -l SIZE -m COUNT -f SENDER -t RECIPIENT HOST:PORT``:
    ``count`` messages of ``size`` payload bytes over ``sessions`` parallel connections,
    kept open between messages (``keep_open``, ``-d``). It does not pipeline.
    """

    host: str
    port: int
    sessions: int = 1
    size: int = 1024
    count: int = 100
    sender: str = "source@example.com"
    recipient: str = "sink@example.org"
    recipients_per_message: int = 1
    keep_open: bool = True
    extra_args: list[str] = field(default_factory=list)

    def command(self) -> list[str]:
        args = [SMTP_SOURCE, "-4"]
        if self.keep_open:
            args.append("-d")
        args += ["-s", str(self.sessions), "-l", str(self.size), "-m", str(self.count)]
        args += ["-r", str(self.recipients_per_message)]
        args += ["-f", self.sender, "-t", self.recipient, "-M", "localhost"]
        return [*args, *self.extra_args, f"{self.host}:{self.port}"]

    def run(self, timeout: float = 300.0) -> float:
        """Run to completion; return wall-clock seconds. Raises ``SmtpSourceError``."""
        start = time.perf_counter()
        res = subprocess.run(
            self.command(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        elapsed = time.perf_counter() - start
        if res.returncode != 0:
            out = (res.stdout + res.stderr).decode(errors="replace")
            raise SmtpSourceError(f"smtp-source exited {res.returncode}: {out}")
        return elapsed

    def messages_per_second(self, timeout: float = 300.0) -> float:
        """Run and return the throughput (``count / elapsed``)."""
        return self.count / self.run(timeout)
