"""One SMTP connection: the asyncio Protocol that moves bytes between a socket and the
Rust sans-IO ClientConnection, plus the set-up dance (greeting, STARTTLS, AUTH).

The Rust core decides every byte; this module only writes what it returns, feeds it what
the server sends, and hands finished transactions to the pool. There is no per-message
Future: outcomes are delivered by a plain callback from ``data_received``, because at
tens of thousands of messages a second a Future per message is measurable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
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
    TLSRequiredError,
)
from fastsmtp._jobs import Job, Run

log = logging.getLogger("fastsmtp")

CLOSE_TIMEOUT = 5.0
"""Seconds quit() waits for the socket to close (e.g. a TLS close_notify) before aborting."""

Settled = Callable[["Connection", Any], None]
"""Called with (connection, TransactionResult | TransactionAborted); the event's ``tag``
is the Job, or the Run with the message's ``index``."""

_ACCEPTED = core.Accepted
_RESULT = core.TransactionResult
_ABORTED = core.TransactionAborted
_HANDSHAKE_EVENTS = (
    core.Ready,
    core.StartTlsReady,
    core.AuthSucceeded,
    core.AuthFailed,
    core.CommandFailed,
    core.NoopReplied,
)


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

    def __init__(self, config: EngineConfig, on_settled: Settled) -> None:
        self.config = config
        self.on_settled = on_settled
        self.core = core.ClientConnection(config.ehlo_name)
        self.transport: asyncio.Transport | None = None
        self.submitted = 0
        self.closed = False
        self.close_reason = ""
        self.capabilities: core.Capabilities | None = None
        self._writable = False  # a transport that takes writes (not closing or lost)
        self._handshake: asyncio.Future[Any] | None = None
        self._early_events: list[Any] = []
        self._loop = asyncio.get_running_loop()
        self._closed_waiter: asyncio.Future[None] = self._loop.create_future()
        # Set by connection_lost: the socket is really closed (a TLS transport takes a few
        # loop turns after close()); quit() waits for it so a loop stopped right after
        # Engine.close() leaks no transport.
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._capacity = asyncio.Event()
        self._capacity.set()
        self._capacity_cleared = False  # _capacity.is_set() without a method call per event
        self._last_activity = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self.window = config.window
        self._abort_charged = False
        self._nothing_in_flight = asyncio.Event()  # set while no transaction awaits replies
        self._nothing_in_flight.set()

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check.
        self.transport = cast(asyncio.Transport, transport)
        self._writable = True
        self._touch()

    def data_received(self, data: bytes) -> None:
        """Feed the core and act on what it says; ``b""`` tells it the connection ended
        (asyncio itself never passes empty data).

        The hot path: one Python frame per read (the event handling is inline)."""
        self._last_activity = self._loop.time()  # _touch(), inlined
        client = self.core
        events = client.receive_data(data)
        out = client.data_to_send()
        if out and self._writable:
            self.transport.write(out)  # type: ignore[union-attr]  # set when writable
        if not events:
            return
        for event in events:
            kind = type(event)  # exact classes: cheaper than isinstance, once per event
            if kind is _ACCEPTED:
                event()  # type: ignore[operator]  # on_accepted(recipients)
            elif kind is _RESULT or kind is _ABORTED:
                self.on_settled(self, event)
            elif isinstance(event, core.Closed):
                self.close_reason = event.reason
                if event.error is not None:
                    log.warning("%s: %s", self, event.error)
                self._mark_closed(event.reason)
                if self.transport is not None:
                    self.transport.close()
            elif isinstance(event, _HANDSHAKE_EVENTS):
                if self._handshake is not None and not self._handshake.done():
                    self._handshake.set_result(event)
                else:
                    # The greeting and the EHLO reply can both arrive before _setup() waits
                    # for them (a busy loop between connection_made and _expect): keep it.
                    self._early_events.append(event)
        in_flight = client.in_flight
        if not in_flight:
            self._nothing_in_flight.set()
        if (
            self._capacity_cleared
            and in_flight <= self.window // 2
            and client.bytes_in_flight <= self.config.window_bytes // 2
        ):
            # A full window is refilled once half of it has drained, not one slot at a
            # time: each worker wake-up then submits a large group.
            self._capacity_cleared = False
            self._capacity.set()

    def eof_received(self) -> bool | None:
        if not self.core.is_closed:
            self.data_received(b"")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._writable = False
        if not self._lost.done():
            self._lost.set_result(None)
        if not self.core.is_closed:
            self.data_received(b"")
        self._mark_closed(self.close_reason or f"connection lost: {exc or 'closed by peer'}")

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    # -- events -------------------------------------------------------------------------

    def _mark_closed(self, reason: str) -> None:
        self._writable = False
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self._capacity_cleared = False
        self._capacity.set()  # wake a waiting worker so it sees the close
        self._can_write.set()
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(SMTPConnectionError(f"connection closed: {reason}"))
        if not self._closed_waiter.done():
            self._closed_waiter.set_result(None)
        self._nothing_in_flight.set()
        if self._watchdog is not None:
            self._watchdog.cancel()

    def charge_abort(self) -> bool:
        """True for the first transaction aborted on this connection, False afterwards.

        Replies come in order, so when a connection breaks only the first unfinished
        transaction was being worked on; the ones queued behind it never got the server's
        attention, and retrying them should not use up one of their attempts.
        """
        first = not self._abort_charged
        self._abort_charged = True
        return first

    def _touch(self) -> None:
        self._last_activity = self._loop.time()

    # -- set-up -------------------------------------------------------------------------

    async def _expect(self, wanted: type[Any], limit: float, what: str) -> Any:
        loop = asyncio.get_running_loop()
        self._flush()
        if self._early_events:
            event = self._early_events.pop(0)
        elif self.closed:
            raise SMTPConnectionError(f"connection closed: {self.close_reason}")
        else:
            self._handshake = loop.create_future()
            try:
                event = await asyncio.wait_for(self._handshake, limit)
            except TimeoutError:
                self.abort(f"timed out waiting for {what}")
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
    async def open(cls, config: EngineConfig, on_settled: Settled) -> Connection:
        """Connect, read the greeting, EHLO, STARTTLS and AUTH as configured.

        Raises SMTPConnectionError, SMTPTimeoutError, SMTPReplyError, TLSRequiredError,
        AuthenticationError or ssl.SSLError; the socket is closed on any failure.
        """
        loop = asyncio.get_running_loop()
        conn = cls(config, on_settled)
        ctx: ssl.SSLContext | None = None
        if config.tls != "none":
            ctx = config.make_ssl_context()
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: conn,
                    config.host,
                    config.port,
                    ssl=ctx if config.tls == "implicit" else None,
                    server_hostname=config.tls_server_hostname
                    if config.tls == "implicit"
                    else None,
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
            await conn._setup(ctx)
        except BaseException:
            conn.abort("set-up failed")
            raise
        conn._arm_watchdog()
        return conn

    async def _setup(self, ctx: ssl.SSLContext | None) -> None:
        config = self.config
        ready = await self._expect(core.Ready, config.greeting_timeout_s, "greeting and EHLO")
        self.capabilities = ready.capabilities
        if config.tls in ("starttls", "opportunistic"):
            assert ctx is not None
            if ready.capabilities.starttls:
                self.core.starttls()
                await self._expect(core.StartTlsReady, config.reply_timeout_s, "STARTTLS")
                await self._start_tls(ctx)
                self.core.tls_established()
                ready = await self._expect(core.Ready, config.reply_timeout_s, "EHLO after TLS")
                self.capabilities = ready.capabilities
            elif config.tls == "starttls":
                raise TLSRequiredError(
                    f"{config.host}:{config.port} does not offer STARTTLS, which tls='starttls'"
                    " requires (use tls='opportunistic' to allow plaintext)"
                )
        if config.username:
            await self._authenticate()
        if self.capabilities.chunking:
            # Every BDAT LAST goes out at once, so each transaction in flight is a message
            # the server may have taken without our knowing if the connection breaks.
            self.window = min(config.window, config.data_window)

    async def _start_tls(self, ctx: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        assert self.transport is not None
        try:
            transport = await asyncio.wait_for(
                loop.start_tls(
                    self.transport, self, ctx, server_hostname=self.config.tls_server_hostname
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
        tls_active = self.core.tls_active or config.tls == "implicit"
        if not tls_active and not config.allow_plaintext_auth:
            raise TLSRequiredError(
                "refusing to send credentials over a plaintext connection "
                "(use TLS, or allow_plaintext_auth=True if you really mean it)"
            )
        oauth2 = config.oauth2_token is not None
        mechanism = choose_auth_mechanism(caps.auth, oauth2=oauth2)
        secret = config.oauth2_token if oauth2 else config.password
        self.core.auth(
            mechanism,
            config.username,
            secret or "",
            allow_plaintext=tls_active or config.allow_plaintext_auth,
        )
        await self._expect(core.AuthSucceeded, config.reply_timeout_s, f"AUTH {mechanism}")

    # -- transactions -------------------------------------------------------------------

    def _has_capacity(self) -> bool:
        return (
            self.core.in_flight < self.window
            and self.core.bytes_in_flight < self.config.window_bytes
        )

    async def wait_capacity(self) -> None:
        """Wait until the window has room and the transport takes more writes."""
        while not self.closed and not self._has_capacity():
            self._capacity_cleared = True
            self._capacity.clear()
            await self._capacity.wait()
        if not self._can_write.is_set():
            await self._can_write.wait()

    async def wait_settled(self) -> None:
        """Wait until no transaction awaits replies (or the connection is closed); the
        watchdog bounds the wait by aborting a connection whose replies stop coming."""
        await self._nothing_in_flight.wait()

    def idle_for(self) -> float:
        """Seconds since the last byte from the server, when nothing is in flight."""
        return 0.0 if self.core.in_flight else self._loop.time() - self._last_activity

    async def check_alive(self) -> bool:
        """NOOP and wait for its reply: False (and the connection closed) when it does not
        come or is not 2xx."""
        try:
            self.core.noop()
            noop = await self._expect(core.NoopReplied, self.config.reply_timeout_s, "NOOP")
        except (FastSMTPError, ConnectionError):
            self.abort("no reply to NOOP")
            return False
        if noop.reply.code >= 400:
            self.abort(f"NOOP refused: {noop.reply.code} {noop.reply.text}")
            return False
        return True

    def room(self) -> int:
        """How many more transactions the window takes now (by count and bytes, roughly)."""
        if self.closed:
            return 0
        return max(0, self.window - self.core.in_flight) if self._has_capacity() else 0

    def submit_from(
        self, queue: deque[Job | Run], count: int
    ) -> tuple[int, list[tuple[Job, Exception]]]:
        """Take up to ``count`` messages from the front of ``queue`` and queue their
        transactions (call flush() after); a Run is taken in slices, one core call each,
        and left at the front until its last message is taken. Returns how many messages
        were taken, and the jobs the core refused (InvalidMessage, SMTPUTF8Required, ...)
        with the exception, in order.

        A message comes back as the ``tag`` (a Job, or its Run and ``index``) of its
        TransactionResult or TransactionAborted, or, when it has ``on_accepted`` and every
        recipient was accepted, only as a count in an Accepted event."""
        client = self.core
        refused: list[tuple[Job, Exception]] = []
        taken = 0
        # Closed while the caller waited (e.g. for the rate limit): the jobs stay queued.
        while not self.closed and taken < count and queue:
            item = queue[0]
            if type(item) is Run:
                start = item.next
                n = min(count - taken, len(item.messages) - start)
                for position, error in client.submit_run(
                    item, item.messages, start, n, item.on_accepted
                ):
                    refused.append((item.job(position), error))
                item.next = start + n
                if item.next == len(item.messages):
                    queue.popleft()
                taken += n
                continue
            job = queue.popleft()
            assert type(job) is Job
            taken += 1
            job.attempts += 1
            try:
                if job.explicit_envelope:
                    message = job.message
                    client.submit(
                        job,
                        None,
                        job.on_accepted,
                        sender=message.envelope_sender,
                        recipients=job.recipients,
                        body=message.as_bytes(),
                    )
                else:
                    client.submit(job, job.message, job.on_accepted)  # type: ignore[arg-type]
            except Exception as e:  # the caller gives the job its one result
                refused.append((job, e))
        self.submitted += taken - len(refused)
        return taken, refused

    def flush(self) -> None:
        """Write what the submits since the last flush framed."""
        if self.core.in_flight:
            self._nothing_in_flight.clear()
        self._flush()

    def _flush(self) -> None:
        out = self.core.data_to_send()
        # Called from tasks (not from the transport's callbacks): the transport may have
        # closed itself since the last callback (a write error), so ask it too.
        if out and self._writable and not self.transport.is_closing():  # type: ignore[union-attr]
            self.transport.write(out)  # type: ignore[union-attr]  # set when writable

    @property
    def in_flight(self) -> int:
        return self.core.in_flight

    @property
    def bytes_sent(self) -> int:
        """Octets the core framed for the server (all written, unless the connection was
        closing when they were framed)."""
        return self.core.bytes_sent

    # -- shutdown and timeouts ------------------------------------------------------------

    def _arm_watchdog(self) -> None:
        loop = asyncio.get_running_loop()
        period = max(self.config.reply_timeout_s / 4, 0.05)
        self._watchdog = loop.call_later(period, self._check_timeout)

    def _check_timeout(self) -> None:
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        if self.core.in_flight and loop.time() - self._last_activity > self.config.reply_timeout_s:
            self.abort(f"no reply within {self.config.reply_timeout_s:g}s")
            return
        self._arm_watchdog()

    def abort(self, reason: str) -> None:
        """Drop the connection now; in-flight work is reported aborted by the core."""
        if self.closed:
            return
        self.close_reason = reason
        self._writable = False
        if not self.core.is_closed:
            self.data_received(b"")  # EOF to the core
        self._mark_closed(reason)
        if self.transport is not None:
            self.transport.abort()

    async def quit(self) -> None:
        """QUIT politely once in-flight work is done, then close and wait for the socket to
        be closed."""
        if not self.closed:
            with contextlib.suppress(FastSMTPError):
                self.core.quit()
                self._flush()
            try:
                await asyncio.wait_for(
                    asyncio.shield(self._closed_waiter), self.config.reply_timeout_s
                )
            except TimeoutError:
                self.abort("no reply to QUIT")
        if self.transport is None:
            return
        self.transport.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._lost), CLOSE_TIMEOUT)
        except TimeoutError:
            self.transport.abort()

    def __repr__(self) -> str:
        return f"<fastsmtp Connection {self.config.host}:{self.config.port}>"
