"""Lots: what waits in a pool's queue for a connection.

A lot is messages of one batch, handed to connections from the front, a slice at a time.
It is the one queue item there is: a ``send_batch`` chunk (many messages, one recipient
each), a ``send``/``send_raw`` message (one message, its recipients), or a retry (one
message, the recipients that got a transient reply). Each message of a lot is one
transaction; the core tags it with ``(lot, position)`` and reports it back so, and
``envelope(position)`` says which recipients and batch indexes that transaction covers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastsmtp._batch import Batch
    from fastsmtp._fastsmtp import BuiltMessage, ClientConnection, RawMessage

    Outgoing = BuiltMessage | RawMessage


class Envelope:
    """One transaction of a lot: the message, the recipients it goes to, and the batch
    index each of them reports under."""

    __slots__ = ("indexes", "message", "recipients")

    def __init__(
        self, message: Outgoing, recipients: Sequence[str], indexes: Sequence[int]
    ) -> None:
        self.message = message
        self.recipients = recipients
        self.indexes = indexes


class Lot:
    """Messages of one batch waiting for connections (see the module docstring).

    ``first`` is the batch index of the first message's first recipient. Without
    ``recipients``, message ``k`` goes to its own envelope recipients, which report under
    consecutive indexes: ``first + k`` for a chunk of one-recipient messages,
    ``first .. first + n - 1`` for a lot of one message, or from ``starts[k]`` on (the
    single sends of one loop iteration, each with its own recipients). With ``recipients``
    (a retry for some recipients of one message), ``indexes`` gives their batch indexes.
    """

    __slots__ = (
        "attempts",
        "batch",
        "first",
        "indexes",
        "messages",
        "next",
        "recipients",
        "starts",
    )

    def __init__(
        self,
        batch: Batch,
        messages: Sequence[Outgoing],
        first: int = 0,
        *,
        recipients: list[str] | None = None,
        indexes: Sequence[int] | None = None,
        starts: Sequence[int] | None = None,
        attempts: int = 0,
    ) -> None:
        self.batch = batch
        self.messages = messages
        self.first = first
        self.recipients = recipients
        self.indexes = indexes
        self.starts = starts
        self.attempts = attempts
        """Attempts made before this lot (a retry's earlier tries)."""
        self.next = 0
        """Messages before this position have been handed to a connection."""

    def __len__(self) -> int:
        """Messages not yet handed to a connection."""
        return len(self.messages) - self.next

    def __repr__(self) -> str:
        return f"<Lot of {len(self.messages)} from {self.first}, {len(self)} waiting>"

    def envelope(self, position: int) -> Envelope:
        """The transaction of the message at ``position``."""
        message = self.messages[position]
        if self.recipients is not None:
            assert self.indexes is not None
            return Envelope(message, self.recipients, self.indexes)
        recipients = message.recipients
        if self.starts is not None:
            first = self.starts[position]
            return Envelope(message, recipients, range(first, first + len(recipients)))
        if len(self.messages) == 1:
            first = self.first
            return Envelope(message, recipients, range(first, first + len(recipients)))
        index = self.first + position
        return Envelope(message, recipients, range(index, index + len(recipients)))

    def submit(
        self, client: ClientConnection, count: int
    ) -> tuple[int, list[tuple[int, Exception]]]:
        """Hand up to ``count`` more messages to ``client`` in one call; returns how many
        were taken and ``(position, error)`` for those the core refused."""
        start = self.next
        taken = min(count, len(self.messages) - start)
        count_only = self.batch.count_only
        if self.recipients is None:
            refused = client.submit_lot(self, self.messages, start, taken, count_only=count_only)
        else:
            refused = []
            try:
                message = self.messages[start]
                client.submit(self, start, message, self.recipients, count_only=count_only)
            except Exception as e:  # the lot reports it; it is never raised
                refused.append((start, e))
        self.next = start + taken
        return taken, refused

    def take_rest(self) -> list[Envelope]:
        """The transactions not yet handed to a connection, which this lot then no longer
        holds (for giving them a result without sending them)."""
        rest = [self.envelope(k) for k in range(self.next, len(self.messages))]
        self.next = len(self.messages)
        return rest

    def retry(self, position: int, which: list[int]) -> Lot:
        """A lot for the recipients at positions ``which`` of message ``position``'s
        envelope, after this attempt."""
        envelope = self.envelope(position)
        return Lot(
            self.batch,
            [envelope.message],
            recipients=[envelope.recipients[i] for i in which],
            indexes=[envelope.indexes[i] for i in which],
            attempts=self.attempts + 1,
        )

    def again(self, position: int, attempts: int) -> Lot:
        """A lot for message ``position`` whole (its transaction was cut off), counting
        ``attempts`` attempts so far."""
        envelope = self.envelope(position)
        return Lot(
            self.batch,
            [envelope.message],
            recipients=list(envelope.recipients),
            indexes=list(envelope.indexes),
            attempts=attempts,
        )
