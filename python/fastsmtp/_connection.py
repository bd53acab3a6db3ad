"""One SMTP connection: the asyncio Protocol that moves bytes between a socket and the
Rust sans-IO ClientConnection, plus the set-up dance (greeting, STARTTLS, AUTH).

The Rust core decides every byte; this module writes what it hands out, feeds it what
the server sends, and passes the transactions' events to the pool (``on_events``). It
writes as the transport allows: a large body comes from the core a piece at a time, and
nothing more is taken while the transport has paused writing, so memory stays bounded.
Replies have deadlines: each must be complete within ``reply_timeout`` of the moment its
command went out, however slowly its bytes trickle in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Any, cast

from fastsmtp import _fastsmtp as core
from fastsmtp._config import EngineConfig
from fastsmtp._errors import (
    AuthenticationError,
    FastSMTPError,
    LocalProtocolError,
    SMTPConnectionError,
    SMTPReplyError,
    SMTPTimeoutError,
    TLSError,
    TLSRequiredError,
)

log = logging.getLogger("fastsmtp")

_DATA_PIECE = core.DATA_PIECE

CLOSE_TIMEOUT = 5.0
"""Seconds quit() waits for the socket to close (e.g. a TLS close_notify) before aborting."""

OnEvents = Callable[["Connection", list[Any]], None]
"""Called with a read's events, in order: the pool takes the transactions' events and
hands the rest back to ``Connection.session_event``."""


def choose_auth_mechanism(offered: list[str], *, oauth2: bool) -> str:
    """XOAUTH2 when a token is given; else the best password mechanism the server offers."""
    wanted = ("XOAUTH2",) if oauth2 else ("PLAIN", "LOGIN", "CRAM-MD5")
    for mechanism in wanted:
        if mechanism in offered:
            return mechanism
    raise FastSMTPError(
        f"server offers AUTH {' '.join(offered) or '(none)'}; fastsmtp needs one of "
        f"{', '.join(wanted)}"
    )


class Connection(asyncio.Protocol):
    """A live SMTP connection driven by the Rust ClientConnection."""

    def __init__(self, config: EngineConfig, on_events: OnEvents) -> None:
        self.config = config
        self.on_events = on_events
        self.client = core.ClientConnection(config.ehlo_name, data_window=config.data_window)
        self.transport: asyncio.Transport | None = None
        self._writable = False  # the transport takes writes (connected, not closed)
        self.submitted = 0
        self.closed = False
        self.close_reason = ""
        self._close_error: TLSError | None = None
        self.capabilities: core.Capabilities | None = None
        self._loop = asyncio.get_running_loop()
        self._paused = False  # the transport asked us to stop writing
        self._handshake: asyncio.Future[Any] | None = None
        self._early_events: list[Any] = []
        self._closed_waiter: asyncio.Future[None] = self._loop.create_future()
        # Set by connection_lost: the socket is really closed (a TLS transport takes a few
        # loop turns after close()); quit() waits for it so a loop stopped right after
        # Engine.close() leaks no transport.
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._capacity = asyncio.Event()
        self._capacity.set()
        self._awaiting_capacity = False  # a worker waits on _capacity
        self._watchdog: asyncio.TimerHandle | None = None
        self.window = config.window
        self._abort_charged = False
        self._settled = asyncio.Event()  # set while no transaction awaits replies
        self._settled.set()
        self._awaiting_settled = False  # cleared: set it when nothing is in flight

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check.
        self.transport = cast(asyncio.Transport, transport)
        self._writable = True

    def data_received(self, data: bytes) -> None:
        """Feed the core, write what it framed in answer, hand its events on. The hot path:
        one Python frame and one call into the core per read."""
        client = self.client
        events, out = client.feed(data)
        if out and self._writable:
            self.transport.write(out)  # type: ignore[union-attr]  # set when writable
            if len(out) >= _DATA_PIECE:
                self._flush()  # the rest of a large body, as the transport takes it
        if events:
            self.on_events(self, events)
        if (
            self._awaiting_capacity
            and client.in_flight <= self.window // 2
            and client.bytes_in_flight <= self.config.window_bytes // 2
            and not self._paused
        ):
            # A full window is refilled once half of it has drained, not one slot at a
            # time: each worker wake-up then submits a large group.
            self._awaiting_capacity = False
            self._capacity.set()
        if self._awaiting_settled and not client.in_flight:
            self._awaiting_settled = False
            self._settled.set()

    def eof_received(self) -> bool | None:
        self._end(self.client.eof(), "closed by the server")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._writable = False
        if not self._lost.done():
            self._lost.set_result(None)
        if not self.client.is_closed:
            self._end(self.client.eof(), f"connection lost: {exc or 'closed by peer'}")
        self._mark_closed(self.close_reason or f"connection lost: {exc or 'closed by peer'}")

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if not self.closed:
            self._flush()
        self._capacity.set()

    # -- events -------------------------------------------------------------------------

    def session_event(self, event: Any) -> None:
        """An event of the session itself (the pool hands on everything but the
        transactions' events): the set-up replies, and Closed."""
        if isinstance(event, core.Closed):
            self._closed(event)
        elif self._handshake is not None and not self._handshake.done():
            self._handshake.set_result(event)
        else:
            # The greeting and the EHLO reply can both arrive before _setup() waits
            # for them (a busy loop between connection_made and _expect): keep it.
            self._early_events.append(event)

    def _closed(self, event: core.Closed) -> None:
        if not self.close_reason:
            self.close_reason = event.reason
        if event.error is not None:
            log.warning("%s: %s", self, event.error)
            if isinstance(event.error, TLSError):
                self._close_error = event.error  # raised by a set-up step waiting on it
        self._mark_closed(event.reason)
        if self.transport is not None:
            self.transport.close()

    def _end(self, events: list[Any], reason: str) -> None:
        """Handle the events of the core's end (eof or abort)."""
        if not self.close_reason:
            self.close_reason = reason
        if events:
            self.on_events(self, events)
        self._mark_closed(reason)

    def _mark_closed(self, reason: str) -> None:
        self._writable = False
        if self.closed:
            return
        self.closed = True
        if not self.close_reason:
            self.close_reason = reason
        self._awaiting_capacity = False
        self._capacity.set()  # wake a waiting worker so it sees the close
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(self._closed_error())
        if not self._closed_waiter.done():
            self._closed_waiter.set_result(None)
        self._awaiting_settled = False
        self._settled.set()
        if self._watchdog is not None:
            self._watchdog.cancel()

    def _closed_error(self) -> Exception:
        """What a set-up step waiting on a closed connection raises: the TLS error that
        ended it, or SMTPConnectionError."""
        if self._close_error is not None:
            return self._close_error
        return SMTPConnectionError(f"connection closed: {self.close_reason}")

    def charge_abort(self) -> bool:
        """True for the first transaction aborted on this connection, False afterwards.

        Replies come in order, so when a connection breaks only the first unfinished
        transaction was being worked on; the ones queued behind it never got the server's
        attention, and retrying them should not use up one of their attempts.
        """
        first = not self._abort_charged
        self._abort_charged = True
        return first

    # -- set-up -------------------------------------------------------------------------

    async def _expect(self, wanted: type[Any], limit: float, what: str) -> Any:
        self._flush()
        if self._early_events:
            event = self._early_events.pop(0)
        elif self.closed:
            raise self._closed_error()
        else:
            self._handshake = self._loop.create_future()
            try:
                event = await asyncio.wait_for(self._handshake, limit)
            except TimeoutError:
                self.abort(f"timed out after {limit:g}s waiting for {what}")
                raise SMTPTimeoutError(f"timed out after {limit:g}s waiting for {what}") from None
            finally:
                self._handshake = None
        if isinstance(event, core.CommandFailed):
            reply = event.reply
            raise SMTPReplyError(
                f"{event.command} refused: {reply.code} {reply.text}",
                code=reply.code,
                enhanced_code=reply.enhanced_code,
            )
        if isinstance(event, core.AuthFailed):
            reply = event.reply
            raise AuthenticationError(
                f"authentication failed: {reply.code} {reply.text}",
                code=reply.code,
                enhanced_code=reply.enhanced_code,
            )
        if not isinstance(event, wanted):
            raise LocalProtocolError(f"expected {wanted.__name__} during {what}, got {event!r}")
        return event

    @classmethod
    async def open(
        cls,
        config: EngineConfig,
        on_events: OnEvents,
        tls: core.TlsConfig | ssl.SSLContext | None = None,
    ) -> Connection:
        """Connect, read the greeting, EHLO, STARTTLS and AUTH as configured. ``tls`` is
        the pool's TLS layer (``EngineConfig.tls_layer()``): a ``TlsConfig`` runs TLS in
        the core (rustls), an ``SSLContext`` through Python's ``ssl``.

        Raises SMTPConnectionError, SMTPTimeoutError, SMTPReplyError, TLSRequiredError,
        AuthenticationError, TLSError (an ``ssl.SSLError``) or ssl.SSLError; the socket is
        closed on any failure.
        """
        loop = asyncio.get_running_loop()
        conn = cls(config, on_events)
        if tls is None and config.tls != "none":
            tls = config.make_ssl_context()
        implicit = config.tls == "implicit"
        python_ssl = tls if isinstance(tls, ssl.SSLContext) and implicit else None
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: conn,
                    config.host,
                    config.port,
                    ssl=python_ssl,
                    server_hostname=config.tls_server_hostname if python_ssl else None,
                    ssl_handshake_timeout=config.connect_timeout_s if python_ssl else None,
                ),
                config.connect_timeout_s,
            )
        except TimeoutError:
            raise SMTPTimeoutError(f"timed out connecting to {config.host}:{config.port}") from None
        except ssl.SSLError:
            raise
        except OSError as e:
            raise SMTPConnectionError(
                f"cannot connect to {config.host}:{config.port}: {e.strerror or e}"
            ) from e
        try:
            if implicit and isinstance(tls, core.TlsConfig):
                conn.client.start_tls(tls, config.tls_server_hostname)
            await conn._setup(tls)
        except BaseException:
            conn.abort("set-up failed")
            raise
        conn._arm_watchdog()
        return conn

    async def _setup(self, tls: core.TlsConfig | ssl.SSLContext | None) -> None:
        config = self.config
        ready = await self._expect(core.Ready, config.greeting_timeout_s, "greeting and EHLO")
        self.capabilities = ready.capabilities
        if config.tls in ("starttls", "opportunistic"):
            assert tls is not None
            if ready.capabilities.starttls:
                self.client.starttls()
                await self._expect(core.StartTlsReady, config.reply_timeout_s, "STARTTLS")
                if isinstance(tls, core.TlsConfig):
                    # The handshake runs through feed(); EHLO follows it in the core.
                    self.client.start_tls(tls, config.tls_server_hostname)
                    what = "the TLS handshake and EHLO"
                else:
                    await self._start_tls(tls)
                    self.client.tls_established()
                    what = "EHLO after TLS"
                ready = await self._expect(core.Ready, config.reply_timeout_s, what)
                self.capabilities = ready.capabilities
            elif config.tls == "starttls":
                raise TLSRequiredError(
                    f"{config.host}:{config.port} does not offer STARTTLS, which tls='starttls'"
                    " requires (use tls='opportunistic' to allow plaintext)"
                )
        if config.username:
            await self._authenticate()

    async def _start_tls(self, ctx: ssl.SSLContext) -> None:
        """STARTTLS on Python's ssl path (a context that does not map onto the core's)."""
        assert self.transport is not None
        try:
            transport = await asyncio.wait_for(
                self._loop.start_tls(
                    self.transport,
                    self,
                    ctx,
                    server_hostname=self.config.tls_server_hostname,
                    ssl_handshake_timeout=self.config.reply_timeout_s,
                ),
                self.config.reply_timeout_s,
            )
        except TimeoutError:
            raise SMTPTimeoutError("timed out during the TLS handshake") from None
        if transport is None:
            raise SMTPConnectionError("connection closed during the TLS handshake")
        self.transport = transport

    async def _authenticate(self) -> None:
        config = self.config
        caps = self.capabilities
        assert caps is not None and config.username is not None
        tls_active = self.client.tls_active or config.tls == "implicit"
        if not tls_active and not config.allow_plaintext_auth:
            raise TLSRequiredError(
                "refusing to send credentials over a plaintext connection "
                "(use TLS, or allow_plaintext_auth=True if you really mean it)"
            )
        oauth2 = config.oauth2_token is not None
        mechanism = choose_auth_mechanism(caps.auth, oauth2=oauth2)
        secret = config.oauth2_token if oauth2 else config.password
        self.client.auth(
            mechanism,
            config.username,
            secret.reveal() if secret is not None else "",  # revealed here only
            allow_plaintext=tls_active or config.allow_plaintext_auth,
        )
        await self._expect(core.AuthSucceeded, config.reply_timeout_s, f"AUTH {mechanism}")

    # -- transactions -------------------------------------------------------------------

    def room(self) -> int:
        """How many more transactions the window takes now (0 when the bytes in flight
        are at their limit or the transport paused writing)."""
        client = self.client
        if self.closed or self._paused or client.bytes_in_flight >= self.config.window_bytes:
            return 0
        return max(0, self.window - client.in_flight)

    async def wait_capacity(self) -> None:
        """Wait until the window has room (refilled at half) and the transport writes."""
        while not self.closed and self.room() <= 0:
            self._awaiting_capacity = True
            self._capacity.clear()
            await self._capacity.wait()

    async def wait_settled(self) -> None:
        """Wait until no transaction awaits replies (or the connection is closed); the
        watchdog bounds the wait by aborting a connection whose replies are late."""
        if self.client.in_flight and not self.closed:
            self._awaiting_settled = True
            self._settled.clear()
        await self._settled.wait()

    def idle_for(self) -> float:
        """Seconds since the last byte from the server, when nothing is in flight."""
        client = self.client
        return 0.0 if client.in_flight else client.idle_for

    async def check_alive(self) -> bool:
        """NOOP and wait for its reply: False (and the connection closed) when it does not
        come or is not 2xx."""
        try:
            self.client.noop()
            noop = await self._expect(core.NoopReplied, self.config.reply_timeout_s, "NOOP")
        except (FastSMTPError, ConnectionError):
            self.abort("no reply to NOOP")
            return False
        if noop.reply.code >= 400:
            self.abort(f"NOOP refused: {noop.reply.code} {noop.reply.text}")
            return False
        return True

    def submitted_now(self, count: int) -> None:
        """``count`` transactions were handed to the core: write them."""
        self.submitted += count
        self._flush()

    def _flush(self) -> None:
        """Write what the core framed, as much as the transport takes (a large body comes
        a piece at a time; the rest waits for resume_writing)."""
        transport = self.transport
        # Called from tasks too: the transport may have closed itself since the last
        # callback (a write error), so ask it as well.
        if transport is None or not self._writable or transport.is_closing():
            return
        client = self.client
        while client.has_data_to_send and not self._paused:
            transport.write(client.data_to_send())

    @property
    def in_flight(self) -> int:
        return self.client.in_flight

    @property
    def bytes_sent(self) -> int:
        """Octets handed to the transport."""
        return self.client.bytes_sent

    # -- shutdown and timeouts ------------------------------------------------------------

    def _arm_watchdog(self) -> None:
        period = max(self.config.reply_timeout_s / 8, 0.02)
        self._watchdog = self._loop.call_later(period, self._check_deadline)

    def _check_deadline(self) -> None:
        if self.closed:
            return
        oldest = self.client.oldest_unanswered
        limit = self.config.reply_timeout_s
        if oldest is not None and oldest[1] > limit:
            self.abort(f"timed out after {limit:g}s waiting for the reply to {oldest[0]}")
            return
        self._arm_watchdog()

    def abort(self, reason: str) -> None:
        """Drop the connection now; in-flight work is reported aborted with ``reason``."""
        if self.closed:
            return
        self.close_reason = reason
        self._end(self.client.abort(reason), reason)
        if self.transport is not None:
            self.transport.abort()

    async def quit(self) -> None:
        """QUIT politely once in-flight work is done, then close and wait for the socket to
        be closed."""
        if not self.closed:
            with contextlib.suppress(FastSMTPError):
                self.client.quit()
                self._flush()
            try:
                await asyncio.wait_for(
                    asyncio.shield(self._closed_waiter), self.config.reply_timeout_s
                )
            except TimeoutError:
                self.abort("no reply to QUIT")
        if self.transport is None:
            return
        if self._writable and not self.transport.is_closing():
            notify = self.client.close_tls()  # TLS in the core: close_notify first
            if notify:
                self.transport.write(notify)
        self.transport.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._lost), CLOSE_TIMEOUT)
        except TimeoutError:
            self.transport.abort()

    def __repr__(self) -> str:
        return f"<fastsmtp Connection {self.config.host}:{self.config.port}>"
