"""An in-process capture SMTP server built on aiosmtpd, for tests that need to see exactly
what a client sent or to script the server's replies.

It runs aiosmtpd's threaded ``Controller`` on ``127.0.0.1:<free port>`` (aiosmtpd 1.4.6's
start-up self-check breaks with port 0, so a real free port is picked and retried if taken).
Supports STARTTLS (optionally required), implicit TLS, AUTH PLAIN/LOGIN against a user dict,
SIZE, SMTPUTF8 and 8BITMIME. aiosmtpd has no CHUNKING/BDAT, and it does not advertise
PIPELINING (it reads pipelined commands fine, but a strict client will not pipeline to it).
Replies can be scripted per sender, per recipient and for the end of DATA, and DATA can be
delayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from .lifecycle import Peer
from .ports import LOCALHOST, free_port

__all__ = ["AuthAttempt", "CaptureHandler", "CaptureServer", "CapturedMessage", "DataReply"]

# Reply for the end of DATA: a fixed "NNN text" line, or a function of the message that
# returns one (None = accept normally).
DataReply = str | Callable[["CapturedMessage"], str | None]


@dataclass(frozen=True)
class CapturedMessage:
    """One accepted mail transaction, as the server saw it."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes  # after dot-unstuffing, line endings as sent (CRLF)
    mail_options: list[str] = field(default_factory=list)
    rcpt_options: list[str] = field(default_factory=list)
    tls: bool = False  # STARTTLS or implicit TLS was in effect
    auth_login: str | None = None  # user name the session authenticated as
    helo: str | None = None


@dataclass(frozen=True)
class AuthAttempt:
    mechanism: str
    login: str
    success: bool


class CaptureHandler:
    """aiosmtpd handler that records messages and answers as configured.

    Args:
        mail_replies: ``{sender: "NNN text"}`` reply to MAIL FROM for these senders.
        rcpt_replies: ``{recipient: "NNN text"}`` reply to RCPT TO for these recipients
            (e.g. ``{"bad@example.org": "550 5.1.1 no such user"}``); a non-2xx reply leaves
            the recipient out of the envelope. Addresses match case-insensitively.
        data_reply: reply after the DATA payload instead of ``250``; a non-2xx reply means
            the message is not recorded.
        data_delay: seconds to wait before answering the end of DATA (timeout tests).
    """

    def __init__(
        self,
        *,
        mail_replies: Mapping[str, str] | None = None,
        rcpt_replies: Mapping[str, str] | None = None,
        data_reply: DataReply | None = None,
        data_delay: float = 0.0,
    ) -> None:
        self.mail_replies = {k.lower(): v for k, v in (mail_replies or {}).items()}
        self.rcpt_replies = {k.lower(): v for k, v in (rcpt_replies or {}).items()}
        self.data_reply = data_reply
        self.data_delay = data_delay
        self.messages: list[CapturedMessage] = []
        self.rejected: list[CapturedMessage] = []  # transactions refused by data_reply
        self.cond = threading.Condition()

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        reply = self.mail_replies.get(address.lower())
        if reply is not None and not reply.startswith("2"):
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return reply or "250 2.1.0 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self.rcpt_replies.get(address.lower())
        if reply is not None and not reply.startswith("2"):
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return reply or "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        if isinstance(envelope.content, bytes):
            content = envelope.content
        login = session.auth_data if session.authenticated else None
        msg = CapturedMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            content=content,
            mail_options=list(envelope.mail_options),
            rcpt_options=list(envelope.rcpt_options),
            # session.ssl is only set by STARTTLS; implicit TLS shows on the transport.
            tls=session.ssl is not None
            or (
                server.transport is not None and bool(server.transport.get_extra_info("ssl_object"))
            ),
            auth_login=login.login.decode(errors="replace")
            if isinstance(login, LoginPassword)
            else None,
            helo=session.host_name,
        )
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        reply = self.data_reply(msg) if callable(self.data_reply) else self.data_reply
        with self.cond:
            if reply is None or reply.startswith("2"):
                self.messages.append(msg)
            else:
                self.rejected.append(msg)
            self.cond.notify_all()
        return reply or "250 2.0.0 OK: queued"


class CaptureServer(Peer):
    """Threaded aiosmtpd capture server on ``127.0.0.1:<free port>``.

    Args:
        tls_context: server SSL context (e.g. ``TestPKI.server_context()``); enables STARTTLS,
            or implicit TLS from the first byte with ``implicit_tls=True``.
        require_starttls: refuse everything but EHLO/STARTTLS/QUIT before STARTTLS.
        auth_users: ``{user: password}``; enables AUTH PLAIN and LOGIN.
        auth_require_tls: only offer/accept AUTH after TLS (aiosmtpd's default).
        auth_required: refuse MAIL before a successful AUTH.
        implicit_tls: wrap the listening socket in ``tls_context`` (SMTPS).
        smtputf8: advertise SMTPUTF8.
        data_size_limit: advertised SIZE and enforced limit in bytes.
        mail_replies, rcpt_replies, data_reply, data_delay: see ``CaptureHandler``.
    """

    def __init__(
        self,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        auth_users: Mapping[str, str] | None = None,
        auth_require_tls: bool = True,
        implicit_tls: bool = False,
        *,
        auth_required: bool = False,
        smtputf8: bool = True,
        data_size_limit: int = 32 * 1024 * 1024,
        hostname: str = "localhost",
        mail_replies: Mapping[str, str] | None = None,
        rcpt_replies: Mapping[str, str] | None = None,
        data_reply: DataReply | None = None,
        data_delay: float = 0.0,
    ) -> None:
        if implicit_tls and tls_context is None:
            raise ValueError("implicit_tls needs a tls_context")
        if require_starttls and (tls_context is None or implicit_tls):
            raise ValueError("require_starttls needs a tls_context without implicit_tls")
        self.host = LOCALHOST
        self.port = 0
        self.tls_context = tls_context
        self.require_starttls = require_starttls
        self.auth_users: dict[str, str] | None = dict(auth_users) if auth_users else None
        self.auth_require_tls = auth_require_tls
        self.auth_required = auth_required
        self.implicit_tls = implicit_tls
        self.smtputf8 = smtputf8
        self.data_size_limit = data_size_limit
        self.hostname = hostname
        self.handler = CaptureHandler(
            mail_replies=mail_replies,
            rcpt_replies=rcpt_replies,
            data_reply=data_reply,
            data_delay=data_delay,
        )
        self.auth_attempts: list[AuthAttempt] = []
        self._controller: Controller | None = None

    # --------------------------------------------------------------- access

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def messages(self) -> list[CapturedMessage]:
        """Accepted messages so far (a snapshot copy), oldest first."""
        with self.handler.cond:
            return list(self.handler.messages)

    @property
    def rejected(self) -> list[CapturedMessage]:
        """Transactions whose end of DATA was answered non-2xx by ``data_reply``."""
        with self.handler.cond:
            return list(self.handler.rejected)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[CapturedMessage]:
        """Wait until at least ``count`` messages were accepted; return them all."""
        with self.handler.cond:
            if not self.handler.cond.wait_for(lambda: len(self.handler.messages) >= count, timeout):
                got = len(self.handler.messages)
                raise TimeoutError(f"{got}/{count} messages captured after {timeout}s")
            return list(self.handler.messages)

    def clear(self) -> None:
        with self.handler.cond:
            self.handler.messages.clear()
            self.handler.rejected.clear()
        self.auth_attempts.clear()

    def __repr__(self) -> str:
        state = "running" if self._controller is not None else "stopped"
        return f"<CaptureServer {self.host}:{self.port} {state}>"

    # ------------------------------------------------------------ lifecycle

    def _authenticator(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert self.auth_users is not None
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = data.login.decode(errors="replace")
        ok = self.auth_users.get(login) == data.password.decode(errors="replace")
        self.auth_attempts.append(AuthAttempt(mechanism, login, ok))
        # handled=False: aiosmtpd sends the standard 235 / 535 replies.
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    def _make_controller(self) -> Controller:
        kwargs: dict[str, Any] = {
            "hostname": self.host,
            "port": self.port,
            "server_hostname": self.hostname,
            "enable_SMTPUTF8": self.smtputf8,
            "data_size_limit": self.data_size_limit,
            "decode_data": False,
            "auth_require_tls": self.auth_require_tls,
            "auth_required": self.auth_required,
            "ready_timeout": 10.0,
        }
        if self.tls_context is not None:
            if self.implicit_tls:
                kwargs["ssl_context"] = self.tls_context
            else:
                kwargs["tls_context"] = self.tls_context
                kwargs["require_starttls"] = self.require_starttls
        if self.auth_users is not None:
            kwargs["authenticator"] = self._authenticator
        return _QuietController(self.handler, **kwargs)

    def start(self) -> Self:
        if self._controller is not None:
            return self
        for attempt in range(3):
            self.port = free_port(self.host)
            controller = self._make_controller()
            try:
                controller.start()
            except OSError as exc:
                _close_loop(controller)
                # Someone took the port between free_port() and bind(): try another one.
                if exc.errno == errno.EADDRINUSE and attempt < 2:
                    continue
                raise
            except BaseException:
                with contextlib.suppress(Exception):
                    controller.stop(no_assert=True)
                _close_loop(controller)
                raise
            self._controller = controller
            return self
        raise AssertionError("unreachable")

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()
            _close_loop(controller)


class _QuietController(Controller):
    """Controller whose SMTP factory does not turn aiosmtpd's advisory warnings (e.g. AUTH
    without TLS) into errors under ``-W error``: they are raised in the server thread and
    would make ``start()`` fail."""

    def factory(self) -> SMTP:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            server: SMTP = super().factory()  # type: ignore[no-untyped-call]
            return server


def _close_loop(controller: Controller) -> None:
    # A failed start leaves the controller's private loop open (ResourceWarning at GC).
    loop = controller.loop
    deadline = time.monotonic() + 5
    while loop.is_running() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not loop.is_running() and not loop.is_closed():
        loop.close()
