"""A batch: the recipients of one ``send``, ``send_raw`` or ``send_batch`` call and their
results.

Every recipient's one final result arrives here, whichever way it was decided (the
server's reply, a count-only acceptance, a local failure, cancellation), and is counted
once in the batch's report and the engine's stats, handed to ``on_result`` (or kept, for
``send``), and the caller is woken when the last one is in. That is the one route an
outcome takes; nothing else counts results.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastsmtp._models import BatchReport, Result
from fastsmtp._stats import Stats

log = logging.getLogger("fastsmtp")

OnResult = Callable[[Result], Awaitable[None] | None]


class Tally:
    """Recipients handed to an engine and not yet finished, across its batches (what
    ``Engine.drain`` waits for)."""

    __slots__ = ("_idle", "outstanding", "stats")

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.outstanding = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def add(self, n: int) -> None:
        self.outstanding += n
        if n:
            self._idle.clear()

    def done(self, n: int) -> None:
        self.outstanding -= n
        if self.outstanding == 0:
            self._idle.set()

    def idle(self) -> None:
        """Nothing outstanding any more (the caller updated ``outstanding``)."""
        self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


class Batch:
    """The results of one send call (see the module docstring).

    ``on_result`` (sync or async) is called once per recipient; with ``collect``, results
    are kept in ``results`` by batch index (``send``). Without either, acceptances are only
    counted (``count_only``: the core reports them as counts, no Result is made).
    """

    __slots__ = (
        "_callbacks",
        "_done",
        "_room",
        "_room_below",
        "cancelled",
        "count_only",
        "failure",
        "on_result",
        "on_stop",
        "outstanding",
        "report",
        "results",
        "tally",
    )

    def __init__(
        self, tally: Tally, on_result: OnResult | None = None, *, collect: bool = False
    ) -> None:
        self.tally = tally
        self.on_result = on_result
        self.results: dict[int, Result] | None = {} if collect else None
        self.count_only = on_result is None and not collect
        self.report = BatchReport()
        self.outstanding = 0
        self.cancelled: str | None = None
        """Why the batch was cancelled (its unsent messages then fail with this text)."""
        self.failure: BaseException | None = None
        """A BaseException ``on_result`` raised: the batch stops and the caller gets it."""
        self.on_stop: Callable[[str], None] | None = None
        """Called (once) with the reason when the batch must stop: the engine drops its
        queued work."""
        self._done = asyncio.Event()
        self._done.set()
        self._room = asyncio.Event()
        self._room.set()
        self._room_below = 0
        self._callbacks: set[asyncio.Future[Any]] = set()

    # -- bookkeeping ----------------------------------------------------------------------

    def expect(self, n: int) -> None:
        """``n`` more recipients are on their way to a result."""
        if n:
            self.outstanding += n
            self.tally.add(n)
            self._done.clear()

    def _finished(self, n: int) -> None:
        outstanding = self.outstanding = self.outstanding - n
        tally = self.tally
        tally.outstanding -= n
        if not tally.outstanding:
            tally.idle()
        if not outstanding:
            self._done.set()
        if self._room_below and outstanding < self._room_below:
            self._room_below = 0
            self._room.set()

    def accepted(self, n: int) -> None:
        """``n`` recipients accepted, reported as a count (``count_only`` batches). Once
        per read on the count-only path, so the counting is written out here."""
        self.report.accepted += n
        tally = self.tally
        tally.stats.accepted += n
        # _finished(n), written out: one frame fewer per read.
        outstanding = self.outstanding = self.outstanding - n
        tally.outstanding -= n
        if not tally.outstanding:
            tally.idle()
        if not outstanding:
            self._done.set()
        if self._room_below and outstanding < self._room_below:
            self._room_below = 0
            self._room.set()

    def finish(self, result: Result) -> None:
        """Record one recipient's final result."""
        try:
            self.report.count(result)
            self.tally.stats.count(result)
            if self.results is not None:
                self.results[result.index] = result
            if self.on_result is not None:
                self._call(result)
        finally:
            self._finished(1)

    def _call(self, result: Result) -> None:
        assert self.on_result is not None
        try:
            maybe = self.on_result(result)
            if maybe is not None and inspect.isawaitable(maybe):
                task = asyncio.ensure_future(maybe)
                self._callbacks.add(task)
                task.add_done_callback(self._callback_finished)
        except Exception as exc:
            self._callback_failed(exc)
        except BaseException as exc:
            # KeyboardInterrupt, SystemExit...: not ours to swallow. The batch stops
            # taking new work and the caller gets it once the batch is consistent.
            self._callback_failed(exc)
            if self.failure is None:
                self.failure = exc
                self.stop(f"on_result raised {type(exc).__name__}")

    def stop(self, reason: str) -> None:
        """Stop the batch: what is not yet on a connection fails with ``reason``."""
        if self.cancelled is None:
            self.cancelled = reason
            if self.on_stop is not None:
                self.on_stop(reason)

    def _callback_failed(self, exc: BaseException) -> None:
        self.report.callback_errors += 1
        self.tally.stats.callback_errors += 1
        log.error("on_result raised", exc_info=exc)

    def _callback_finished(self, task: asyncio.Future[Any]) -> None:
        self._callbacks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._callback_failed(task.exception())  # type: ignore[arg-type]

    # -- waiting --------------------------------------------------------------------------

    async def wait_room(self, limit: int) -> None:
        """Wait until fewer than ``limit`` recipients are outstanding (the producer's
        backpressure)."""
        if self.outstanding < limit:
            return
        self._room.clear()
        self._room_below = limit
        await self._room.wait()

    async def wait(self) -> None:
        """Wait until every expected recipient has its result, and async callbacks ran."""
        await self._done.wait()
        if self._callbacks:
            await asyncio.gather(*self._callbacks, return_exceptions=True)

    def __repr__(self) -> str:
        return f"<Batch {self.outstanding} outstanding, {self.report.total} done>"
