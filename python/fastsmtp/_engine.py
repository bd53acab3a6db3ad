"""The public asyncio API: ``Engine.send`` and ``Engine.send_batch``.

The engine turns messages into jobs (built or rendered in Rust), feeds them to the pool and
collects exactly one Result per recipient. ``send_batch`` reads recipients lazily in chunks:
each chunk is rendered in Rust with the GIL released (in a worker thread, so rendering
overlaps the socket work on the event loop), and the producer waits whenever the queue is
full, so a million recipients need bounded memory.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import ssl
import sys
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Iterable, Sequence
from itertools import islice
from typing import Any, TypeVar

from fastsmtp import _fastsmtp as core
from fastsmtp._config import EngineConfig, TLSMode
from fastsmtp._errors import InvalidMessage, TemplateError
from fastsmtp._jobs import Job, RawBody, Run
from fastsmtp._models import BatchReport, Message, Recipient, Result
from fastsmtp._pool import Pool
from fastsmtp._stats import Stats

log = logging.getLogger("fastsmtp")

RecipientLike = Recipient | str | dict[str, Any]
OnResult = Callable[[Result], Awaitable[None] | None]
T = TypeVar("T")

RENDER_IN_THREAD_MIN = 64 if (os.cpu_count() or 1) > 2 else sys.maxsize
"""Chunks at least this large are rendered in a worker thread (the GIL is released there);
smaller ones are not worth the hand-off. On two cores or fewer everything is rendered on
the event loop's thread: the thread's GIL hand-offs cost more than the overlap gains
(2 cores, smtp-sink, 16 connections: 40,000 -> 47,000 msg/s, 24.2 -> 20.8 µs CPU/msg;
see benches/RESULTS.md)."""


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
    and credentials never travel over plaintext unless ``allow_plaintext_auth=True``.
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
        local_hostname: str | None = None,
        window: int = 64,
        window_bytes: int = 8 * 1024 * 1024,
        data_window: int = 64,
        idle_timeout: float = 30.0,
        health_check_after: float | None = 5.0,
        dkim: core.DKIMSigner | None = None,
    ) -> None:
        self.config = EngineConfig(
            host=host,
            port=port,
            tls=tls,
            ssl_context=ssl_context,
            server_hostname=server_hostname,
            username=username,
            password=password,
            oauth2_token=oauth2_token,
            allow_plaintext_auth=allow_plaintext_auth,
            connections=connections,
            max_messages_per_connection=max_messages_per_connection,
            timeout=timeout,
            connect_timeout=connect_timeout,
            greeting_timeout=greeting_timeout,
            reply_timeout=reply_timeout,
            max_attempts=max_attempts,
            retry_base_delay=retry_base_delay,
            retry_max_delay=retry_max_delay,
            rate_limit=rate_limit,
            local_hostname=local_hostname,
            window=window,
            window_bytes=window_bytes,
            data_window=data_window,
            idle_timeout=idle_timeout,
            health_check_after=health_check_after,
            dkim=dkim,
        )
        self.stats = Stats()
        self._pool: Pool | None = None
        self._outstanding = 0
        self._drained: asyncio.Event | None = None

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        self._ensure_pool()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _ensure_pool(self) -> Pool:
        if self._pool is None:
            self._pool = Pool(self.config, self.stats)
            self._drained = asyncio.Event()
            self._drained.set()
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
        if self._drained is not None:
            await self._drained.wait()

    # -- bookkeeping ----------------------------------------------------------------------

    def _track(self, n: int) -> None:
        self._outstanding += n
        if self._drained is not None and self._outstanding:
            self._drained.clear()

    def _count(self, status: str) -> None:
        if status == "accepted":
            self._count_accepted(1)
            return
        _bump(self.stats, status)
        self._outstanding -= 1
        if self._outstanding == 0 and self._drained is not None:
            self._drained.set()

    def _count_accepted(self, n: int) -> None:
        self.stats.accepted += n
        self._outstanding -= n
        if self._outstanding == 0 and self._drained is not None:
            self._drained.set()

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

    async def send(self, message: Message) -> list[Result]:
        """Send one message; returns one Result per envelope recipient (to, cc, bcc).

        Raises InvalidMessage before anything is sent when the message is malformed.
        """
        built = core.build_message(message.to_spec())
        recipients = built.recipients
        if not recipients:
            raise InvalidMessage("the message has no recipients (to, cc or bcc)", field="to")
        if self.config.dkim is not None:
            built = self.config.dkim.sign(built, int(time.time()))
        return await self._send_one(built, recipients)

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
        core.check_address(sender, "sender", allow_empty=True)
        if isinstance(recipients, str):
            raise InvalidMessage("recipients must be a list of addresses", field="recipients")
        addresses = list(recipients)
        if not addresses:
            raise InvalidMessage("send_raw needs at least one recipient", field="recipients")
        for address in addresses:
            core.check_address(address, "recipients")
        raw = bytes(data)
        if self.config.dkim is not None:
            raw = self.config.dkim.sign_bytes(raw, int(time.time()))
        body = RawBody(sender, raw, message_id or "")
        return await self._send_one(body, addresses, explicit_envelope=True)

    async def _send_one(
        self,
        message: core.BuiltMessage | RawBody,
        recipients: list[str],
        *,
        explicit_envelope: bool = False,
    ) -> list[Result]:
        pool = self._ensure_pool()
        loop = asyncio.get_running_loop()
        done_future: asyncio.Future[None] = loop.create_future()
        results: list[Result | None] = [None] * len(recipients)
        remaining = len(recipients)

        def done(result: Result) -> None:
            nonlocal remaining
            self._count(result.status)
            results[result.index] = result
            remaining -= 1
            if remaining == 0 and not done_future.done():
                done_future.set_result(None)

        self._track(len(recipients))
        pool.put(Job(message, recipients, 0, done, explicit_envelope=explicit_envelope))
        await done_future
        return [r for r in results if r is not None]

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
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
        if template.to or template.cc or template.bcc:
            raise InvalidMessage(
                "a batch template must not have to/cc/bcc: each recipient becomes the To",
                field="to",
            )
        compiled = core.Template(template.to_spec(), data)
        pool = self._ensure_pool()
        report = BatchReport()
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        all_done = asyncio.Event()
        all_done.set()
        outstanding = 0
        callbacks: set[asyncio.Future[Any]] = set()
        limit = max_queued or max(4 * chunk_size, self.config.connections * self.config.window)
        room = asyncio.Event()
        room.set()
        room_wanted = False  # the producer waits for room (no room.is_set() per result)

        def callback_failed(exc: BaseException) -> None:
            report.callback_errors += 1
            self.stats.callback_errors += 1
            log.error("on_result raised", exc_info=exc)

        def callback_finished(task: asyncio.Future[Any]) -> None:
            callbacks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                callback_failed(task.exception())  # type: ignore[arg-type]

        def counted(n: int) -> None:
            """Bookkeeping once ``n`` more recipients have their final result."""
            nonlocal outstanding, room_wanted
            outstanding -= n
            if outstanding == 0:
                all_done.set()
            if room_wanted and outstanding < limit:
                room_wanted = False
                room.set()

        def done(result: Result) -> None:
            status = result.status
            self._count(status)
            report.total += 1
            if status == "accepted":
                report.accepted += 1
            else:
                _bump(report, status)
            if on_result is not None:
                try:
                    maybe = on_result(result)
                    if maybe is not None and inspect.isawaitable(maybe):
                        task = asyncio.ensure_future(maybe)
                        callbacks.add(task)
                        task.add_done_callback(callback_finished)
                except Exception as exc:
                    callback_failed(exc)
            counted(1)

        quietly_accepted = 0  # added to the report at the end

        def accepted(n: int) -> None:
            # Without on_result nobody reads a Result: accepted recipients are only counted.
            # Called once per read with every recipient it accepted (_count_accepted is
            # inlined: one Python call fewer per read).
            nonlocal quietly_accepted
            quietly_accepted += n
            self.stats.accepted += n
            self._outstanding -= n
            if self._outstanding == 0 and self._drained is not None:
                self._drained.set()
            counted(n)

        on_accepted = accepted if on_result is None else None

        def fail(index: int, address: str, error: Exception) -> None:
            nonlocal outstanding
            outstanding += 1
            self._track(1)
            done(Result(recipient=address, status="failed", text=str(error), index=index))

        index = 0
        # A list was checked whole just below; an iterator is judged by its first chunk.
        checked = isinstance(recipients, Sequence)
        missing_for_all = _missing_everywhere(compiled, data, recipients)
        if missing_for_all:
            raise TemplateError(
                f"template variable {missing_for_all!r} is undefined for every recipient",
                variable=missing_for_all,
            )
        async for chunk in _chunks(recipients, chunk_size):
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
            # Batch indexes: consecutive from ``index`` unless some recipients failed.
            indexes: list[int] | int = index
            if failures:
                failed = {position for position, _ in failures}
                indexes = [index + p for p in range(len(chunk)) if p not in failed]
                for position, error in failures:
                    fail(index + position, _recipient_tuple(chunk[position])[0], error)
            index += len(chunk)
            if messages:
                outstanding += len(messages)
                self._track(len(messages))
                all_done.clear()
                pool.put(Run(messages, indexes, done, on_accepted))
            if outstanding >= limit:
                room.clear()
                room_wanted = True
                await room.wait()
        await all_done.wait()
        if callbacks:
            await asyncio.gather(*callbacks, return_exceptions=True)
        report.total += quietly_accepted
        report.accepted += quietly_accepted
        report.elapsed = time.perf_counter() - started
        return report

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


def _bump(counts: Stats | BatchReport, status: str) -> None:
    """Add one to the counter named by a Result status (no getattr/setattr per result)."""
    if status == "accepted":
        counts.accepted += 1
    elif status == "rejected":
        counts.rejected += 1
    elif status == "deferred":
        counts.deferred += 1
    else:
        counts.failed += 1


_BUILTIN_VARIABLES = frozenset({"address", "email", "name"})


def _missing_everywhere(
    compiled: core.Template, data: dict[str, Any] | None, recipients: object
) -> str | None:
    """A template variable that neither batch data nor any recipient of a list provides."""
    needed = set(compiled.variables) - _BUILTIN_VARIABLES - set(data or ())
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
