"""The connection pool: persistent connections to one server, fed from one queue of lots.

Each connection has a worker task that takes as many queued messages as its window has
room for, hands them to the Rust core in one call per lot and writes the framed bytes.
Transaction events come back through ``_on_events``: final Results go to their batch,
transient failures go back on the queue after an exponential backoff with jitter.
Connection-level failures (cannot connect, STARTTLS missing, credentials refused) are
handled here too, so that every recipient ends with exactly one Result whatever happens
to the sockets.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections import deque
from collections.abc import Coroutine
from typing import Any

from fastsmtp import _fastsmtp as core
from fastsmtp._batch import Batch
from fastsmtp._config import EngineConfig
from fastsmtp._connection import Connection
from fastsmtp._errors import (
    AuthenticationError,
    FastSMTPError,
    InvalidMessage,
    SMTPReplyError,
    SMTPUTF8Required,
    TLSError,
    TLSRequiredError,
)
from fastsmtp._lot import Envelope, Lot
from fastsmtp._models import Status
from fastsmtp._outcome import results_for, settle, settle_aborted
from fastsmtp._ratelimit import TokenBucket
from fastsmtp._stats import Stats

log = logging.getLogger("fastsmtp")

TRANSIENT_TLS_KINDS = frozenset({"peer_misbehaved", "truncated", "closed_during_handshake"})
"""TLS failures worth another connection (a glitch of the peer or the network); the
others (certificates, no common protocol, settings) are final."""

# Exact classes: ``type(event) is`` is the cheapest test, once per event on the hot path.
_ACCEPTED = core.Accepted
_RESULT = core.TransactionResult
_ABORTED = core.TransactionAborted


class Pool:
    """Up to ``config.connections`` persistent connections and the queue that feeds them."""

    def __init__(self, config: EngineConfig, stats: Stats) -> None:
        self.config = config
        self.stats = stats
        self.queue: deque[Lot] = deque()
        self._queued = 0  # messages in the queue (a lot holds many)
        self._work_ready = asyncio.Event()
        self._workers: set[asyncio.Task[None]] = set()
        self._idle_workers = 0
        self._connecting = 0  # workers started that have no connection yet
        self._retry_timers: dict[asyncio.TimerHandle, Lot] = {}
        self._bucket = TokenBucket(config.rate_limit, config.burst) if config.rate_limit else None
        self._closing = False
        # One TLS layer for every connection: they resume each other's TLS sessions.
        self._tls = config.tls_layer()

    # -- feeding ------------------------------------------------------------------------

    def put(self, lot: Lot) -> None:
        """Queue a lot for the connections."""
        if lot.batch.cancelled is not None:
            self._finish_untaken(lot, "failed", None, lot.batch.cancelled)
            return
        self.queue.append(lot)
        self._queued += len(lot)
        self._wake()

    def _wake(self) -> None:
        if not self.queue:
            return
        self._work_ready.set()
        # Idle connections and those still connecting will take a window's worth each;
        # open more, up to the pool size, only for work beyond that. (One message for a
        # pool with an idle connection must not open a second one.)
        spare = (self._idle_workers + self._connecting) * self.config.window
        backlog = self._queued - spare
        while backlog > 0 and len(self._workers) < self.config.connections:
            self._start_worker(None)
            backlog -= self.config.window

    def _start_worker(self, conn: Connection | None) -> None:
        if conn is None:
            self._connecting += 1
        task = asyncio.get_running_loop().create_task(self._worker(conn))
        self._workers.add(task)
        task.add_done_callback(self._workers.discard)

    async def connect(self) -> None:
        """Open one connection now (greeting, EHLO, STARTTLS, AUTH) and keep it in the pool.

        Raises what set-up raises (SMTPConnectionError, TLSRequiredError,
        AuthenticationError, ...), so a wrong host, certificate or password shows up before
        any work is handed over.
        """
        if len(self._workers) >= self.config.connections:
            return
        conn = await Connection.open(self.config, self._on_events, self._tls)
        self._opened(conn)
        self._start_worker(conn)

    # -- giving results without sending ---------------------------------------------------

    @staticmethod
    def _finish_untaken(lot: Lot, status: Status, reply: SMTPReplyError | None, text: str) -> int:
        """Every message of ``lot`` not yet handed out gets ``status``; returns how many
        recipients that was."""
        count = 0
        for envelope in lot.take_rest():
            count += _finish_envelope(lot.batch, envelope, status, reply, text, lot.attempts)
        return count

    def fail_queued(
        self, reason: str, reply: SMTPReplyError | None = None, batch: Batch | None = None
    ) -> int:
        """Give every queued message (of ``batch``, or all) its final ``failed`` result
        now; returns how many recipients that was."""
        keep: deque[Lot] = deque()
        count = 0
        for lot in self.queue:
            if batch is not None and lot.batch is not batch:
                keep.append(lot)
                continue
            self._queued -= len(lot)
            count += self._finish_untaken(lot, "failed", reply, reason)
        self.queue = keep
        if not keep:
            self._work_ready.clear()
        return count

    def _drop_retries(self, status: Status, reason: str, batch: Batch | None = None) -> int:
        """Cancel pending retries (of ``batch``, or all) and give their recipients their
        final result now; returns how many recipients that was."""
        count = 0
        for handle, lot in list(self._retry_timers.items()):
            if batch is not None and lot.batch is not batch:
                continue
            handle.cancel()
            del self._retry_timers[handle]
            count += self._finish_untaken(lot, status, None, reason)
        return count

    def cancel_pending(self, reason: str) -> int:
        """Give every message not yet handed to a server (queued, or waiting for a retry)
        a ``failed`` Result now; returns how many recipients that was. Work already on a
        connection finishes normally."""
        return self._drop_retries("failed", reason) + self.fail_queued(reason)

    def cancel_batch(self, batch: Batch, reason: str) -> int:
        """``cancel_pending`` for one batch only."""
        return self._drop_retries("failed", reason, batch) + self.fail_queued(reason, None, batch)

    # -- outcomes -----------------------------------------------------------------------

    def _on_events(self, conn: Connection, events: list[Any]) -> None:
        """A read's events: every transaction's outcome goes to its batch from here; the
        session's own events go back to the connection."""
        for event in events:
            kind = type(event)
            if kind is _ACCEPTED:
                event.lot.batch.accepted(event.recipients)
            elif kind is _RESULT or kind is _ABORTED:
                self._outcome(conn, event)
            else:
                conn.session_event(event)

    def _outcome(
        self, conn: Connection, event: core.TransactionResult | core.TransactionAborted
    ) -> None:
        lot: Lot = event.lot
        can_retry = lot.attempts + 1 < self.config.max_attempts
        if isinstance(event, core.TransactionResult):
            results, again = settle(lot, event.index, event, can_retry)
        else:
            charged = conn.charge_abort()
            results, again = settle_aborted(lot, event.index, event, charged, can_retry)
        batch = lot.batch
        for result in results:
            batch.finish(result)
        if again is not None:
            if again.attempts == lot.attempts:
                self.put(again)  # cut off behind another transaction: go again now
            else:
                self._retry_later(again)

    def _retry_later(self, lot: Lot) -> None:
        batch = lot.batch
        if batch.cancelled is not None:
            self._finish_untaken(lot, "failed", None, batch.cancelled)
            return
        if lot.recipients is not None:
            self.stats.retries += len(lot.recipients)
        base = self.config.retry_base_delay * (2 ** max(0, lot.attempts - 1))
        delay = min(self.config.retry_max_delay, base) * random.uniform(0.5, 1.0)
        handle: asyncio.TimerHandle

        def requeue() -> None:
            del self._retry_timers[handle]
            self.put(lot)

        handle = asyncio.get_running_loop().call_later(delay, requeue)
        self._retry_timers[handle] = lot

    # -- workers ------------------------------------------------------------------------

    async def _connect(self) -> Connection | None:
        """Open a connection, retrying with backoff; None when the queue had to be failed."""
        config = self.config
        attempt = 0
        while self.queue and not self._closing:
            attempt += 1
            try:
                conn = await Connection.open(config, self._on_events, self._tls)
            except TLSError as e:
                self.stats.connection_failures += 1
                if e.kind in TRANSIENT_TLS_KINDS and attempt < config.max_attempts:
                    log.warning("TLS with %s:%s failed (%s), retrying", config.host, config.port, e)
                else:
                    # Certificates and settings are final: never plaintext, never a loop.
                    log.error("cannot use %s:%s: %s", config.host, config.port, e)
                    self.fail_queued(f"TLS: {e}")
                    return None
            except (TLSRequiredError, ssl.SSLError) as e:
                # Security failures are final: never fall back to plaintext, never loop.
                log.error("cannot use %s:%s: %s", config.host, config.port, e)
                self.stats.connection_failures += 1
                self.fail_queued(f"TLS: {e}")
                return None
            except AuthenticationError as e:
                log.error("authentication to %s:%s failed: %s", config.host, config.port, e)
                self.stats.connection_failures += 1
                self.fail_queued(str(e), e)
                return None
            except SMTPReplyError as e:
                self.stats.connection_failures += 1
                if e.is_permanent or attempt >= config.max_attempts:
                    self.fail_queued(str(e), e)
                    return None
                log.warning("connection refused by server (%s), retrying", e)
            except FastSMTPError as e:
                self.stats.connection_failures += 1
                if attempt >= config.max_attempts:
                    log.error("giving up on %s:%s: %s", config.host, config.port, e)
                    self.fail_queued(f"could not connect after {attempt} attempts: {e}")
                    return None
                log.warning("%s, retrying", e)
            else:
                self._opened(conn)
                return conn
            delay = min(config.retry_max_delay, config.retry_base_delay * 2 ** (attempt - 1))
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
        return None

    def _opened(self, conn: Connection) -> None:
        stats = self.stats
        stats.connections_opened += 1
        if conn.client.tls_version is not None:
            stats.tls_connections += 1
            stats.tls_resumed += conn.client.tls_resumed

    async def _worker(self, conn: Connection | None) -> None:
        connecting = conn is None
        try:
            while not self._closing:
                if conn is None:
                    if not self.queue:
                        return
                    conn = await self._connect()
                    if connecting:
                        connecting = False
                        self._connecting -= 1
                    if conn is None:
                        return
                try:
                    await self._serve(conn)
                finally:
                    self.stats.bytes_sent += conn.bytes_sent
                    await conn.quit()  # also waits for a peer-closed socket to finish closing
                conn = None
        except Exception:  # a bug: log it loudly, the engine's drain will report leftovers
            log.exception("fastsmtp worker crashed")
            raise
        finally:
            if connecting:
                self._connecting -= 1

    async def _next_work(self, conn: Connection) -> bool:
        """Wait until there is queued work; False when the connection should be retired
        (closed, idle too long, or the pool is closing)."""
        if self.queue:
            return True
        # Counted idle even while replies are outstanding: the window has room, so new
        # work goes here rather than to a new connection.
        self._idle_workers += 1
        try:
            while not self.queue:
                if conn.closed or self._closing:
                    return False
                self._work_ready.clear()
                if conn.in_flight:
                    await _first_of(self._work_ready.wait(), conn.wait_settled())
                    continue
                try:
                    await asyncio.wait_for(self._work_ready.wait(), self.config.idle_timeout)
                except TimeoutError:
                    return False
            return True
        finally:
            self._idle_workers -= 1

    async def _serve(self, conn: Connection) -> None:
        config = self.config
        while not conn.closed and not self._closing:
            if conn.submitted >= config.max_messages_per_connection:
                return
            if not await self._next_work(conn):
                return
            check_after = config.health_check_after
            if check_after is not None and conn.idle_for() > check_after:
                if not await conn.check_alive():
                    self.stats.health_check_failures += 1
                    return  # the work stays queued: this worker or another reconnects
                continue
            await conn.wait_capacity()
            if conn.closed:
                return
            want = min(
                conn.room(), self._queued, config.max_messages_per_connection - conn.submitted
            )
            if want <= 0:
                continue
            if self._bucket is not None:
                want = await self._bucket.take(want)
            self._submit(conn, want)

    def _submit(self, conn: Connection, want: int) -> None:
        """Hand up to ``want`` queued messages to ``conn`` and write them."""
        taken_all = 0
        refused_all: list[tuple[Lot, int, Exception]] = []
        # Closed while the caller waited (e.g. for the rate limit): the work stays queued.
        while not conn.closed and taken_all < want and self.queue:
            lot = self.queue[0]
            taken, refused = lot.submit(conn.client, want - taken_all)
            if not len(lot):
                self.queue.popleft()
            taken_all += taken
            refused_all.extend((lot, position, error) for position, error in refused)
        self._queued -= taken_all
        submitted = taken_all - len(refused_all)
        self.stats.messages_submitted += submitted
        conn.submitted_now(submitted)
        for lot, position, error in refused_all:
            if isinstance(error, SMTPUTF8Required | InvalidMessage):
                text = str(error)
            else:  # a bug, but the message still gets its one result per recipient
                log.error("fastsmtp could not submit a message", exc_info=error)
                text = f"internal error: {error!r}"
            envelope = lot.envelope(position)
            _finish_envelope(lot.batch, envelope, "failed", None, text, lot.attempts + 1)

    async def close(self) -> None:
        """Stop the workers (after the queue is drained by the caller) and close sockets."""
        self._closing = True
        # Normally nothing is waiting here (the engine drains first); if the caller gave up
        # waiting, every recipient still gets its one final result.
        self._drop_retries("deferred", "engine closed before the retry was due")
        self.fail_queued("engine closed before the message was sent")
        # Wake idle workers last: fail_queued clears the event, and a waiter whose wait has
        # not started yet would miss a set() that came before the clear.
        self._work_ready.set()
        if self._workers:
            await asyncio.gather(*self._workers, return_exceptions=True)


def _finish_envelope(
    batch: Batch,
    envelope: Envelope,
    status: Status,
    reply: SMTPReplyError | None,
    text: str,
    attempts: int,
) -> int:
    """Give every recipient of ``envelope`` the same final result; returns how many."""
    results = results_for(envelope, status, reply, text, attempts)
    for result in results:
        batch.finish(result)
    return len(results)


async def _first_of(*waits: Coroutine[Any, Any, Any]) -> None:
    """Wait until the first of ``waits`` finishes; cancel the rest."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
