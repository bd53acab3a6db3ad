"""The public asyncio API: ``Engine.send`` and ``Engine.send_batch``.

The engine turns messages into jobs (built or rendered in Rust), feeds them to the pool and
collects exactly one Result per recipient. ``send_batch`` reads recipients lazily in chunks:
each chunk is rendered in Rust with the GIL released (in a worker thread, so rendering
overlaps the socket work on the event loop), and the producer waits whenever the queue is
full, so a million recipients need bounded memory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import sys
import time
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable, Sequence
from copy import deepcopy as copy_message
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import getaddresses
from itertools import islice
from typing import Any, TypeVar

from fastsmtp import _fastsmtp as core
from fastsmtp._batch import Batch, OnResult, Tally
from fastsmtp._config import EngineConfig, TLSMode
from fastsmtp._errors import InvalidMessage, TemplateError
from fastsmtp._lot import Lot
from fastsmtp._models import BatchReport, Message, Recipient, Result
from fastsmtp._pool import Pool
from fastsmtp._secret import Secret
from fastsmtp._sends import SendGatherer
from fastsmtp._stats import Stats

log = logging.getLogger("fastsmtp")

RecipientLike = Recipient | str | dict[str, Any]
T = TypeVar("T")

RENDER_IN_THREAD_MIN = 64 if (os.cpu_count() or 1) > 2 else sys.maxsize
"""Chunks at least this large are rendered in a worker thread (the GIL is released there);
smaller ones are not worth the hand-off. On two cores or fewer everything is rendered on
the event loop's thread, where the hand-offs cost more than the overlap gains (see
benches/RESULTS.md)."""


def _recipient_tuple(item: RecipientLike) -> tuple[str, str | None, dict[str, Any] | None]:
    if isinstance(item, str):
        return (item, None, None)
    if isinstance(item, Recipient):
        return (item.address, item.name, item.data)
    if isinstance(item, dict):
        address = item.get("address")
        name = item.get("name")
        if isinstance(address, str) and (name is None or isinstance(name, str)):
            # The common shape: hand the dict over as the data, uncopied. Its "address" and
            # "name" keys render exactly as the separate arguments would (same values).
            return (address, name, item)
        data = dict(item)
        address = data.pop("address", None) or data.pop("email", None)
        if not isinstance(address, str):
            return ("", None, data)  # rendered as a failed result naming the address
        name = data.pop("name", None)
        return (address, name if isinstance(name, str) else None, data)
    raise TypeError(f"a recipient must be a Recipient, str or dict, not {type(item).__name__}")


class Engine:
    """An SMTP sending engine for one server, with a pool of persistent connections.

    Use it as an async context manager; ``close()`` waits for in-flight work and QUITs.
    Defaults are safe: ``tls="starttls"`` is required STARTTLS with verified certificates,
    and credentials never travel over plaintext unless ``allow_plaintext_auth=True``. An
    engine belongs to the event loop it is first used on (``SyncEngine`` serves threads).

    Parameters:
        host, port: the server (port 25 by default; 587 for submission, 465 implicit TLS).
        tls: ``"starttls"`` (required, verified), ``"implicit"`` (TLS from the first byte),
            ``"opportunistic"`` (STARTTLS when offered; a certificate that fails
            verification is still an error), ``"none"`` (plaintext).
        ssl_context: the context for TLS (default: ``ssl.create_default_context()``).
        server_hostname: the name the certificate must carry (default: ``host``).
        username, password: AUTH PLAIN/LOGIN/CRAM-MD5 credentials; ``oauth2_token``
            instead of ``password`` for XOAUTH2. Never sent without TLS unless
            ``allow_plaintext_auth=True``. Never shown in a repr or log.
        connections: connections in the pool (8).
        max_messages_per_connection: a connection is replaced after this many (1000).
        timeout: one knob for the three below (30 s). ``connect_timeout``: connecting
            (and an implicit-TLS handshake); ``greeting_timeout``: greeting and EHLO;
            ``reply_timeout``: each reply must be complete within this time of the
            moment its command was sent (bytes trickling in do not extend it).
        max_attempts: tries per recipient for 4xx replies and broken connections (3);
            ``retry_base_delay``/``retry_max_delay``: exponential backoff with jitter
            (1 s, 60 s).
        rate_limit: messages per second over all connections (None: unlimited);
            ``rate_burst``: how many may go at once on top (default: 1/20 s worth).
        local_hostname: the EHLO name (default: this host's name).
        window: transactions in flight per connection (64); ``window_bytes``: message
            octets in flight per connection (8 MiB).
        data_window: with CHUNKING, ``BDAT LAST`` commands unanswered at once (1: at most
            one message in doubt when a connection breaks; see the README).
        idle_timeout: an idle connection is closed after this long (30 s).
        health_check_after: a connection unused for longer is checked with NOOP before it
            gets work (5 s; None: never).
        dkim: a ``DKIMSigner``: every message is signed.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 25,
        *,
        tls: TLSMode = "starttls",
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        username: str | None = None,
        password: str | None = None,
        oauth2_token: str | None = None,
        allow_plaintext_auth: bool = False,
        connections: int = 8,
        max_messages_per_connection: int = 1000,
        timeout: float = 30.0,
        connect_timeout: float | None = None,
        greeting_timeout: float | None = None,
        reply_timeout: float | None = None,
        max_attempts: int = 3,
        retry_base_delay: float = 1.0,
        retry_max_delay: float = 60.0,
        rate_limit: float | None = None,
        rate_burst: int | None = None,
        local_hostname: str | None = None,
        window: int = 64,
        window_bytes: int = 8 * 1024 * 1024,
        data_window: int = 1,
        idle_timeout: float = 30.0,
        health_check_after: float | None = 5.0,
        dkim: core.DKIMSigner | None = None,
    ) -> None:
        options = dict(locals())
        del options["self"]
        options["password"] = Secret.wrap(password)
        options["oauth2_token"] = Secret.wrap(oauth2_token)
        password = oauth2_token = None  # no credential left in this frame's locals
        self.config = EngineConfig(**options)
        self.stats = Stats()
        self._tally = Tally(self.stats)
        self._pool: Pool | None = None
        self._sends: SendGatherer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        config: EngineConfig | None = getattr(self, "config", None)  # None inside __init__
        if config is None:
            return "<fastsmtp.Engine (not configured)>"
        return f"<fastsmtp.Engine {config.host}:{config.port} tls={config.tls}>"

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        self._ensure_pool()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _ensure_pool(self) -> Pool:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None and not self._loop.is_closed():
                raise RuntimeError(
                    "this fastsmtp.Engine belongs to another event loop (the one it was "
                    "first used on): use one Engine per loop, or fastsmtp.SyncEngine from "
                    "threads"
                )
            self._loop, self._pool = loop, None
            self._tally = Tally(self.stats)
        if self._pool is None:
            self._pool = Pool(self.config, self.stats)
            self._sends = SendGatherer(self._pool, self._tally)
        return self._pool

    async def close(self) -> None:
        """Wait until every submitted recipient has its result, then close connections."""
        if self._pool is None:
            return
        await self.drain()
        pool, self._pool = self._pool, None
        await pool.close()

    async def drain(self) -> None:
        """Wait until every recipient handed to the engine has its final result."""
        await self._tally.wait_idle()

    # -- sending ------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open a connection now and keep it in the pool (sends start without set-up).

        Raises what connecting raises (``SMTPConnectionError``, ``SMTPTimeoutError``,
        ``TLSRequiredError``, ``AuthenticationError``, ``SMTPReplyError``), so a wrong host,
        port, certificate or password is one clear error before any message is handed over.
        """
        await self._ensure_pool().connect()

    def cancel_pending(self, reason: str = "cancelled before it was sent") -> int:
        """Give every recipient not yet handed to a server (queued, or waiting for a retry)
        a ``failed`` Result with ``text=reason`` now, and return how many there were.
        Messages already on a connection finish normally; nothing is sent twice."""
        return self._pool.cancel_pending(reason) if self._pool is not None else 0

    async def send(self, message: Message | EmailMessage) -> list[Result]:
        """Send one message; returns one Result per envelope recipient (to, cc, bcc).

        ``message`` is a ``fastsmtp.Message``, or a stdlib ``email.message.EmailMessage``
        sent as it is to the envelope aiosmtplib would use (MAIL FROM: Sender, else From;
        RCPT TO: To, Cc and Bcc; the Bcc header is not sent). Raises InvalidMessage before
        anything is sent when the message is malformed.
        """
        if isinstance(message, EmailMessage):
            sender, recipients, data = _stdlib_envelope(message)
            return await self.send_raw(sender, recipients, data)
        built = core.build_message(message.to_spec())
        if not built.recipient_count:
            raise InvalidMessage("the message has no recipients (to, cc or bcc)", field="to")
        if self.config.dkim is not None:
            built = self.config.dkim.sign(built, int(time.time()))
        return await self._send_one(built)

    async def send_raw(
        self,
        sender: str,
        recipients: Sequence[str],
        data: bytes,
        *,
        message_id: str | None = None,
    ) -> list[Result]:
        """Send a message you assembled yourself (RFC 5322 bytes) to an explicit envelope:
        ``sender`` is the MAIL FROM path ("" for a null sender), ``recipients`` the RCPT TO
        addresses. Returns one Result per recipient.

        The bytes go out as given, except that a bare CR or LF becomes CRLF (so nothing
        malformed reaches DATA) and dot-stuffing or BDAT framing is applied. Raises
        InvalidMessage before anything is sent for a malformed envelope.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidMessage("data must be bytes", field="data")
        if isinstance(recipients, str):
            raise InvalidMessage("recipients must be a list of addresses", field="recipients")
        addresses = list(recipients)
        if not addresses:
            raise InvalidMessage("send_raw needs at least one recipient", field="recipients")
        for field, address in [("sender", sender), *(("recipients", a) for a in addresses)]:
            if not isinstance(address, str):
                raise InvalidMessage(
                    f"{field}: an address must be a str, not {type(address).__name__}",
                    field=field,
                )
        raw = bytes(data)
        if self.config.dkim is not None:
            raw = self.config.dkim.sign_bytes(raw, int(time.time()))
        # Validates the envelope (no byte of it can break a command) and makes every line
        # end CRLF, before anything is queued.
        message = core.RawMessage(sender, addresses, raw, message_id)
        return await self._send_one(message)

    async def _send_one(self, message: core.BuiltMessage | core.RawMessage) -> list[Result]:
        """Queue ``message`` with the other single sends of this loop iteration (one lot,
        pipelined together) and wait for its results. Cancelling the wait does not take
        the message back: it goes out, and its results are counted in ``stats``."""
        sends = self._sends
        if sends is None or self._pool is None:
            self._ensure_pool()
            sends = self._sends
            assert sends is not None
        return await sends.send(message)

    async def send_batch(
        self,
        template: Message,
        recipients: Iterable[RecipientLike] | AsyncIterable[RecipientLike],
        *,
        data: dict[str, Any] | None = None,
        on_result: OnResult | None = None,
        chunk_size: int = 64,
        max_queued: int | None = None,
    ) -> BatchReport:
        """Send one personalized message per recipient, rendered from ``template``.

        ``on_result`` (sync or async) is called exactly once per recipient. A template
        variable that no recipient and no batch ``data`` provides raises TemplateError
        before anything is sent (checked over the whole list for a Sequence, over the
        first chunk for an iterator); a recipient that lacks a variable others have gets a
        ``failed`` Result naming it.

        Cancelling the task awaiting it stops the batch: what is not yet written gets a
        ``failed`` result ("cancelled"), what is on the wire finishes, then
        ``CancelledError`` is raised. If ``on_result`` raises something that is not an
        ``Exception`` (KeyboardInterrupt, SystemExit), the batch stops the same way and
        that exception is raised.
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
        if template.to or template.cc or template.bcc:
            raise InvalidMessage(
                "a batch template must not have to/cc/bcc: each recipient becomes the To",
                field="to",
            )
        compiled = core.Template(template.to_spec(), data)
        missing_for_all = _missing_everywhere(compiled, recipients)
        if missing_for_all:
            raise TemplateError(
                f"template variable {missing_for_all!r} is undefined for every recipient",
                variable=missing_for_all,
            )
        pool = self._ensure_pool()
        batch = Batch(self._tally, on_result)
        loop = asyncio.get_running_loop()

        def stop(reason: str) -> None:
            # From a callback inside a read: drop the queued work on the next loop turn.
            loop.call_soon(pool.cancel_batch, batch, reason)

        batch.on_stop = stop
        started = time.perf_counter()
        limit = max_queued or max(4 * chunk_size, self.config.connections * self.config.window)
        try:
            await self._produce(compiled, recipients, chunk_size, limit, pool, batch)
            await batch.wait()
        except asyncio.CancelledError:
            batch.on_stop = None
            batch.stop("cancelled before it was sent")
            pool.cancel_batch(batch, "cancelled before it was sent")
            await batch.wait()
            raise
        if batch.failure is not None:
            raise batch.failure
        batch.report.elapsed = time.perf_counter() - started
        return batch.report

    async def _produce(
        self,
        compiled: core.Template,
        recipients: Iterable[RecipientLike] | AsyncIterable[RecipientLike],
        chunk_size: int,
        limit: int,
        pool: Pool,
        batch: Batch,
    ) -> None:
        """Render ``recipients`` a chunk at a time and queue the messages, waiting while
        ``limit`` recipients are outstanding."""
        loop = asyncio.get_running_loop()
        index = 0
        # A list was checked whole before; an iterator is judged by its first chunk.
        checked = isinstance(recipients, Sequence)
        async for chunk in _chunks(recipients, chunk_size):
            if batch.cancelled is not None:
                break
            # Plain addresses and the usual dicts are read in Rust; anything else goes
            # through _recipient_tuple (no Python call per recipient on the common path).
            if len(chunk) >= RENDER_IN_THREAD_MIN:
                render = compiled.render_split
                messages, failures = await loop.run_in_executor(
                    None, render, chunk, _recipient_tuple
                )
            else:
                messages, failures = compiled.render_split(chunk, _recipient_tuple)
            if not checked:
                checked = True
                _raise_if_all_failed(messages, failures)
            if self.config.dkim is not None:
                # RSA signatures cost ~1 ms each: off the event loop, GIL released.
                sign = self.config.dkim.sign_all
                signed = await loop.run_in_executor(None, sign, messages, int(time.time()))
                messages, failures = _split_signed(signed, failures, len(chunk))
            batch.expect(len(chunk))
            for lot in _lots(batch, messages, failures, index, len(chunk)):
                pool.put(lot)
            for position, error in failures:
                address = _recipient_tuple(chunk[position])[0]
                batch.finish(
                    Result(
                        recipient=address, status="failed", text=str(error), index=index + position
                    )
                )
            index += len(chunk)
            await batch.wait_room(limit)

    # -- sync conveniences ----------------------------------------------------------------

    def run(self, coro_fn: Callable[[Engine], Coroutine[Any, Any, T]]) -> T:
        """Run ``coro_fn(engine)`` inside the engine on a fresh event loop (uvloop when
        installed) and close the engine afterwards. For scripts."""

        async def main() -> T:
            async with self:
                return await coro_fn(self)

        return run(main())


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.run(coro)
    return uvloop.run(coro)


def send_batch_sync(
    template: Message,
    recipients: Iterable[RecipientLike],
    *,
    data: dict[str, Any] | None = None,
    on_result: OnResult | None = None,
    **engine_options: Any,
) -> BatchReport:
    """Blocking ``send_batch`` for scripts: ``Engine(**engine_options)`` on a fresh loop."""
    engine = Engine(**engine_options)
    return engine.run(lambda e: e.send_batch(template, recipients, data=data, on_result=on_result))


async def _chunks(items: Iterable[T] | AsyncIterable[T], size: int) -> AsyncIterable[list[T]]:
    chunk: list[T] = []
    if isinstance(items, AsyncIterable):
        async for item in items:
            chunk.append(item)
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk
        return
    # islice fills each chunk in C: no Python bytecode per recipient.
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _missing_everywhere(compiled: core.Template, recipients: object) -> str | None:
    """A variable every recipient must provide (``Template.recipient_variables``) that no
    recipient of a list has."""
    needed = set(compiled.recipient_variables)
    if not needed or not isinstance(recipients, Sequence) or isinstance(recipients, str):
        return None
    for item in recipients:
        if isinstance(item, Recipient):
            needed -= item.data.keys()
        elif isinstance(item, dict):
            needed -= item.keys()
        if not needed:
            return None
    return sorted(needed)[0]


def _lots(
    batch: Batch,
    messages: list[core.BuiltMessage],
    failures: list[tuple[int, Exception]],
    first: int,
    size: int,
) -> list[Lot]:
    """Lots for a rendered chunk of ``size`` recipients starting at batch index ``first``:
    one lot, or one per run of consecutive messages when some recipients failed."""
    if not failures:
        return [Lot(batch, messages, first)] if messages else []
    failed = {position for position, _ in failures}
    lots: list[Lot] = []
    run: list[core.BuiltMessage] = []
    run_start = 0
    rendered = iter(messages)
    for position in range(size):
        if position in failed:
            if run:
                lots.append(Lot(batch, run, first + run_start))
                run = []
            continue
        if not run:
            run_start = position
        run.append(next(rendered))
    if run:
        lots.append(Lot(batch, run, first + run_start))
    return lots


def _stdlib_envelope(message: EmailMessage) -> tuple[str, list[str], bytes]:
    """MAIL FROM, RCPT TO and the bytes of a stdlib message, as aiosmtplib derives them:
    the sender from Sender, else From; recipients from To, Cc and Bcc; Bcc not sent."""
    senders = getaddresses(message.get_all("Sender", []) or message.get_all("From", []))
    if len(senders) != 1:
        raise InvalidMessage(
            "a stdlib message needs exactly one Sender or From address", field="from"
        )
    recipients = [
        address
        for _, address in getaddresses(
            [*message.get_all("To", []), *message.get_all("Cc", []), *message.get_all("Bcc", [])]
        )
        if address
    ]
    copy = copy_message(message)
    del copy["Bcc"]
    return senders[0][1], recipients, copy.as_bytes(policy=SMTP_POLICY)


def _raise_if_all_failed(
    messages: list[core.BuiltMessage], failures: list[tuple[int, Exception]]
) -> None:
    """For iterators: when every recipient of the first chunk lacks the same variable, the
    template is wrong, not the data; say so before anything is sent."""
    if messages or not failures:
        return
    variables = {getattr(e, "variable", None) for _, e in failures}
    first = failures[0][1]
    if len(variables) == 1 and None not in variables and isinstance(first, TemplateError):
        raise first


def _split_signed(
    signed: list[core.BuiltMessage | Exception],
    failures: list[tuple[int, Exception]],
    size: int,
) -> tuple[list[core.BuiltMessage], list[tuple[int, Exception]]]:
    """Messages whose signing failed join ``failures`` (positions in a chunk of ``size``)."""
    if not any(isinstance(item, Exception) for item in signed):
        return signed, failures  # type: ignore[return-value]  # all messages
    failed = {position for position, _ in failures}
    positions = (p for p in range(size) if p not in failed)
    messages: list[core.BuiltMessage] = []
    failures = list(failures)
    for position, item in zip(positions, signed, strict=True):
        if isinstance(item, Exception):
            failures.append((position, item))
        else:
            messages.append(item)
    failures.sort(key=lambda f: f[0])
    return messages, failures
