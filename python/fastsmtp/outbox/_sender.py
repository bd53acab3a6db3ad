"""The one sender of an outbox: claim due recipients, mark them on the wire, record
their outcomes, durably and without blocking the event loop.

Every change goes to the writer thread (:mod:`._writer`), which commits it with the others
of its group; each call returns the group's future, which resolves once the change is on
disk. The engine's contract, for the in-doubt guarantee to hold:

1. ``claims = await sender.claim(n)``: due recipients, transactional lane first;
2. render each; ``await sender.mark_on_wire(claims)`` **before** writing the end of data
   (skip any key in the result's ``refused``: its job was cancelled);
3. on each reply, ``sender.record(claim, ...)`` or ``sender.defer(claim, ...)``, and report
   the result to the caller only once the returned future is done (or ``await
   sender.flush()`` once for many);
4. ``sender.release(claims)`` for claims that were not sent (at shutdown).

A crash between 2 and 3 leaves the recipient ``on_wire``; the next sender finds it
``in_doubt`` and does not send it again unless asked to.

Claims are not written to the file: with one sender per outbox only this process needs to
know them, and a crash before step 2 leaves the recipient ``queued``, which is right, since
nothing of it went out (one write per message saved). A future that fails (OutboxFull,
OutboxLocked...) means its changes are not in the file: after a failed ``mark_on_wire``
do not send those recipients; after a failed ``record`` they stay ``on_wire`` there (and
in doubt after a restart), so do not report their results as stored. The claims stay
claimed in this process either way.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable, Sequence
from typing import Literal

from fastsmtp.outbox._errors import OutboxClosed
from fastsmtp.outbox._lock import SenderLock
from fastsmtp.outbox._models import (
    ACCEPTED,
    DEFERRED,
    EXPIRED,
    FAILED,
    LANES,
    REJECTED,
    SUPPRESSED,
    Claim,
    Lane,
)
from fastsmtp.outbox._store import Outbox
from fastsmtp.outbox._writer import GroupCommit, Writer, WriterStats

FinalStatus = Literal["accepted", "rejected", "failed", "suppressed"]
_FINAL_CODES = {
    "accepted": ACCEPTED,
    "rejected": REJECTED,
    "failed": FAILED,
    "suppressed": SUPPRESSED,
}


class Sender:
    """Made by :meth:`Outbox.open_sender`; holds the sender lock until :meth:`close`."""

    def __init__(self, outbox: Outbox, writer: Writer, lock: SenderLock, in_doubt: int) -> None:
        self.outbox = outbox
        self.backoff = outbox.backoff
        self.in_doubt_found = in_doubt
        """Recipients found on the wire (left by a dead sender) and marked in doubt when
        this sender started."""
        self._writer = writer
        self._lock = lock
        self._closed = False
        self._rng = random.Random()

    @classmethod
    async def start(cls, outbox: Outbox, *, resend_in_doubt: bool = False) -> Sender:
        lock = SenderLock(outbox.path)
        lock.acquire()
        try:
            writer = Writer(outbox, asyncio.get_running_loop())
            try:
                found = await asyncio.to_thread(writer.recover, resend_in_doubt)
            except BaseException:
                writer.conn.close()
                raise
            writer.start()
        except BaseException:
            lock.release()
            raise
        return cls(outbox, writer, lock, found)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def stats(self) -> WriterStats:
        return self._writer.stats

    def _check(self) -> None:
        if self._closed:
            raise OutboxClosed(f"{self.outbox.path}: the sender is closed", path=self.outbox.path)

    # -- claiming ------------------------------------------------------------------------

    async def claim(
        self,
        limit: int,
        lanes: Sequence[Lane] = LANES,
        *,
        job_id: str | None = None,
        now: float | None = None,
    ) -> list[Claim]:
        """Up to ``limit`` due recipients, marked claimed in this process (not handed out
        again until released): in lane order (transactional first), deferred ones whose
        next attempt is due first, then queued ones by job (``send_at``, then age) and
        index. ``job_id`` claims from that job only (a durable ``send_batch``); ``now`` (a
        Unix time) is for tests."""
        self._check()
        if limit < 1:
            return []
        for lane in lanes:
            if lane not in LANES:
                raise ValueError(f"unknown lane {lane!r}")
        when = time.time() if now is None else now
        ordered = [lane for lane in LANES if lane in lanes]
        only = self.outbox.template(job_id).rowid if job_id is not None else None
        writer = self._writer
        claims: list[Claim] = await writer.submit(
            lambda conn: writer.claim(conn, limit, ordered, when, only), read=True
        )
        return claims

    def release(self, claims: Iterable[Claim]) -> None:
        """Give back claims that were not sent: they will be claimed again."""
        self._check()
        keys = [c.key for c in claims]
        writer = self._writer
        writer.submit(lambda conn: writer.release(keys), read=True)

    # -- state changes -------------------------------------------------------------------

    def mark_on_wire(self, claims: Sequence[Claim]) -> asyncio.Future[GroupCommit]:
        """Record that these recipients' end of data is about to be written. Await the
        future before writing it: a crash after that point leaves them in doubt rather
        than queued (which would send them again, unflagged)."""
        self._check()
        return self._writer.on_wire([c.key for c in claims])

    def record(
        self,
        claim: Claim,
        status: FinalStatus,
        code: int | None = None,
        enhanced_code: str | None = None,
        text: str = "",
    ) -> asyncio.Future[GroupCommit]:
        """Record a final outcome (a 2xx is ``accepted``, a 5xx ``rejected``, a local
        error ``failed``). Report it once the returned future is done."""
        self._check()
        state = _FINAL_CODES.get(status)
        if state is None:
            raise ValueError(f"not a final status: {status!r} (use defer for a 4xx)")
        _check_reply(code, enhanced_code, text)
        return self._writer.record(
            (state, claim.attempts + 1, None, code, enhanced_code, text, claim.key)
        )

    def defer(
        self,
        claim: Claim,
        code: int | None = None,
        enhanced_code: str | None = None,
        text: str = "",
        *,
        now: float | None = None,
    ) -> tuple[float | None, asyncio.Future[GroupCommit]]:
        """Record a transient failure (a 4xx, a lost connection before the end of data):
        the recipient is tried again after the backoff policy's delay. Returns the next
        attempt's Unix time, or None when the queue lifetime is over and the deferral is
        final (the recipient is reported ``deferred``), and the group's future."""
        self._check()
        _check_reply(code, enhanced_code, text)
        when = time.time() if now is None else now
        attempts = claim.attempts + 1
        at = self.backoff.next_attempt(attempts, claim.job.send_at, when, self._rng)
        state = DEFERRED if at is not None else EXPIRED
        future = self._writer.record((state, attempts, at, code, enhanced_code, text, claim.key))
        return at, future

    async def flush(self) -> GroupCommit | None:
        """Wait until every change made so far is committed (None when none was pending).
        Raises the typed error when the commit failed (OutboxFull...): those changes are
        not in the outbox."""
        self._check()
        future = self._writer.flush()
        if future is None:
            return None
        return await future

    async def resend_in_doubt(self, job_id: str) -> int:
        """Queue the job's in-doubt recipients again (each may then be delivered twice;
        their ``in_doubt`` flag stays set). Returns how many."""
        self._check()
        job = self.outbox.template(job_id).rowid
        writer = self._writer
        count: int = await writer.submit(
            lambda conn: writer.requeue_in_doubt(conn, job), read=False
        )
        return count

    # -- lifecycle -----------------------------------------------------------------------

    async def close(self) -> None:
        """Commit what is pending, stop the writer thread and release the sender lock.
        Claims not marked on the wire stay queued (or deferred) in the outbox."""
        if self._closed:
            return
        self._closed = True
        writer = self._writer
        pending = writer.flush()
        writer.stop()
        await asyncio.to_thread(writer.join)
        self._lock.release()
        if pending is not None:
            await pending  # raises if that last group was not committed

    async def __aenter__(self) -> Sender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _check_reply(code: object, enhanced_code: object, text: object) -> None:
    """Refuse a change that could not be stored here, not in the writer thread (where it
    would fail the whole group it joined)."""
    if not (
        (code is None or (isinstance(code, int) and not isinstance(code, bool)))
        and (enhanced_code is None or isinstance(enhanced_code, str))
        and isinstance(text, str)
    ):
        raise TypeError(
            "code must be an int or None, enhanced_code a str or None, text a str; got "
            f"{type(code).__name__}, {type(enhanced_code).__name__}, {type(text).__name__}"
        )
