"""Debian's ``stunnel4`` as a real TLS peer: implicit TLS (SMTPS-style, TLS from the first
byte) terminated by stunnel in front of a plaintext server such as ``smtp-sink``.

``Stunnel(backend=(host, port), pki=...)`` writes a private config under a temp dir and runs
``stunnel4`` in the foreground as our own child on ``127.0.0.1:<free port>``, presenting
``pki``'s server certificate. stunnel keeps a TLS session cache (session IDs and TLS 1.3
tickets), so it also shows whether a client resumes. The log (``debug = info``) names
every connection; nothing listens anywhere but loopback.
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
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from .certs import TestPKI
from .lifecycle import Peer
from .ports import LOCALHOST, free_port, wait_for_listen
from .postfix import claim_dir, scratch_root

__all__ = ["STUNNEL", "Stunnel", "StunnelError"]

STUNNEL = shutil.which("stunnel4") or shutil.which("stunnel") or "/usr/bin/stunnel4"
KEEP_ENV = "FASTSMTP_KEEP_PEERS"

_LIVE: weakref.WeakSet[Stunnel] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    # stunnel runs in its own session and would outlive an interrupted test run.
    for tunnel in list(_LIVE):
        with contextlib.suppress(Exception):
            tunnel.stop()


class StunnelError(RuntimeError):
    """stunnel failed to start."""


class Stunnel(Peer):
    """``stunnel4`` accepting TLS on ``127.0.0.1:<free port>`` and forwarding the plaintext
    to ``backend``.

    Args:
        backend: the plaintext server's (host, port), e.g. ``smtp_sink.address``.
        pki: the certificate and key stunnel presents.
        options: extra service-level options, e.g. ``{"sslVersionMax": "TLSv1.2"}``.
    """

    def __init__(
        self,
        backend: tuple[str, int],
        pki: TestPKI,
        *,
        options: Mapping[str, str] | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        self.host = LOCALHOST
        self.port = 0
        self.backend = backend
        self.pki = pki
        self.options = dict(options or {})
        self.start_timeout = start_timeout
        self.base: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def log_file(self) -> Path:
        if self.base is None:
            raise StunnelError("stunnel has not been started")
        return self.base / "stunnel.log"

    def __repr__(self) -> str:
        state = "running" if self._proc is not None else "stopped"
        return f"<Stunnel {self.host}:{self.port} -> {self.backend[0]}:{self.backend[1]} {state}>"

    def config(self) -> str:
        """The stunnel.conf text for the current port."""
        assert self.base is not None
        lines = [
            "foreground = yes",
            "pid =",
            f"output = {self.log_file}",
            "debug = info",
            "[smtps]",
            f"accept = {self.host}:{self.port}",
            f"connect = {self.backend[0]}:{self.backend[1]}",
            f"cert = {self.pki.cert_file}",
            f"key = {self.pki.key_file}",
            *(f"{k} = {v}" for k, v in self.options.items()),
        ]
        return "\n".join(lines) + "\n"

    def start(self) -> Self:
        if self._proc is not None:
            return self
        self.base = Path(tempfile.mkdtemp(prefix="fastsmtp-stunnel-", dir=scratch_root()))
        claim_dir(self.base)
        _LIVE.add(self)
        conf = self.base / "stunnel.conf"
        last = ""
        for _attempt in range(3):  # the free port may be taken before stunnel binds it
            self.port = free_port(self.host)
            conf.write_text(self.config())
            proc = subprocess.Popen(
                [STUNNEL, str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
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
            with contextlib.suppress(OSError):
                last = self.log_file.read_text(errors="replace")
            if "in use" not in last:
                break
        self._cleanup()
        raise StunnelError(f"stunnel did not start on {self.host}:{self.port}:\n{last}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            _kill(proc)
        self._cleanup()

    def _cleanup(self) -> None:
        _LIVE.discard(self)
        if self.base is not None and not os.environ.get(KEEP_ENV):
            shutil.rmtree(self.base, ignore_errors=True)

    def log(self) -> str:
        """The stunnel log so far."""
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def _kill(proc: subprocess.Popen[bytes]) -> None:
    # One process (threads, no children) in its own process group.
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
