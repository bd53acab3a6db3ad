"""The connection pool: persistent connections to one server, fed from one job queue.

Each connection has a worker task that takes as many queued jobs as its window has room
for, submits them to the Rust core in one go and writes the framed bytes once. Outcomes
come back through ``_settled``: final Results are reported, transient failures are put back
on the queue after an exponential backoff with jitter. Connection-level failures (cannot
connect, STARTTLS missing, credentials refused) are handled here too, so that every job
ends with exactly one Result per recipient whatever happens to the sockets.
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
from fastsmtp._config import EngineConfig
from fastsmtp._connection import Connection
from fastsmtp._errors import (
    AuthenticationError,
    FastSMTPError,
    InvalidMessage,
    SMTPReplyError,
    SMTPUTF8Required,
    TLSRequiredError,
)
from fastsmtp._jobs import Job, Run, settle
from fastsmtp._models import Status
from fastsmtp._ratelimit import TokenBucket
from fastsmtp._stats import Stats

log = logging.getLogger("fastsmtp")

NO_REPLY_AFTER_DATA = (
    "end of data sent but no reply came ({reason}); the server may have accepted the "
    "message, so it was not sent again"
)


class Pool:
    """Up to ``config.connections`` persistent connections and the queue that feeds them."""

    def __init__(self, config: EngineConfig, stats: Stats) -> None:
        self.config = config
        self.stats = stats
        self.queue: deque[Job | Run] = deque()
        self._queued = 0  # messages in the queue (a Run holds many)
        self._jobs_ready = asyncio.Event()
        self._workers: set[asyncio.Task[None]] = set()
        self._idle_workers = 0
        self._connecting = 0  # workers started that have no connection yet
        self._retry_timers: dict[asyncio.TimerHandle, Job] = {}
        self._bucket = TokenBucket(config.rate_limit) if config.rate_limit else None
        self._connect_failures = 0
        self._closing = False

    # -- feeding ------------------------------------------------------------------------

    def put(self, item: Job | Run) -> None:
        """Queue a job, or a run of a batch's messages."""
        self.queue.append(item)
        self._queued += len(item) if isinstance(item, Run) else 1
        self._wake()

    @property
    def queued(self) -> int:
        """Messages queued, not yet handed to a connection."""
        return self._queued

    def _wake(self) -> None:
        if not self.queue:
            return
        self._jobs_ready.set()
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
        conn = await Connection.open(self.config, self._settled)
        self.stats.connections_opened += 1
        self._start_worker(conn)

    def cancel_pending(self, reason: str) -> int:
        """Give every job not yet handed to a server (queued, or waiting for a retry) a
        ``failed`` Result now; returns how many recipients that was. Work already on a
        connection finishes normally."""
        count = self._drop_retries("failed", reason)
        return count + self.fail_queued(reason)

    def _drop_retries(self, status: Status, reason: str) -> int:
        """Cancel every pending retry and give its recipients their final result now;
        returns how many recipients that was."""
        count = 0
        timers, self._retry_timers = self._retry_timers, {}
        for handle, job in timers.items():
            handle.cancel()
            count += len(job.recipients)
            job.finish_all(status, None, reason)
        return count

    # -- outcomes -----------------------------------------------------------------------

    def _settled(
        self, conn: Connection, event: core.TransactionResult | core.TransactionAborted
    ) -> None:
        tag = event.tag
        job: Job = tag if type(tag) is Job else tag.job(event.index)
        can_retry = job.attempts < self.config.max_attempts
        if isinstance(event, core.TransactionResult):
            again = settle(job, event, can_retry)
            if again is not None:
                self._retry_later(again)
            return
        reason = conn.close_reason or "connection closed"
        reply = None
        if isinstance(event, core.TransactionAborted):
            reply = event.reply
            reason = event.reason or reason
            # A 421 means the server took nothing still in flight (see the core's docs).
            if event.end_of_data_sent and not (reply is not None and reply.code == 421):
                conn.charge_abort()
                job.finish_all("deferred", reply, NO_REPLY_AFTER_DATA.format(reason=reason))
                return
        if not conn.charge_abort():
            # It waited behind the transaction that broke the connection: not an attempt.
            # Each break still charges one transaction, so retries cannot go on forever.
            job.attempts -= 1
            can_retry = True
        if can_retry:
            self._retry_later(job)
        else:
            job.finish_all("deferred", reply, f"gave up after {job.attempts} attempts: {reason}")

    def _retry_later(self, job: Job) -> None:
        self.stats.retries += len(job.recipients)
        base = self.config.retry_base_delay * (2 ** max(0, job.attempts - 1))
        delay = min(self.config.retry_max_delay, base) * random.uniform(0.5, 1.0)
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def requeue() -> None:
            del self._retry_timers[handle]
            self.put(job)

        handle = loop.call_later(delay, requeue)
        self._retry_timers[handle] = job

    def fail_queued(self, reason: str, reply: SMTPReplyError | None = None) -> int:
        """Give every queued message its final ``failed`` result (the server cannot be
        used); returns how many recipients that was."""
        items, self.queue = self.queue, deque()
        self._queued = 0
        self._jobs_ready.clear()
        count = 0
        for item in items:
            for job in item.take_rest() if isinstance(item, Run) else (item,):
                count += len(job.recipients)
                if reply is not None:
                    _finish_with_reply(job, reply, reason)
                else:
                    job.finish_all("failed", None, reason)
        return count

    # -- workers ------------------------------------------------------------------------

    async def _connect(self) -> Connection | None:
        """Open a connection, retrying with backoff; None when the queue had to be failed."""
        config = self.config
        attempt = 0
        while self.queue and not self._closing:
            attempt += 1
            try:
                conn = await Connection.open(config, self._settled)
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
                self.stats.connections_opened += 1
                return conn
            delay = min(config.retry_max_delay, config.retry_base_delay * 2 ** (attempt - 1))
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
        return None

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

    async def _next_jobs(self, conn: Connection) -> bool:
        """Wait until there are queued jobs; False when the connection should be retired
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
                self._jobs_ready.clear()
                if conn.in_flight:
                    await _first_of(self._jobs_ready.wait(), conn.wait_settled())
                    continue
                try:
                    await asyncio.wait_for(self._jobs_ready.wait(), self.config.idle_timeout)
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
            if not await self._next_jobs(conn):
                return
            if not self.queue:
                continue
            check_after = config.health_check_after
            if check_after is not None and conn.idle_for() > check_after:
                if not await conn.check_alive():
                    self.stats.health_check_failures += 1
                    return  # the jobs stay queued: this worker or another reconnects
                continue
            await conn.wait_capacity()
            if conn.closed:
                return
            want = min(
                conn.room(),
                self._queued,
                config.max_messages_per_connection - conn.submitted,
            )
            if want <= 0:
                continue
            if self._bucket is not None:
                want = await self._bucket.take(want)
            submitted = conn.submitted
            taken, refused = conn.submit_from(self.queue, want)
            self._queued -= taken
            for job, error in refused:
                if isinstance(error, SMTPUTF8Required | InvalidMessage):
                    job.finish_all("failed", None, str(error))
                else:  # a bug, but the job still gets its one result
                    log.error("fastsmtp could not submit a message", exc_info=error)
                    job.finish_all("failed", None, f"internal error: {error!r}")
            self.stats.messages_submitted += conn.submitted - submitted
            conn.flush()

    async def close(self) -> None:
        """Stop the workers (after the queue is drained by the caller) and close sockets."""
        self._closing = True
        # Normally nothing is waiting here (the engine drains first); if the caller gave up
        # waiting, every job still gets its one final result.
        self._drop_retries("deferred", "engine closed before the retry was due")
        self.fail_queued("engine closed before the message was sent")
        # Wake idle workers last: fail_queued clears the event, and a waiter whose wait has
        # not started yet would miss a set() that came before the clear.
        self._jobs_ready.set()
        if self._workers:
            await asyncio.gather(*self._workers, return_exceptions=True)


def _finish_with_reply(job: Job, error: SMTPReplyError, reason: str) -> None:
    for i in range(len(job.recipients)):
        job.done(job.result(i, "failed", error.code, error.enhanced_code, reason))


async def _first_of(*waits: Coroutine[Any, Any, Any]) -> None:
    """Wait until the first of ``waits`` finishes; cancel the rest."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
