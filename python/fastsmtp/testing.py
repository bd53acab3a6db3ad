"""A local capture server for development and tests: fastsmtp's "sink".

``CaptureServer`` is an aiosmtpd server on 127.0.0.1 that keeps every message it receives
(envelope and raw bytes), optionally writes each one as an ``.eml`` file, and can print a
one-line summary per message. ``fastsmtp sink`` runs it from the shell; your own tests can
start it in-process (``pip install 'fastsmtp[testing]'`` installs aiosmtpd, which it runs on):

    with CaptureServer() as server:
        ...send to ("127.0.0.1", server.port) with tls="none"...
        assert server.messages[0].rcpt_tos == ["bob@example.org"]
"""

from __future__ import annotations

import dataclasses
import email.parser
import email.policy
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, Envelope, Session
except ModuleNotFoundError as e:  # pragma: no cover - tested in a venv without the extra
    if e.name is None or e.name.partition(".")[0] != "aiosmtpd":
        raise
    raise ModuleNotFoundError(
        "fastsmtp.testing needs aiosmtpd, which comes with the 'testing' extra: "
        "pip install 'fastsmtp[testing]'",
        name="aiosmtpd",
    ) from e


@dataclasses.dataclass(frozen=True)
class CapturedMessage:
    """One message as the server received it."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    path: Path | None

    @property
    def subject(self) -> str:
        parsed = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(
            self.content
        )
        return str(parsed.get("Subject", ""))


def free_port(host: str = "127.0.0.1") -> int:
    """A currently free TCP port (aiosmtpd needs a real port: 0 breaks its self-check)."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class _Handler:
    def __init__(self, server: CaptureServer) -> None:
        self.server = server

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.server._store(str(envelope.mail_from or ""), list(envelope.rcpt_tos), content)
        return "250 2.0.0 OK: captured"


class CaptureServer:
    """An in-process SMTP server on 127.0.0.1 that captures every message."""

    def __init__(
        self,
        port: int | None = None,
        *,
        directory: str | os.PathLike[str] | None = None,
        echo: TextIO | None = None,
        **smtp_options: Any,
    ) -> None:
        self.port = port or free_port()
        self.directory = Path(directory) if directory is not None else None
        self.echo = echo
        self.messages: list[CapturedMessage] = []
        self._lock = threading.Lock()
        self._controller = Controller(
            _Handler(self),
            hostname="127.0.0.1",
            port=self.port,
            decode_data=False,
            data_size_limit=64 * 1024 * 1024,
            **smtp_options,
        )

    def _store(self, mail_from: str, rcpt_tos: list[str], content: bytes) -> None:
        with self._lock:
            n = len(self.messages) + 1
            path = None
            if self.directory is not None:
                path = self.directory / f"{n:07d}.eml"
                path.write_bytes(content)
            message = CapturedMessage(mail_from, rcpt_tos, content, path)
            self.messages.append(message)
        if self.echo is not None:
            print(
                f"#{n} from={mail_from} to={','.join(rcpt_tos)} "
                f"bytes={len(content)} subject={message.subject!r}"
                + (f" file={path}" if path else ""),
                file=self.echo,
                flush=True,
            )

    def start(self) -> CaptureServer:
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> CaptureServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[CapturedMessage]:
        """Wait until at least ``count`` messages have arrived."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.messages)} of {count} messages arrived")
            time.sleep(0.01)
        return list(self.messages)


def serve_forever(port: int, directory: str | None) -> None:
    """Run the capture server until Ctrl-C (``fastsmtp sink``)."""
    server = CaptureServer(port, directory=directory, echo=sys.stdout)
    server.start()
    where = f", writing .eml files to {directory}" if directory else ""
    print(f"fastsmtp sink listening on 127.0.0.1:{server.port}{where} (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print(f"\n{len(server.messages)} messages captured", flush=True)
