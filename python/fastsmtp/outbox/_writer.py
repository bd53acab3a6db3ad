"""The sender's writer thread: group commit, and the claim bookkeeping.

The event loop never touches the database while sending: it appends state changes (on the
wire, results, deferrals) to in-memory lists and gets back the future of the *group* they
joined. This thread takes everything queued so far, writes it in one ``BEGIN IMMEDIATE``
transaction (one statement per kind of change, all rows in it), commits (one fsync of the
WAL, as ``synchronous=FULL`` asks), and then resolves the group's future on the loop with
one ``call_soon_threadsafe``. Changes that arrive during a commit form the next group, so under
load a group holds everything of the last fsync's duration (no timer: an idle outbox
commits at once, a busy one in bigger groups). SQLite releases the GIL while it writes and
syncs, so the loop keeps running.

Claims run here too, after the group's commit, so they see every change committed before
them, and the bookkeeping of what this process has claimed (and not yet marked) lives in
this thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import apsw
import msgspec

from fastsmtp.outbox import _codec
from fastsmtp.outbox._models import (
    DEFERRED,
    IN_DOUBT,
    JOB_ACTIVE,
    JOB_CANCELLED,
    JOB_DRAINED,
    KEY_BITS,
    LANE_CODES,
    MAX_INDEX,
    ON_WIRE,
    QUEUED,
    Claim,
    Lane,
)
from fastsmtp.outbox._schema import connect, translate

if TYPE_CHECKING:
    from fastsmtp.outbox._store import Outbox

log = logging.getLogger("fastsmtp.outbox")


class GroupCommit(msgspec.Struct, frozen=True, gc=False):
    """What a committed group reports to everyone who waited on it."""

    number: int
    """Groups are numbered from 1 in commit order."""
    rows: int
    """Recipient rows the group changed."""
    refused: frozenset[int] = frozenset()
    """Keys whose ``on_wire`` mark was refused because their job was cancelled meanwhile
    (by this or another process): do not send them."""


class WriterStats(msgspec.Struct, kw_only=True):
    """Counters of the writer thread (read them from any thread)."""

    commits: int = 0
    """Write transactions committed (each is one fsync of the WAL)."""
    rows: int = 0
    """Recipient rows changed by them."""
    failed_commits: int = 0
    largest_group: int = 0
    claims: int = 0
    claimed: int = 0
    busy_seconds: float = 0.0
    """Time spent writing and committing."""


class _Op:
    """Work for the writer thread other than row state changes: ``run(conn)`` inside the
    group's transaction (``read=False``) or after its commit (``read=True``)."""

    __slots__ = ("error", "future", "read", "run", "value")

    def __init__(
        self,
        run: Callable[[apsw.Connection], Any],
        future: asyncio.Future[Any] | None,
        read: bool,
    ) -> None:
        self.run = run
        self.future = future
        self.read = read
        self.value: Any = None
        self.error: BaseException | None = None


# A whole group's rows go in as one JSON array bound to one statement, not executemany:
# SQLite releases the GIL once per statement step, and under executemany each of the
# thousand re-acquisitions per group waits for the busy event loop thread to let go of
# the GIL (see benches/RESULTS.md, "Outbox").
_MARK_ON_WIRE = (
    "UPDATE recipients SET state = 1, attempts = attempts + 1 "
    "WHERE key IN (SELECT value FROM json_each(?))"
)
# Results are grouped by (state, attempts, code, enhanced code), which a group's rows mostly
# share, so each row carries only its key and text (and the next attempt of a deferral):
# extracting six fields per row from JSON cost 4.8 us a row, this 1.4 (executemany: 2.4).
_RECORD = (
    "UPDATE recipients SET state = ?1, attempts = ?2, code = ?3, enhanced_code = ?4, "
    "next_attempt_at = NULL, text = j.value ->> 1 FROM json_each(?5) AS j "
    "WHERE recipients.key = j.value ->> 0"
)
_RECORD_DEFERRAL = (
    "UPDATE recipients SET state = ?1, attempts = ?2, code = ?3, enhanced_code = ?4, "
    "next_attempt_at = j.value ->> 2, text = j.value ->> 1 FROM json_each(?5) AS j "
    "WHERE recipients.key = j.value ->> 0"
)


def _write_records(
    conn: apsw.Connection,
    records: list[tuple[int, int, float | None, int | None, str | None, str, int]],
) -> None:
    plain: dict[tuple[int, int, int | None, str | None], list[tuple[int, str]]] = {}
    timed: dict[tuple[int, int, int | None, str | None], list[tuple[int, str, float]]] = {}
    for state, attempts, at, code, enhanced, text, key in records:
        if at is None:
            plain.setdefault((state, attempts, code, enhanced), []).append((key, text))
        else:
            timed.setdefault((state, attempts, code, enhanced), []).append((key, text, at))
    for sql, groups in ((_RECORD, plain), (_RECORD_DEFERRAL, timed)):
        for (state, attempts, code, enhanced), rows in groups.items():
            conn.execute(sql, (state, attempts, code, enhanced, _json(rows).decode()))


_json = msgspec.json.Encoder().encode
# Claimed rows come back as one JSON array (one statement step, so one GIL hand-off per
# claim rather than one per row; see _MARK_ON_WIRE), data as hex, in the claim's order
# (an ORDER BY inside the aggregate: SQLite >= 3.44, which apsw bundles).
_CLAIM_JSON = (
    "SELECT json_group_array(json_array(key, address, name, hex(data), attempts, in_doubt) "
    "ORDER BY {order}) FROM (SELECT * FROM recipients WHERE {where} ORDER BY {order} "
    "LIMIT ?)"
)
# Due deferred recipients (now, key range, lane, 2 job states, now). "+key": the key range
# must not steer the planner away from the index of due recipients (that would scan the
# whole table per claim).
DUE_WHERE = (
    "state = 2 AND next_attempt_at <= ? AND +key BETWEEN ? AND ? AND (key >> 32) IN "
    "(SELECT id FROM jobs WHERE lane = ? AND state IN (?, ?) AND send_at <= ?)"
)
DUE_ORDER = "next_attempt_at, key"
# Queued recipients of one job from its cursor on (cursor, last key).
QUEUED_WHERE = "key >= ? AND key <= ? AND state = 0"
QUEUED_ORDER = "key"
_json_rows = msgspec.json.Decoder(list[tuple[int, str, str | None, str, int, int]]).decode


def _fetch(
    conn: apsw.Connection, where: str, order: str, params: tuple[Any, ...]
) -> list[tuple[int, str, str | None, bytes | None, int, int]]:
    """(key, address, name, data, attempts, in_doubt) of the recipients ``where`` says,
    the first ``params[-1]`` by ``order``, in one step."""
    blob: Any = conn.execute(_CLAIM_JSON.format(where=where, order=order), params).fetchall()
    return [
        (key, address, name, bytes.fromhex(data) if data else None, attempts, in_doubt)
        for key, address, name, data, attempts, in_doubt in _json_rows(blob[0][0])
    ]


class Writer:
    """Owns the sender's connection. Loop side: :meth:`submit`, :meth:`on_wire`,
    :meth:`record`. Thread side: everything else."""

    def __init__(self, outbox: Outbox, loop: asyncio.AbstractEventLoop) -> None:
        self.outbox = outbox
        self.path = outbox.path
        self.loop = loop
        self.conn = connect(self.path, busy_timeout=outbox.busy_timeout)
        self.stats = WriterStats()
        self._mutex = threading.Lock()
        self._wake = threading.Event()
        self._ops: list[_Op] = []
        self._on_wire: list[int] = []
        self._records: list[tuple[int, int, float | None, int | None, str | None, str, int]] = []
        self._group: asyncio.Future[GroupCommit] | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="fastsmtp-outbox", daemon=True)
        # Thread-only state: what this process has claimed and not yet seen committed as
        # on the wire or recorded: key -> the state it was claimed from.
        self._claimed: dict[int, int] = {}
        self._claimed_per_job: dict[int, int] = {}
        self._cursor: dict[int, int] = {}
        """Per job: no queued, unclaimed recipient has a smaller key."""
        self._draining: set[int] = set()
        self._groups = 0

    # -- loop side -----------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def _group_future(self) -> asyncio.Future[GroupCommit]:
        # Called with the mutex held.
        group = self._group
        if group is None:
            group = self._group = self.loop.create_future()
            self._wake.set()
        return group

    def on_wire(self, keys: Sequence[int]) -> asyncio.Future[GroupCommit]:
        with self._mutex:
            self._on_wire.extend(keys)
            return self._group_future()

    def record(
        self, row: tuple[int, int, float | None, int | None, str | None, str, int]
    ) -> asyncio.Future[GroupCommit]:
        """``row`` is (state, attempts, next_attempt_at, code, enhanced_code, text, key)."""
        with self._mutex:
            self._records.append(row)
            return self._group_future()

    def flush(self) -> asyncio.Future[GroupCommit] | None:
        """The future of the group now being gathered, None when nothing is pending."""
        with self._mutex:
            return self._group

    def submit(self, run: Callable[[apsw.Connection], Any], *, read: bool) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self.loop.create_future()
        with self._mutex:
            self._ops.append(_Op(run, future, read))
            self._wake.set()
        return future

    def stop(self) -> None:
        with self._mutex:
            self._stopping = True
            self._wake.set()

    def join(self) -> None:
        self._thread.join()

    # -- thread side ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait()
                with self._mutex:
                    self._wake.clear()
                    ops, self._ops = self._ops, []
                    on_wire, self._on_wire = self._on_wire, []
                    records, self._records = self._records, []
                    group, self._group = self._group, None
                    stopping = self._stopping
                if ops or on_wire or records:
                    self._cycle(ops, on_wire, records, group)
                elif group is not None:  # pragma: no cover - a group always has changes
                    self._resolve([(group, GroupCommit(self._groups, 0), None)])
                if stopping:
                    with self._mutex:
                        if not (self._ops or self._on_wire or self._records):
                            break
        finally:
            self.conn.close()

    def _cycle(
        self,
        ops: list[_Op],
        on_wire: list[int],
        records: list[tuple[int, int, float | None, int | None, str | None, str, int]],
        group: asyncio.Future[GroupCommit] | None,
    ) -> None:
        conn = self.conn
        writes = [op for op in ops if not op.read]
        settled: list[tuple[asyncio.Future[Any] | None, Any, BaseException | None]] = []
        started = time.perf_counter()
        refused: frozenset[int] = frozenset()
        rows = len(records)
        if not (writes or on_wire or records):
            self._read(ops, settled)  # claims only: no transaction, no fsync
            self._resolve(settled)
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in writes:
                conn.execute("SAVEPOINT op")
                try:
                    op.value = op.run(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    op.error = _typed(exc, self.path, conn)
                conn.execute("RELEASE op")
            if on_wire:
                refused = self._refused(conn, on_wire)
                marked = [k for k in on_wire if k not in refused] if refused else on_wire
                conn.execute(_MARK_ON_WIRE, (_json(marked).decode(),))
                rows += len(on_wire)
            if records:
                _write_records(conn, records)
            conn.execute("COMMIT")
        except Exception as exc:  # a SQLite error, or a change that cannot be encoded
            error = _typed(exc, self.path, conn)
            if not conn.get_autocommit():
                try:
                    conn.execute("ROLLBACK")
                except apsw.Error:  # pragma: no cover - rollback failing too
                    log.exception("outbox: rollback failed")
            self.stats.failed_commits += 1
            log.error("outbox: a group of %d changes was not committed: %s", rows, error)
            for op in writes:
                settled.append((op.future, None, error))
            if group is not None:
                settled.append((group, None, error))
            # Claimed keys stay claimed: their rows keep their last committed state, and
            # this process will not hand them out again.
        else:
            self._groups += 1
            self.stats.commits += 1
            self.stats.rows += rows
            self.stats.largest_group = max(self.stats.largest_group, rows)
            for op in writes:
                settled.append((op.future, op.value, op.error))
            self._committed(on_wire)
            self._committed(records[i][-1] for i in range(len(records)))
            if group is not None:
                settled.append((group, GroupCommit(self._groups, rows, refused), None))
        self.stats.busy_seconds += time.perf_counter() - started
        self._read(ops, settled)
        self._resolve(settled)

    def _read(
        self,
        ops: list[_Op],
        settled: list[tuple[asyncio.Future[Any] | None, Any, BaseException | None]],
    ) -> None:
        """Run the read ops (claims), after the group's commit."""
        for op in ops:
            if op.read:
                try:
                    value = op.run(self.conn)
                except Exception as exc:
                    settled.append((op.future, None, _typed(exc, self.path, self.conn)))
                else:
                    settled.append((op.future, value, None))

    def _refused(self, conn: apsw.Connection, keys: list[int]) -> frozenset[int]:
        jobs = {k >> KEY_BITS for k in keys}
        cancelled = {
            j
            for j in jobs
            if (row := conn.execute("SELECT state FROM jobs WHERE id = ?", (j,)).fetchone()) is None
            or row[0] == JOB_CANCELLED
        }
        if not cancelled:
            return frozenset()
        return frozenset(k for k in keys if k >> KEY_BITS in cancelled)

    def _committed(self, keys: Any) -> None:
        claimed = self._claimed
        per_job = self._claimed_per_job
        for key in keys:
            if claimed.pop(key, None) is not None:
                per_job[key >> KEY_BITS] -= 1

    def _resolve(
        self, settled: list[tuple[asyncio.Future[Any] | None, Any, BaseException | None]]
    ) -> None:
        if not settled:
            return
        # A closed loop raises RuntimeError: nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_settle, settled)

    # -- claims (thread side) -------------------------------------------------------------

    def claim(
        self,
        conn: apsw.Connection,
        limit: int,
        lanes: Sequence[Lane],
        now: float,
        only: int | None = None,
    ) -> list[Claim]:
        """Thread side: up to ``limit`` due recipients (of job number ``only``, if given)."""
        out: list[Claim] = []
        # One job: its key range; every job: all keys (a rowid is a signed 64-bit int).
        lo, hi = (only << KEY_BITS, only << KEY_BITS | MAX_INDEX) if only else (0, 2**63 - 1)
        for lane in lanes:
            if len(out) >= limit:
                break
            code = LANE_CODES[lane]
            self._claim_due(conn, code, limit - len(out), now, out, lo, hi)
            if len(out) >= limit:
                break
            jobs: list[Any] = conn.execute(
                "SELECT id, send_at FROM jobs WHERE state = ? AND lane = ? AND send_at <= ? "
                "AND id BETWEEN ? AND ? ORDER BY send_at, id",
                (JOB_ACTIVE, code, now, lo >> KEY_BITS, hi >> KEY_BITS),
            ).fetchall()
            for job, _ in jobs:
                if len(out) >= limit:
                    break
                self._claim_queued(conn, job, limit - len(out), out)
        self.stats.claims += 1
        self.stats.claimed += len(out)
        self._mark_drained()
        return out

    def _claim_due(
        self,
        conn: apsw.Connection,
        lane: int,
        need: int,
        now: float,
        out: list[Claim],
        lo: int,
        hi: int,
    ) -> None:
        claimed = self._claimed
        rows = _fetch(
            conn,
            DUE_WHERE,
            DUE_ORDER,
            (now, lo, hi, lane, JOB_ACTIVE, JOB_DRAINED, now, need + len(claimed)),
        )
        goal = len(out) + need
        for row in rows:
            if row[0] in claimed:
                continue
            self._add(row, DEFERRED, out)
            if len(out) >= goal:
                return

    def _claim_queued(self, conn: apsw.Connection, job: int, need: int, out: list[Claim]) -> None:
        lo = job << KEY_BITS
        hi = lo | MAX_INDEX
        cursor = self._cursor.get(job, lo)
        claimed = self._claimed
        goal = len(out) + need
        while cursor <= hi and len(out) < goal:
            asked = goal - len(out)
            rows = _fetch(conn, QUEUED_WHERE, QUEUED_ORDER, (cursor, hi, asked))
            for row in rows:
                if row[0] not in claimed:
                    self._add(row, QUEUED, out)
            cursor = rows[-1][0] + 1 if len(rows) == asked else hi + 1
        self._cursor[job] = cursor

    def _add(
        self,
        row: tuple[int, str, str | None, bytes | None, int, int],
        origin: int,
        out: list[Claim],
    ) -> None:
        key, address, name, data, attempts, in_doubt = row
        job = key >> KEY_BITS
        self._claimed[key] = origin
        self._claimed_per_job[job] = self._claimed_per_job.get(job, 0) + 1
        out.append(
            Claim(
                key=key,
                job=self.outbox.template(job, conn=self.conn),
                index=key & MAX_INDEX,
                address=address,
                name=name,
                data=_codec.decode_data(data),
                attempts=attempts,
                in_doubt=bool(in_doubt),
            )
        )

    def _mark_drained(self) -> None:
        """Jobs whose every queued recipient was claimed and marked: none is queued any
        more, so later claims skip them (committed with the next group)."""
        done = [
            job
            for job, cursor in self._cursor.items()
            if cursor > (job << KEY_BITS | MAX_INDEX)
            and not self._claimed_per_job.get(job)
            and job not in self._draining
        ]
        if not done:
            return
        self._draining.update(done)

        def drained(conn: apsw.Connection) -> None:
            # Only those still draining: a resend_in_doubt that ran since may have queued
            # some of their recipients again.
            still = [job for job in done if job in self._draining]
            conn.executemany(
                "UPDATE jobs SET state = ? WHERE id = ? AND state = ?",
                [(JOB_DRAINED, job, JOB_ACTIVE) for job in still],
            )
            for job in still:
                self._cursor.pop(job, None)
                self._claimed_per_job.pop(job, None)

        with self._mutex:
            self._ops.append(_Op(drained, None, False))
            self._wake.set()

    def release(self, keys: Sequence[int]) -> None:
        """Thread side: forget claims that will not be sent; queued ones are handed out
        again (their job's cursor goes back)."""
        for key in keys:
            origin = self._claimed.pop(key, None)
            if origin is None:
                continue
            job = key >> KEY_BITS
            self._claimed_per_job[job] -= 1
            cursor = self._cursor.get(job)  # none: the next claim starts at the job's start
            if origin == QUEUED and cursor is not None and key < cursor:
                self._cursor[job] = key

    def requeue_in_doubt(self, conn: apsw.Connection, job: int | None) -> int:
        """Thread side, in a transaction: in-doubt recipients (of one job, or all) become
        queued again, their jobs active, and their cursors go back."""
        if job is None:
            where, params = "state = ?", (IN_DOUBT,)
        else:
            lo = job << KEY_BITS
            where, params = "key BETWEEN ? AND ? AND state = ?", (lo, lo | MAX_INDEX, IN_DOUBT)  # type: ignore[assignment]
        jobs = [
            row[0]
            for row in conn.execute(
                f"SELECT DISTINCT key >> 32 FROM recipients WHERE {where}", params
            )
        ]
        conn.execute(f"UPDATE recipients SET state = {QUEUED} WHERE {where}", params)
        count = int(conn.changes())
        for j in jobs:
            conn.execute(
                "UPDATE jobs SET state = ? WHERE id = ? AND state = ?", (JOB_ACTIVE, j, JOB_DRAINED)
            )
            self._cursor.pop(j, None)
            self._draining.discard(j)
        return count

    def recover(self, resend_in_doubt: bool) -> int:
        """Before the thread starts: recipients left on the wire by a dead sender become in
        doubt. Returns how many."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                f"UPDATE recipients SET state = {IN_DOUBT}, in_doubt = 1 WHERE state = {ON_WIRE}"
            )
            found = int(conn.changes())
            if resend_in_doubt:
                self.requeue_in_doubt(conn, None)
            conn.execute("COMMIT")
        except BaseException:
            if not conn.get_autocommit():
                conn.execute("ROLLBACK")
            raise
        return found


def _typed(exc: BaseException, path: str, conn: apsw.Connection) -> BaseException:
    if isinstance(exc, apsw.Error):
        error = translate(exc, path, conn)
        error.__cause__ = exc
        return error
    return exc


def _settle(settled: list[tuple[asyncio.Future[Any] | None, Any, BaseException | None]]) -> None:
    for future, value, error in settled:
        if future is None or future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)


__all__ = ["GroupCommit", "Writer", "WriterStats"]
