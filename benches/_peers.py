"""Servers and load generators for the throughput benchmarks, all on 127.0.0.1.

``BenchSink`` runs Postfix's ``smtp-sink`` (a fast C sink that offers PIPELINING but not
CHUNKING); ``bench_postfix`` starts a private Postfix ``smtpd`` (CHUNKING) that accepts every
message and throws it away, so what is measured is the SMTP exchange, not disk delivery;
``run_smtp_source`` runs Postfix's ``smtp-source`` and reports its CPU from ``wait4``.
Every process started here is stopped by the context manager that started it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.peers, the test suite's server helpers
LOCALHOST = "127.0.0.1"
from tests.peers.sink import SmtpSink  # noqa: E402  (needs the sys.path entry above)

SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (from /proc; 0.0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name may hold spaces: fields are counted after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class BenchSink(SmtpSink):
    """The test suite's ``SmtpSink`` (tests/peers/sink.py), plus its CPU time."""

    def cpu_seconds(self) -> float:
        proc = self._proc  # the one running smtp-sink process
        return process_cpu_seconds(proc.pid) if proc is not None else 0.0


# Postfix accepts each message and drops it before the queue: RCPT-stage DISCARD makes
# cleanup(8) throw the message away instead of committing a queue file, so neither qmgr
# nor a delivery agent runs. No maillog file (postlogd per line costs ~10% here).
# Measured with smtp-source -s 16 (msg/s): Maildir delivery ~750 (~1,100 with the
# queue on tmpfs), virtual_transport=discard ~1,200, DISCARD at smtpd ~2,000.
POSTFIX_DISCARD_CONFIG = {
    "smtpd_recipient_restrictions": "reject_unauth_destination, check_client_access static:DISCARD",
    "maillog_file": "",
    "receive_override_options": (
        "no_unknown_recipient_checks, no_header_body_checks, no_milters, no_address_mappings"
    ),
}


@contextlib.contextmanager
def bench_postfix(
    pki: object | None = None, message_size_limit: int | None = None
) -> Iterator[tuple[int, object]]:
    """A private Postfix ``smtpd`` (tests/peers/postfix.py) on a free port that accepts and
    discards all mail (its temp tree is on tmpfs when there is one); with ``pki`` (a
    tests.peers.certs.TestPKI) it offers STARTTLS with that certificate. Yields
    (port, instance)."""
    from tests.peers.postfix import PostfixInstance

    tls: dict[str, object] = {} if pki is None else {"tls": "may", "pki": pki}
    config = dict(POSTFIX_DISCARD_CONFIG)
    if message_size_limit is not None:
        config["message_size_limit"] = str(message_size_limit)
    instance = PostfixInstance(extra_config=config, smtputf8=False, **tls)
    instance.start()
    try:
        yield instance.port, instance
    finally:
        instance.stop()


@dataclass
class ChildRun:
    """What one external load generator run cost."""

    returncode: int
    elapsed: float
    cpu: float
    """User + system CPU seconds of the child (from wait4)."""
    maxrss_kb: int
    stderr: str


def run_smtp_source(
    port: int, connections: int, size: int, messages: int, timeout: float = 300.0
) -> ChildRun:
    """``smtp-source -d -s <connections> -l <size> -m <messages>``; wall time and CPU.

    ``-d`` keeps each connection open between messages. smtp-source does not pipeline:
    each message costs MAIL, RCPT, DATA and end-of-data round trips.
    """
    cmd = [
        SMTP_SOURCE,
        "-d",
        "-s",
        str(connections),
        "-l",
        str(size),
        "-m",
        str(messages),
        "-f",
        "bench@example.com",
        "-t",
        "user@example.org",
        f"{LOCALHOST}:{port}",
    ]
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        # wait4 blocks and gives the child's rusage; a timer kills a hung run.
        timer = threading.Timer(timeout, lambda: proc.send_signal(signal.SIGKILL))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        elapsed = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
        err.seek(0)
        stderr = err.read().decode(errors="replace")[-2000:]
    return ChildRun(
        returncode=proc.returncode,
        elapsed=elapsed,
        cpu=usage.ru_utime + usage.ru_stime,
        maxrss_kb=usage.ru_maxrss,
        stderr=stderr,
    )
