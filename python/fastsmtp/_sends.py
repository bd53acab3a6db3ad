"""Single sends, gathered: the ``send``/``send_raw`` calls of one loop iteration travel
together.

A web app sends one message per request, from many tasks at once. Each call waits for its
own results, but the messages handed over in the same loop iteration become one lot: a
connection takes them as one group and pipelines them, as it does a ``send_batch`` chunk,
and their results go back to each caller through one ``SendGroup`` (one outcome route,
as for batches). The per-call cost is a future and a result list, not a batch of its own.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from typing import TYPE_CHECKING

from fastsmtp._batch import Batch, Tally
from fastsmtp._lot import Lot
from fastsmtp._models import Result

if TYPE_CHECKING:
    from fastsmtp._fastsmtp import BuiltMessage, RawMessage
    from fastsmtp._pool import Pool


class _Call:
    """One ``send`` call: its message's results, by recipient position."""

    __slots__ = ("future", "remaining", "results")

    def __init__(self, future: asyncio.Future[list[Result]], recipients: int) -> None:
        self.future = future
        self.results: list[Result | None] = [None] * recipients
        self.remaining = recipients


class SendGroup(Batch):
    """The outcomes of one loop iteration's single sends. Message ``k`` of the group's lot
    reports under indexes ``bases[k] ..``; each result is handed to its call with the
    index it has in that call (its recipient's position in to + cc + bcc)."""

    __slots__ = ("_bases", "_calls")

    def __init__(self, tally: Tally) -> None:
        super().__init__(tally)
        self.count_only = False
        self._bases: list[int] = []
        self._calls: list[_Call] = []

    def add(self, future: asyncio.Future[list[Result]], recipients: int) -> int:
        """A call whose message has ``recipients``; returns its first group index."""
        base = self._bases[-1] + len(self._calls[-1].results) if self._calls else 0
        self._bases.append(base)
        self._calls.append(_Call(future, recipients))
        return base

    def finish(self, result: Result) -> None:
        super().finish(result)  # counted once, in the report and the engine's stats
        k = bisect_right(self._bases, result.index) - 1
        call = self._calls[k]
        result.index -= self._bases[k]
        call.results[result.index] = result
        call.remaining -= 1
        if not call.remaining and not call.future.done():
            call.future.set_result(call.results)  # type: ignore[arg-type]  # all filled


class SendGatherer:
    """Collects the single sends of one loop iteration and queues them as one lot."""

    def __init__(self, pool: Pool, tally: Tally) -> None:
        self._pool = pool
        self._tally = tally
        self._loop = asyncio.get_running_loop()  # the engine's; made on it
        self._messages: list[BuiltMessage | RawMessage] = []
        self._group: SendGroup | None = None
        self._starts: list[int] = []

    def send(self, message: BuiltMessage | RawMessage) -> asyncio.Future[list[Result]]:
        """Queue ``message`` with this iteration's others; its future gets one Result per
        envelope recipient, in order."""
        loop = self._loop
        if self._group is None:
            self._group = SendGroup(self._tally)
            loop.call_soon(self._flush)
        future: asyncio.Future[list[Result]] = loop.create_future()
        recipients = message.recipient_count
        self._starts.append(self._group.add(future, recipients))
        self._group.expect(recipients)
        self._messages.append(message)
        return future

    def _flush(self) -> None:
        group, messages, starts = self._group, self._messages, self._starts
        self._group, self._messages, self._starts = None, [], []
        assert group is not None
        self._pool.put(Lot(group, messages, starts=starts))
