"""The outbox file as any process sees it: create jobs, inspect and operate.

:class:`Outbox` opens (and when needed creates or migrates) the database and offers what
every process may do at any time, while a sender runs elsewhere: add jobs, list them with
counts, stream their recipients and results, cancel, retry now, purge. These are
blocking calls on a connection of their own, each a short transaction (SQLite serialises
them with the sender's group commits). Sending is the sender's: see :mod:`._sender`.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterable, Iterable, Iterator
from datetime import datetime, timedelta
from itertools import islice
from typing import TYPE_CHECKING, Any

import apsw

from fastsmtp._errors import InvalidMessage
from fastsmtp._models import Message, Result
from fastsmtp.outbox import _codec, _lock
from fastsmtp.outbox._backoff import BackoffPolicy
from fastsmtp.outbox._errors import (
    JobConflict,
    JobNotFound,
    OutboxClosed,
    OutboxError,
)
from fastsmtp.outbox._models import (
    CANCELLED,
    DEFERRED,
    FIRST_FINAL,
    IN_DOUBT,
    JOB_ACTIVE,
    JOB_CANCELLED,
    JOB_FILLING,
    JOB_STATE_NAMES,
    KEY_BITS,
    LANE_CODES,
    LANES,
    MAX_INDEX,
    QUEUED,
    RESULT_STATUS,
    STATE_CODES,
    STATE_NAMES,
    JobInfo,
    JobTemplate,
    Lane,
    RecipientRecord,
    recipient_key,
)
from fastsmtp.outbox._schema import connect, sqlite_errors

if TYPE_CHECKING:
    from fastsmtp.outbox._sender import Sender

DEFAULT_CHUNK = 20_000
"""Recipients per insert transaction when adding a job (one fsync each). A sender running
meanwhile waits for each chunk's write lock (~0.1 s for 20,000); pass a smaller
``chunk_size`` to keep its commits quicker."""

_JOB_COLUMNS = "id, job_id, lane, state, created_at, send_at, fingerprint, total"
_RECIPIENT_COLUMNS = (
    "key, address, name, data, state, attempts, next_attempt_at, code, enhanced_code, "
    "text, message_id, in_doubt"
)
_PAGE = 2000
_WITH_OUTCOME = tuple(STATE_NAMES[code] for code in RESULT_STATUS)


class Outbox:
    """A durable outbox file (SQLite, WAL). Several processes may open the same file;
    one of them at a time may send from it (:meth:`open_sender`).

    ``readonly=True`` opens for inspection only (a read-only file needs this);
    ``create=False`` refuses to make a new file; ``backoff`` is the retry policy of the
    sender; ``busy_timeout`` (seconds) how long a change waits for another process's
    write lock. Raises :class:`OutboxCorrupt`,
    :class:`OutboxForeignFile`, :class:`OutboxSchemaTooNew`, :class:`OutboxReadOnly` or
    :class:`OutboxLocked` when the file cannot be used as an outbox.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        readonly: bool = False,
        create: bool = True,
        backoff: BackoffPolicy | None = None,
        busy_timeout: float = 5.0,
    ) -> None:
        self.path = os.fspath(path)
        self.readonly = readonly
        self.backoff = backoff if backoff is not None else BackoffPolicy()
        self.busy_timeout = busy_timeout
        """Seconds a change waits for another process's write lock before OutboxLocked
        (a CLI's cancel waits for the sender's commit of the moment)."""
        self._conn: apsw.Connection | None = connect(
            self.path, readonly=readonly, create=create, busy_timeout=busy_timeout
        )
        self._lock = threading.RLock()
        self._templates: dict[int, JobTemplate] = {}
        self._sender: Sender | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the file (a sender must be closed first)."""
        if self._sender is not None and not self._sender.closed:
            raise OutboxError("close the sender before its outbox", path=self.path)
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._conn is None

    def _db(self) -> apsw.Connection:
        if self._conn is None:
            raise OutboxClosed(f"{self.path}: the outbox is closed", path=self.path)
        return self._conn

    def sender_holder(self) -> str | None:
        """Which process sends from this outbox now (``"pid N on HOST"``), or None when
        none does: then recipients shown ``on_wire`` are in doubt (their sender died) and
        become ``in_doubt`` when the next sender starts."""
        return _lock.holder(self.path)

    async def open_sender(self, *, resend_in_doubt: bool = False) -> Sender:
        """Become this outbox's one sender: take the sender lock (OutboxLocked when another
        process holds it), turn recipients left ``on_wire`` by a dead sender into
        ``in_doubt``, and start the group-committing writer thread.

        ``resend_in_doubt=True`` queues every in-doubt recipient again: each may then
        reach its recipient twice (the server may have taken it before the crash). Their
        ``in_doubt`` flag stays set, so results say which ones."""
        from fastsmtp.outbox._sender import Sender

        if self.readonly:
            raise OutboxError(f"{self.path}: opened read-only: cannot send", path=self.path)
        if self._sender is not None and not self._sender.closed:
            raise OutboxError(f"{self.path}: this Outbox already has a sender", path=self.path)
        self._sender = await Sender.start(self, resend_in_doubt=resend_in_doubt)
        return self._sender

    # -- adding jobs ---------------------------------------------------------------------

    def create_job(
        self,
        job_id: str,
        template: Message,
        recipients: Iterable[object] | None = None,
        *,
        data: dict[str, Any] | None = None,
        lane: Lane = "bulk",
        send_at: datetime | float | None = None,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> JobInfo:
        """Store a job: its template once, one row per recipient, committed in chunks;
        returns once all of it is committed.

        Idempotent: when ``job_id`` exists with the same template and data, nothing is
        added and the stored job is returned (a process that restarts calls it again and
        resumes). When an earlier call was interrupted while adding recipients, the first
        ``total`` recipients are skipped and the rest added (give the same recipients in
        the same order). The same ``job_id`` with another template raises JobConflict.
        Recipients are str, :class:`fastsmtp.Recipient` or dicts (as for send_batch).

        Without ``recipients``, ``template`` is one literal message (with to/cc/bcc): its
        envelope recipients become the rows, all sharing one message and Message-ID
        (``JobTemplate.literal``).
        """
        rows = _literal_recipients(template, recipients)
        if isinstance(rows, AsyncIterable):
            raise TypeError("create_job takes an iterable; use enqueue for an async one")
        filler = self._begin_job(job_id, template, data, lane, send_at)
        if filler.done:
            return filler.info()
        iterator = iter(rows)
        if filler.skip:
            for _ in islice(iterator, filler.skip):
                pass
        while chunk := list(islice(iterator, chunk_size)):
            filler.add(chunk)
        return filler.seal()

    async def enqueue(
        self,
        job_id: str,
        template: Message,
        recipients: Iterable[object] | AsyncIterable[object] | None = None,
        *,
        data: dict[str, Any] | None = None,
        lane: Lane = "bulk",
        send_at: datetime | float | None = None,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> JobInfo:
        """:meth:`create_job` for asyncio callers: the inserts and their fsyncs run in a
        worker thread, and ``recipients`` may be an async iterable."""
        rows = _literal_recipients(template, recipients)
        filler = await asyncio.to_thread(self._begin_job, job_id, template, data, lane, send_at)
        if filler.done:
            return filler.info()
        skip = filler.skip
        async for chunk in _achunks(rows, chunk_size):
            if skip >= len(chunk):
                skip -= len(chunk)
                continue
            if skip:
                chunk, skip = chunk[skip:], 0
            await asyncio.to_thread(filler.add, chunk)
        return await asyncio.to_thread(filler.seal)

    def _begin_job(
        self,
        job_id: str,
        template: Message,
        data: dict[str, Any] | None,
        lane: Lane,
        send_at: datetime | float | None,
    ) -> _JobFiller:
        if not isinstance(job_id, str) or not job_id:
            raise InvalidMessage("job_id must be a non-empty str", field="job_id")
        if lane not in LANE_CODES:
            raise InvalidMessage(f"lane must be one of {LANES}, not {lane!r}", field="lane")
        fp = _codec.fingerprint(template, data)
        now = time.time()
        due = _codec.to_timestamp(send_at, now)
        db = self._db()
        with self._lock, sqlite_errors(self.path, db), _transaction(db):
            row = db.execute(
                "SELECT id, fingerprint, state, total FROM jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
            if row is not None:
                rowid, stored_fp, state, total = row
                if bytes(stored_fp) != fp:
                    raise JobConflict(
                        f"job {job_id!r} exists with a different template or batch data",
                        job_id=job_id,
                        path=self.path,
                    )
                return _JobFiller(self, job_id, rowid, total, done=state != JOB_FILLING)
            token = _codec.new_msgid_token()
            frozen = _codec.freeze(template, token)
            db.execute(
                "INSERT INTO jobs (job_id, lane, state, created_at, send_at, fingerprint,"
                " template, data, msgid_token, msgid_domain) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    job_id,
                    LANE_CODES[lane],
                    JOB_FILLING,
                    now,
                    due,
                    fp,
                    _codec.encode_template(frozen),
                    _codec.encode_data(data),
                    token,
                    _codec.msgid_domain(frozen),
                ),
            )
            rowid = db.last_insert_rowid()
        return _JobFiller(self, job_id, rowid, 0, done=False)

    # -- inspecting ----------------------------------------------------------------------

    def job(self, job_id: str, *, counts: bool = True) -> JobInfo:
        """One job, with its recipients counted by state (a scan of its rows) unless
        ``counts=False``. Raises JobNotFound."""
        db = self._db()
        with self._lock, sqlite_errors(self.path, db):
            row = db.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
            if row is None:
                raise JobNotFound(job_id, path=self.path)
            return self._job_info(db, row, counts)

    def jobs(self, *, counts: bool = False) -> list[JobInfo]:
        """Every job, oldest first (with ``counts=True`` each job's rows are scanned)."""
        db = self._db()
        with self._lock, sqlite_errors(self.path, db):
            rows = db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs ORDER BY id").fetchall()
            return [self._job_info(db, row, counts) for row in rows]

    def _job_info(self, db: apsw.Connection, row: tuple[Any, ...], counts: bool) -> JobInfo:
        rowid, job_id, lane, state, created_at, send_at, fp, total = row
        by_state: dict[str, int] = {}
        if counts:
            lo = rowid << KEY_BITS
            for code, n in db.execute(
                "SELECT state, count(*) FROM recipients WHERE key BETWEEN ? AND ? GROUP BY state",
                (lo, lo | MAX_INDEX),
            ):
                by_state[STATE_NAMES[code]] = n
        return JobInfo(
            job_id=job_id,
            lane=LANES[lane],
            state=JOB_STATE_NAMES[state],
            created_at=created_at,
            send_at=send_at,
            total=total,
            fingerprint=bytes(fp).hex(),
            counts=by_state,
        )

    def template(self, job_id: str | int, *, conn: apsw.Connection | None = None) -> JobTemplate:
        """What a job's messages are rendered from (by job_id, or by the job's internal
        number, the high bits of a recipient key). Cached: it never changes. (``conn``:
        the sender's writer thread reads through its own connection.)"""
        if isinstance(job_id, int):
            cached = self._templates.get(job_id)
            if cached is not None:
                return cached
        sql = (
            "SELECT id, job_id, lane, send_at, template, data, msgid_token, msgid_domain "
            f"FROM jobs WHERE {'id' if isinstance(job_id, int) else 'job_id'} = ?"
        )
        row: Any
        if conn is not None:
            row = conn.execute(sql, (job_id,)).fetchone()
        else:
            db = self._db()
            with self._lock, sqlite_errors(self.path, db):
                row = db.execute(sql, (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(str(job_id), path=self.path)
        rowid, name, lane, send_at, template, data, token, domain = row
        made = JobTemplate(
            job_id=name,
            rowid=rowid,
            message=_codec.decode_template(template),
            data=_codec.decode_data(data),
            lane=LANES[lane],
            send_at=send_at,
            msgid_token=token,
            msgid_domain=domain,
        )
        self._templates[rowid] = made
        return made

    def recipients(
        self, job_id: str, *, states: Iterable[str] | None = None
    ) -> Iterator[RecipientRecord]:
        """A job's recipient rows in index order, read page by page (no read transaction
        is held between pages, so a million rows take bounded memory and do not hold
        back the sender's checkpoints). ``states`` keeps only those states."""
        job = self.template(job_id)
        where = ""
        if states is not None:
            codes = sorted({STATE_CODES[s] for s in states})  # KeyError for an unknown one
            where = f" AND state IN ({', '.join(map(str, codes))})" if codes else " AND 0"
        lo = job.rowid << KEY_BITS
        hi = lo | MAX_INDEX
        decode = _codec.decode_data
        while True:
            db = self._db()
            with self._lock, sqlite_errors(self.path, db):
                rows: list[Any] = db.execute(
                    f"SELECT {_RECIPIENT_COLUMNS} FROM recipients WHERE key BETWEEN ? AND ?"
                    f"{where} ORDER BY key LIMIT ?",
                    (lo, hi, _PAGE),
                ).fetchall()
            for key, address, name, data, state, attempts, at, code, enh, text, mid, doubt in rows:
                index = key & MAX_INDEX
                yield RecipientRecord(
                    job_id=job.job_id,
                    index=index,
                    address=address,
                    name=name,
                    data=decode(data),
                    state=STATE_NAMES[state],
                    attempts=attempts,
                    next_attempt_at=at,
                    code=code,
                    enhanced_code=enh,
                    text=text,
                    message_id=mid or job.message_id(index),
                    in_doubt=bool(doubt),
                )
            if len(rows) < _PAGE:
                return
            lo = rows[-1][0] + 1

    def results(self, job_id: str) -> Iterator[Result]:
        """A :class:`fastsmtp.Result` for every recipient of the job that has an outcome
        (final, or in doubt: reported ``deferred`` with the reason), in index order,
        streamed (see :meth:`recipients`)."""
        for record in self.recipients(job_id, states=_WITH_OUTCOME):
            result = record.to_result()
            if result is not None:
                yield result

    def check(self) -> list[str]:
        """SQLite's ``PRAGMA integrity_check`` (reads the whole file): ``["ok"]`` when
        the database is sound, else the problems found."""
        db = self._db()
        with self._lock, sqlite_errors(self.path, db):
            try:
                return [str(row[0]) for row in db.execute("PRAGMA integrity_check")]
            except (apsw.CorruptError, apsw.NotADBError) as exc:
                return [f"integrity_check could not finish: {exc}"]

    # -- operating -----------------------------------------------------------------------

    def cancel(self, job_id: str) -> int:
        """Cancel a job: its recipients not yet sent (queued, deferred, in doubt) become
        ``cancelled`` and are never sent; those on the wire finish. Returns how many were
        cancelled."""
        db = self._db()
        with self._lock, sqlite_errors(self.path, db), _transaction(db):
            rowid = self._rowid(db, job_id)
            db.execute("UPDATE jobs SET state = ? WHERE id = ?", (JOB_CANCELLED, rowid))
            lo = rowid << KEY_BITS
            db.execute(
                "UPDATE recipients SET state = ?, next_attempt_at = NULL "
                "WHERE key BETWEEN ? AND ? AND state IN (?, ?, ?)",
                (CANCELLED, lo, lo | MAX_INDEX, QUEUED, DEFERRED, IN_DOUBT),
            )
            return int(db.changes())

    def retry_now(self, job_id: str) -> int:
        """Make the job's deferred recipients due now. Returns how many."""
        db = self._db()
        with self._lock, sqlite_errors(self.path, db), _transaction(db):
            rowid = self._rowid(db, job_id)
            lo = rowid << KEY_BITS
            db.execute(
                "UPDATE recipients SET next_attempt_at = ? "
                "WHERE state = 2 AND next_attempt_at > ? AND key BETWEEN ? AND ?",
                (time.time(), time.time(), lo, lo | MAX_INDEX),
            )
            return int(db.changes())

    def purge(self, older_than: timedelta | float) -> int:
        """Delete jobs created more than ``older_than`` (a timedelta or seconds) ago whose
        recipients are all final, or that are cancelled with none on the wire, or whose
        adding was interrupted and never resumed. Returns how many jobs were deleted."""
        seconds = older_than.total_seconds() if isinstance(older_than, timedelta) else older_than
        cutoff = time.time() - float(seconds)
        db = self._db()
        deleted = 0
        with self._lock, sqlite_errors(self.path, db):
            candidates: list[Any] = db.execute(
                "SELECT id, state FROM jobs WHERE created_at < ? ORDER BY id", (cutoff,)
            ).fetchall()
            for rowid, state in candidates:
                with _transaction(db):
                    lo = rowid << KEY_BITS
                    # An interrupted fill was never claimable; otherwise every recipient
                    # must be final (in-doubt ones are not: cancel the job to drop them).
                    if (
                        state != JOB_FILLING
                        and db.execute(
                            "SELECT 1 FROM recipients WHERE key BETWEEN ? AND ? AND state < ? "
                            "LIMIT 1",
                            (lo, lo | MAX_INDEX, FIRST_FINAL),
                        ).fetchone()
                    ):
                        continue
                    db.execute(
                        "DELETE FROM recipients WHERE key BETWEEN ? AND ?", (lo, lo | MAX_INDEX)
                    )
                    db.execute("DELETE FROM jobs WHERE id = ?", (rowid,))
                    self._templates.pop(rowid, None)
                    deleted += 1
        return deleted

    def _rowid(self, db: apsw.Connection, job_id: str) -> int:
        row = db.execute("SELECT id FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(job_id, path=self.path)
        return int(row[0])


def _literal_recipients(
    template: Message, recipients: Iterable[object] | AsyncIterable[object] | None
) -> Iterable[object] | AsyncIterable[object]:
    """The rows of a job: the given recipients for a template, or a literal message's own
    envelope recipients."""
    if not isinstance(template, Message):
        raise TypeError(f"a job's template must be a fastsmtp.Message, not {type(template)}")
    own = template.recipients
    if recipients is None:
        if not own:
            raise InvalidMessage(
                "give recipients, or a message with to/cc/bcc to send as it is", field="to"
            )
        return own
    if own:
        raise InvalidMessage(
            "a template for recipients must not have to/cc/bcc: each recipient becomes "
            "the To (or give no recipients to send this message as it is)",
            field="to",
        )
    return recipients


class _JobFiller:
    """Adds a job's recipients in chunks, one transaction each, then seals the job."""

    def __init__(self, outbox: Outbox, job_id: str, rowid: int, total: int, *, done: bool):
        self.outbox = outbox
        self.job_id = job_id
        self.rowid = rowid
        self.total = total
        self.skip = total
        self.done = done

    def info(self) -> JobInfo:
        return self.outbox.job(self.job_id, counts=False)

    def add(self, chunk: list[object]) -> None:
        first = self.total
        if first + len(chunk) - 1 > MAX_INDEX:
            raise InvalidMessage(f"a job holds at most {MAX_INDEX + 1} recipients")
        base = recipient_key(self.rowid, first)
        row = _codec.recipient_row
        rows = [row(base + i, item) for i, item in enumerate(chunk)]
        outbox = self.outbox
        db = outbox._db()
        with outbox._lock, sqlite_errors(outbox.path, db), _transaction(db):
            stored = db.execute(
                "SELECT total, state FROM jobs WHERE id = ?", (self.rowid,)
            ).fetchone()
            if stored is None or stored[0] != first or stored[1] != JOB_FILLING:
                raise OutboxError(
                    f"job {self.job_id!r} is being filled by another process",
                    path=outbox.path,
                )
            db.executemany(
                "INSERT INTO recipients (key, address, name, data) VALUES (?, ?, ?, ?)", rows
            )
            db.execute("UPDATE jobs SET total = ? WHERE id = ?", (first + len(rows), self.rowid))
        self.total = first + len(rows)

    def seal(self) -> JobInfo:
        """Mark the job complete: from now on a sender may claim its recipients."""
        outbox = self.outbox
        db = outbox._db()
        with outbox._lock, sqlite_errors(outbox.path, db), _transaction(db):
            db.execute(
                "UPDATE jobs SET state = ? WHERE id = ? AND state = ?",
                (JOB_ACTIVE, self.rowid, JOB_FILLING),
            )
        self.done = True
        return self.info()


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any exception)."""

    __slots__ = ("db",)

    def __init__(self, db: apsw.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self.db.execute("COMMIT")
                return
            except BaseException:
                if not self.db.get_autocommit():
                    self.db.execute("ROLLBACK")
                raise
        if not self.db.get_autocommit():
            self.db.execute("ROLLBACK")


async def _achunks(items: Iterable[object] | AsyncIterable[object], size: int):  # type: ignore[no-untyped-def]
    if isinstance(items, AsyncIterable):
        chunk: list[object] = []
        async for item in items:
            chunk.append(item)
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk
        return
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
