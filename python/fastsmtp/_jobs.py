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


class Job:
    """One message and the recipients it still has to reach.

    ``indexes[i]`` is the batch index reported for ``recipients[i]``. ``done`` is called once
    per recipient with its final Result; a job finishes when every recipient has one.
    """

    __slots__ = ("attempts", "done", "indexes", "message", "recipients", "size")

    def __init__(
        self,
        message: BuiltMessage,
        recipients: list[str],
        indexes: list[int],
        done: Callable[[Result], None],
        attempts: int = 0,
    ) -> None:
        self.message = message
        self.recipients = recipients
        self.indexes = indexes
        self.done = done
        self.attempts = attempts
        self.size = len(message)

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
            self.attempts,
        )


def settle(job: Job, outcome: TransactionResult, can_retry: bool) -> Job | None:
    """Report final Results for the recipients this transaction decided, and return a job
    for those that got a transient (4xx) reply and may be retried (None when there are
    none, or when ``can_retry`` is False, in which case they are reported ``deferred``).

    A recipient is ``accepted`` only when its RCPT and the end of data were both answered
    2xx: that is the one proof that the server took the message for it.
    """
    mail = outcome.mail_reply
    data = outcome.data_reply
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
