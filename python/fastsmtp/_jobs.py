"""Jobs: one message on its way to the server, and how replies become per-recipient Results.

A job is one transaction's worth of work (a built message and the envelope recipients it
still has to reach). The mapping from the protocol core's TransactionResult to Results is
kept here, free of I/O, so it is easy to read and to test: which reply decides each
recipient, and which recipients go round again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from fastsmtp._models import Result, Status

if TYPE_CHECKING:
    from fastsmtp._fastsmtp import BuiltMessage, Reply, TransactionResult


class RawBody:
    """A message the caller assembled itself, sent byte for byte (the core still turns any
    bare CR or LF into CRLF and dot-stuffs or chunks it): ``Engine.send_raw``."""

    __slots__ = ("_data", "envelope_sender", "message_id")

    def __init__(self, envelope_sender: str, data: bytes, message_id: str = "") -> None:
        self.envelope_sender = envelope_sender
        self.message_id = message_id
        self._data = data

    def __len__(self) -> int:
        return len(self._data)

    def as_bytes(self) -> bytes:
        return self._data


class Job:
    """One message and the recipients it still has to reach.

    ``indexes[i]`` is the batch index reported for ``recipients[i]``; an int given for
    ``indexes`` is the first of consecutive ones (a batch message's one recipient, or every
    recipient of a ``send``), so no list is made per message. ``done`` is called once
    per recipient with its final Result; a job finishes when every recipient has one. When
    every recipient is accepted and ``on_accepted`` is set, it is called with their number
    instead (no Result objects: for callers that only count); the connection does that,
    from the protocol binding's Accepted events.
    """

    __slots__ = (
        "_indexes",
        "_recipients",
        "attempts",
        "done",
        "explicit_envelope",
        "message",
        "on_accepted",
    )

    def __init__(
        self,
        message: BuiltMessage | RawBody,
        recipients: list[str] | None,
        indexes: list[int] | int,
        done: Callable[[Result], None],
        on_accepted: Callable[[int], None] | None = None,
        attempts: int = 0,
        explicit_envelope: bool = False,
    ) -> None:
        # Positional, no checks: send_batch makes one per recipient (keywords and an
        # isinstance cost twice as much as the assignments).
        self.message = message
        self._recipients = recipients
        self._indexes = indexes
        self.done = done
        self.on_accepted = on_accepted
        self.attempts = attempts
        # Submit as sender + recipients + bytes rather than the BuiltMessage's own envelope:
        # a retry for some of its recipients only, or a RawBody.
        self.explicit_envelope = explicit_envelope

    @property
    def recipients(self) -> list[str]:
        """The envelope recipients; None at construction means the BuiltMessage's own
        (read only when needed: a counted-only job never asks)."""
        if self._recipients is None:
            return self.message.recipients  # type: ignore[union-attr]  # a BuiltMessage
        return self._recipients

    @property
    def indexes(self) -> list[int]:
        if isinstance(self._indexes, int):
            return list(range(self._indexes, self._indexes + len(self.recipients)))
        return self._indexes

    def result(
        self,
        i: int,
        status: Status,
        code: int | None,
        enhanced_code: str | None,
        text: str,
    ) -> Result:
        return Result(
            recipient=self.recipients[i],
            status=status,
            code=code,
            enhanced_code=enhanced_code,
            text=text,
            message_id=self.message.message_id,
            index=self.indexes[i],
            attempts=self.attempts,
        )

    def finish_all(self, status: Status, reply: Reply | None, text: str | None = None) -> None:
        """Give every remaining recipient the same final result."""
        code = reply.code if reply is not None else None
        enhanced = reply.enhanced_code if reply is not None else None
        message = text if text is not None else (reply.text if reply is not None else "")
        for i in range(len(self.recipients)):
            self.done(self.result(i, status, code, enhanced, message))

    def retry_subset(self, positions: list[int]) -> Job:
        """A new job for the recipients at ``positions`` that must be tried again."""
        return Job(
            self.message,
            [self.recipients[i] for i in positions],
            [self.indexes[i] for i in positions],
            self.done,
            self.on_accepted,
            self.attempts,
            explicit_envelope=True,
        )


class Run:
    """Consecutive messages of a batch, one recipient each, queued as one item.

    A connection hands a slice of it to the core in one call (``submit_run``): nothing
    per message is made in Python on the way out. A Job is made only for a message whose
    transaction needs a result of its own (refused, failed, retried, or every result when
    the batch has ``on_result``); the core's events carry the run and the position.
    ``indexes`` as for Job: an int is the first of consecutive batch indexes.
    """

    __slots__ = ("done", "indexes", "messages", "next", "on_accepted")

    def __init__(
        self,
        messages: list[BuiltMessage],
        indexes: list[int] | int,
        done: Callable[[Result], None],
        on_accepted: Callable[[int], None] | None,
    ) -> None:
        self.messages = messages
        self.indexes = indexes
        self.done = done
        self.on_accepted = on_accepted
        self.next = 0
        """Messages before this position have been handed to a connection."""

    def __len__(self) -> int:
        """Messages not yet handed to a connection."""
        return len(self.messages) - self.next

    def job(self, position: int, attempts: int = 1) -> Job:
        """The Job of the message at ``position`` (after its first attempt, by default)."""
        indexes = self.indexes
        index = indexes + position if isinstance(indexes, int) else indexes[position]
        return Job(self.messages[position], None, index, self.done, self.on_accepted, attempts)

    def take_rest(self) -> list[Job]:
        """Jobs for the messages not yet handed to a connection, which this run then no
        longer holds (for giving them a result without sending them)."""
        jobs = [self.job(position, 0) for position in range(self.next, len(self.messages))]
        self.next = len(self.messages)
        return jobs


def settle(job: Job, outcome: TransactionResult, can_retry: bool) -> Job | None:
    """Report final Results for the recipients this transaction decided, and return a job
    for those that got a transient (4xx) reply and may be retried (None when there are
    none, or when ``can_retry`` is False, in which case they are reported ``deferred``).

    A recipient is ``accepted`` only when its RCPT and the end of data were both answered
    2xx: that is the one proof that the server took the message for it.
    """
    # (With ``on_accepted``, an all-accepted transaction never gets here: the protocol
    # binding reports it as a count in an Accepted event.)
    positive = outcome.all_positive
    data = outcome.data_reply
    if positive and data is not None:
        # The common case: every recipient accepted, as the end of data said.
        code, enhanced, text = data.code, data.enhanced_code, data.text
        message_id, attempts, done = job.message.message_id, job.attempts, job.done
        for recipient, index in zip(job.recipients, job.indexes, strict=True):
            done(
                Result(
                    recipient=recipient,
                    status="accepted",
                    code=code,
                    enhanced_code=enhanced,
                    text=text,
                    message_id=message_id,
                    index=index,
                    attempts=attempts,
                )
            )
        return None
    mail = outcome.mail_reply
    rcpts = outcome.rcpt_replies
    retry: list[int] = []
    for i in range(len(job.recipients)):
        rcpt = rcpts[i] if i < len(rcpts) else None
        if mail.code >= 400:
            reply = mail
        elif rcpt is None:
            reply = None  # MAIL took, yet this RCPT was never answered: no proof either way
        elif rcpt.code >= 400:
            reply = rcpt
        else:
            reply = data
        if reply is None:
            job.done(job.result(i, "deferred", None, None, "no reply to RCPT or end of data"))
            continue
        code = reply.code
        if code < 400:
            status: Status = "accepted"
        elif code >= 500:
            status = "rejected"
        elif can_retry:
            retry.append(i)
            continue
        else:
            status = "deferred"
        job.done(job.result(i, status, code, reply.enhanced_code, reply.text))
    return job.retry_subset(retry) if retry else None
