"""How a transaction's outcome becomes per-recipient Results: which reply decides each
recipient, and which recipients go round again. Free of I/O, so it is easy to read and to
test on its own.

A recipient is ``accepted`` only when its RCPT and the end of data were both answered 2xx:
the core's ``verdicts()`` gives that reply (it never gives a 2xx otherwise). 5xx is
``rejected``; 4xx is retried while attempts remain, then ``deferred``; a transaction cut
off after its end of data went out is ``deferred`` and ``in_doubt`` (never sent again).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from fastsmtp._models import Result, Status

if TYPE_CHECKING:
    from fastsmtp._fastsmtp import TransactionAborted, TransactionResult
    from fastsmtp._lot import Envelope, Lot


class ReplyLike(Protocol):
    """A server reply (the core's Reply) or an SMTPReplyError: a code and an enhanced code."""

    @property
    def code(self) -> int: ...
    @property
    def enhanced_code(self) -> str | None: ...


NO_REPLY_AFTER_DATA = (
    "end of data sent but no reply came ({reason}); the server may have accepted the "
    "message, so it was not sent again"
)


def results_for(
    envelope: Envelope,
    status: Status,
    reply: ReplyLike | None,
    text: str,
    attempts: int,
    *,
    in_doubt: bool = False,
) -> list[Result]:
    """The same final result for every recipient of ``envelope``."""
    code = reply.code if reply is not None else None
    enhanced = reply.enhanced_code if reply is not None else None
    message_id = envelope.message.message_id or None
    return [
        Result(
            recipient=recipient,
            status=status,
            code=code,
            enhanced_code=enhanced,
            text=text,
            message_id=message_id,
            index=index,
            attempts=attempts,
            in_doubt=in_doubt,
        )
        for recipient, index in zip(envelope.recipients, envelope.indexes, strict=True)
    ]


def settle(
    lot: Lot, position: int, event: TransactionResult, can_retry: bool
) -> tuple[list[Result], Lot | None]:
    """Final Results for the recipients this transaction decided, and a lot for those
    that got a transient (4xx) reply and may be tried again (None when there are none, or
    when ``can_retry`` is False: they are then ``deferred``)."""
    envelope = lot.envelope(position)
    attempts = lot.attempts + 1
    if event.all_accepted:
        # The common case: every recipient accepted, as the end of data said.
        data = event.data_reply
        assert data is not None
        return results_for(envelope, "accepted", data, data.text, attempts), None
    message_id = envelope.message.message_id or None
    results: list[Result] = []
    retry: list[int] = []
    verdicts = event.verdicts()
    for i, (recipient, index) in enumerate(zip(envelope.recipients, envelope.indexes, strict=True)):
        reply = verdicts[i]
        status: Status
        if reply is None:
            status, code, enhanced, text = "deferred", None, None, "no reply decided it"
        else:
            code, enhanced, text = reply.code, reply.enhanced_code, reply.text
            if code < 300:
                status = "accepted"
            elif code >= 500:
                status = "rejected"
            elif can_retry:
                retry.append(i)
                continue
            else:
                status = "deferred"
        results.append(
            Result(
                recipient=recipient,
                status=status,
                code=code,
                enhanced_code=enhanced,
                text=text,
                message_id=message_id,
                index=index,
                attempts=attempts,
            )
        )
    return results, (lot.retry(position, retry) if retry else None)


def settle_aborted(
    lot: Lot, position: int, event: TransactionAborted, charged: bool, can_retry: bool
) -> tuple[list[Result], Lot | None]:
    """Results or a retry for a transaction the connection's end cut off. ``charged``:
    this transaction was the one the server was working on, so this try counts as an
    attempt; the ones queued behind it never got the server's attention and go again
    without it (the returned lot then has ``lot.attempts`` unchanged)."""
    envelope = lot.envelope(position)
    reply = event.reply
    reason = event.reason
    attempts = lot.attempts + 1
    # A 421 in place of the end-of-data reply means the server took nothing in flight.
    if event.end_of_data_sent and not (reply is not None and reply.code == 421):
        text = NO_REPLY_AFTER_DATA.format(reason=reason)
        return results_for(envelope, "deferred", reply, text, attempts, in_doubt=True), None
    if not charged:
        return [], lot.again(position, lot.attempts)
    if can_retry:
        return [], lot.again(position, attempts)
    text = f"gave up after {attempts} attempts: {reason}"
    return results_for(envelope, "deferred", reply, text, attempts), None
