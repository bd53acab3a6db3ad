"""A durable outbox: jobs and per-recipient state in an embedded SQLite database, so a
crash, a deploy or a 4xx that lasts hours loses nothing and sends nothing twice.

The file
    ``Outbox(path)`` opens (creating or migrating) a SQLite database in WAL mode with
    ``synchronous=FULL``: every commit that is reported done is on disk. Several processes
    may open one file at once to add jobs and to inspect or operate on them; **one**
    process at a time sends from it (:meth:`Outbox.open_sender` takes an ``flock`` on
    ``<path>-sender.lock``, released by the kernel even when the holder is SIGKILLed; a
    second sender gets :class:`OutboxLocked` naming the holder). The header carries an
    application id and a schema version: a foreign database, a damaged or non-SQLite file,
    or one from a newer fastsmtp is refused with a typed error before anything is written.

Jobs
    ``outbox.create_job(job_id, template, recipients, data=..., lane="bulk"|"transactional",
    send_at=...)`` (or ``await outbox.enqueue(...)``, which also takes an async iterable)
    stores the template once (the :class:`fastsmtp.Message` as msgpack, attachments
    included) and one small row per recipient (address, name, data as msgpack or NULL,
    state, attempts, next attempt, final code/enhanced code/text, in-doubt flag), streamed
    from the iterable and committed in chunks. The same ``job_id`` again with the same
    template and data returns the stored job (and finishes adding recipients when an
    earlier call was interrupted); with a different one it raises :class:`JobConflict`.
    Each recipient's Message-ID is fixed at creation (``JobTemplate.message_id(index)``),
    as is the template's Date, so a resend renders the same message.

Sending (one sender process; see :mod:`fastsmtp.outbox._sender` for the contract)
    ``sender = await outbox.open_sender()``; ``await sender.claim(n)`` hands out due
    recipients, transactional lane first, in index order within a job (``job_id=`` for
    one job's only);
    ``await sender.mark_on_wire(claims)`` before the end of data;
    ``sender.record(claim, "accepted", 250, "2.0.0", text)`` for a final outcome and
    ``sender.defer(claim, 451, ...)`` for a 4xx (retried after :class:`BackoffPolicy`'s
    delay until ``max_queue_lifetime``, then final ``expired``, reported ``deferred``).
    Changes are committed by one writer thread in groups (one fsync per group); each call
    returns its group's future, and ``await sender.flush()`` waits for everything so far.

States
    ``queued -> on_wire -> accepted | rejected | failed`` or ``-> deferred`` and round
    again; ``in_doubt`` when a sender finds a recipient ``on_wire`` at start (the previous
    one died after its end of data went out): never sent again unless
    ``open_sender(resend_in_doubt=True)`` or ``sender.resend_in_doubt(job_id)`` asks, at the
    risk of a duplicate (its ``in_doubt`` flag stays set either way).

Inspecting and operating (any process, while a sender runs)
    ``outbox.jobs()``, ``outbox.job(job_id)`` (with counts by state),
    ``outbox.recipients(job_id)`` and ``outbox.results(job_id)`` (streamed page by page),
    ``outbox.cancel(job_id)``, ``outbox.retry_now(job_id)``, ``outbox.purge(older_than)``,
    ``outbox.check()`` (``PRAGMA integrity_check``), ``outbox.sender_holder()`` (which
    process sends now; None means rows shown ``on_wire`` are in doubt).

Faults
    A full disk raises :class:`OutboxFull` (also an ``OSError`` with ``ENOSPC``), a file
    that cannot be written :class:`OutboxReadOnly`, a database locked past the busy timeout
    :class:`OutboxLocked`, a damaged one :class:`OutboxCorrupt`. A failed commit fails
    every future of its group and changes nothing: rows keep their last committed state.
"""

try:
    import apsw  # noqa: F401
except ModuleNotFoundError as e:  # pragma: no cover - tested in a venv without the extra
    if e.name is None or e.name.partition(".")[0] != "apsw":
        raise
    raise ModuleNotFoundError(
        "fastsmtp.outbox needs apsw, which comes with the 'outbox' extra: "
        "pip install 'fastsmtp[outbox]'",
        name="apsw",
    ) from e

from fastsmtp.outbox._backoff import BackoffPolicy
from fastsmtp.outbox._errors import (
    JobConflict,
    JobNotFound,
    OutboxClosed,
    OutboxCorrupt,
    OutboxError,
    OutboxForeignFile,
    OutboxFull,
    OutboxLocked,
    OutboxReadOnly,
    OutboxSchemaTooNew,
)
from fastsmtp.outbox._models import (
    Claim,
    JobInfo,
    JobState,
    JobTemplate,
    Lane,
    RecipientRecord,
    State,
)
from fastsmtp.outbox._schema import SCHEMA_VERSION
from fastsmtp.outbox._sender import Sender
from fastsmtp.outbox._store import Outbox
from fastsmtp.outbox._writer import GroupCommit, WriterStats

__all__ = [
    "SCHEMA_VERSION",
    "BackoffPolicy",
    "Claim",
    "GroupCommit",
    "JobConflict",
    "JobInfo",
    "JobNotFound",
    "JobState",
    "JobTemplate",
    "Lane",
    "Outbox",
    "OutboxClosed",
    "OutboxCorrupt",
    "OutboxError",
    "OutboxForeignFile",
    "OutboxFull",
    "OutboxLocked",
    "OutboxReadOnly",
    "OutboxSchemaTooNew",
    "RecipientRecord",
    "Sender",
    "State",
    "WriterStats",
]
