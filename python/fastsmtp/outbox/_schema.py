"""Opening an outbox file: checks that it is one, versioned schema migrations, pragmas,
and the translation of SQLite errors into the outbox's typed errors.

A fastsmtp outbox is a SQLite database whose header says so: ``PRAGMA application_id`` is
``0x46534D54`` ("FSMT") and ``PRAGMA user_version`` is its schema version. Both live in
the file header, so a foreign database (any other application id, or tables without ours)
or a file from a newer fastsmtp (a version above :data:`SCHEMA_VERSION`) is refused before
anything is read or written. Migrations are numbered SQL scripts, each applied once in a
``BEGIN IMMEDIATE`` transaction that also bumps the version, so two processes opening an
old file at once migrate it once.

Durability: WAL journal with ``synchronous=FULL``: a commit returns only after its WAL
frames are on disk (one fsync per commit; the writer groups many changes per commit).
"""

from __future__ import annotations

import contextlib
import errno
import os
import urllib.parse
from collections.abc import Iterator
from typing import Any

import apsw

from fastsmtp.outbox._errors import (
    OutboxCorrupt,
    OutboxError,
    OutboxForeignFile,
    OutboxFull,
    OutboxLocked,
    OutboxReadOnly,
    OutboxSchemaTooNew,
)

APPLICATION_ID = 0x46534D54
"""``PRAGMA application_id`` of every fastsmtp outbox ("FSMT")."""

_V1 = """
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL UNIQUE,
    lane INTEGER NOT NULL,
    state INTEGER NOT NULL,
    created_at REAL NOT NULL,
    send_at REAL NOT NULL,
    fingerprint BLOB NOT NULL,
    template BLOB NOT NULL,
    data BLOB,
    msgid_token TEXT NOT NULL,
    msgid_domain TEXT NOT NULL,
    total INTEGER NOT NULL DEFAULT 0
);
-- One row per recipient. key = job id << 32 | index (the rowid: no separate index).
-- Columns that are NULL or 0 until a recipient is tried come last and cost one header
-- byte each. message_id stays NULL while the Message-ID is the one derived from the job
-- (JobTemplate.message_id); it is there for messages sent with another one.
CREATE TABLE recipients (
    key INTEGER PRIMARY KEY,
    address TEXT NOT NULL,
    name TEXT,
    data BLOB,
    state INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    in_doubt INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    code INTEGER,
    enhanced_code TEXT,
    text TEXT,
    message_id TEXT
);
-- Deferred recipients by due time: the only rows a claim cannot find by key order.
CREATE INDEX recipients_due ON recipients(next_attempt_at) WHERE state = 2;
"""

MIN_SQLITE = (3, 44)
"""The writer uses ``->>`` (3.38) and ORDER BY inside aggregates (3.44); apsw's wheels
bundle a current SQLite."""

MIGRATIONS: tuple[tuple[int, str], ...] = ((1, _V1),)
"""(version, script) in order; a file at version ``v`` gets every script above ``v``."""

SCHEMA_VERSION = MIGRATIONS[-1][0]


def translate(exc: apsw.Error, path: str, conn: apsw.Connection | None = None) -> OutboxError:
    """The typed outbox error for a SQLite error (the SQLite error is its cause)."""
    detail = f"{path}: {exc}"
    if isinstance(exc, apsw.FullError):
        return OutboxFull(f"{path}: the disk is full: nothing was committed", path=path)
    if isinstance(exc, apsw.ReadOnlyError):
        return OutboxReadOnly(f"{path}: the outbox is read-only ({exc})", path=path)
    if isinstance(exc, apsw.BusyError | apsw.LockedError):
        return OutboxLocked(f"{path}: the database stayed locked ({exc})", path=path)
    if isinstance(exc, apsw.NotADBError):
        return OutboxCorrupt(f"{path}: not a SQLite database ({exc})", path=path)
    if isinstance(exc, apsw.CorruptError):
        return OutboxCorrupt(f"{path}: the database is damaged ({exc})", path=path)
    if isinstance(exc, apsw.IOError) and conn is not None:
        # A disk-full seen by SQLite's shared-memory or truncate code arrives as an I/O
        # error; the OS errno says what it was.
        with contextlib.suppress(apsw.Error):
            if conn.system_errno == errno.ENOSPC:
                return OutboxFull(f"{path}: the disk is full: nothing was committed", path=path)
    if isinstance(exc, apsw.CantOpenError | apsw.PermissionsError):
        return OutboxReadOnly(f"{path}: cannot open the outbox ({exc})", path=path)
    return OutboxError(detail, path=path)


@contextlib.contextmanager
def sqlite_errors(path: str, conn: apsw.Connection | None = None) -> Iterator[None]:
    """Raise SQLite errors raised inside as the typed outbox errors."""
    try:
        yield
    except apsw.Error as exc:
        raise translate(exc, path, conn) from exc


def connect(
    path: str, *, readonly: bool = False, create: bool = True, busy_timeout: float = 5.0
) -> apsw.Connection:
    """Open ``path`` as an outbox: create or migrate it when it may be written, check it
    when not, and set the pragmas. Raises the typed errors of :mod:`._errors`."""
    if tuple(int(p) for p in apsw.sqlite_lib_version().split(".")[:2]) < MIN_SQLITE:
        raise OutboxError(
            f"the outbox needs SQLite >= 3.44 (apsw is linked to {apsw.sqlite_lib_version()})"
        )
    if readonly:
        flags = apsw.SQLITE_OPEN_READONLY
    else:
        flags = apsw.SQLITE_OPEN_READWRITE | (apsw.SQLITE_OPEN_CREATE if create else 0)
    if not os.path.exists(path) and (readonly or not create):
        raise OutboxError(f"{path}: no such outbox file", path=path)
    try:
        conn = apsw.Connection(path, flags=flags)
    except apsw.Error as exc:
        raise translate(exc, path) from exc
    try:
        with sqlite_errors(path, conn):
            conn.set_busy_timeout(int(busy_timeout * 1000))
            if readonly and not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
                # A WAL database on a read-only file system (or in a directory we may not
                # write) cannot get its -shm file; nobody can change it there either, so
                # read it as immutable.
                conn.close()
                uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?immutable=1"
                conn = apsw.Connection(uri, flags=flags | apsw.SQLITE_OPEN_URI)
            _check_and_migrate(conn, path, readonly)
            if not readonly:
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            # Bigger checkpoints, less often (each one fsyncs the database file); the WAL is
            # cut back to 64 MB after each.
            conn.execute("PRAGMA wal_autocheckpoint=4000")
            conn.execute("PRAGMA journal_size_limit=67108864")
            conn.execute("PRAGMA cache_size=-16384")
    except BaseException:
        conn.close()
        raise
    return conn


def _header(conn: apsw.Connection) -> tuple[int, int, int]:
    """(application_id, user_version, number of schema objects)."""
    app_id: Any = conn.execute("PRAGMA application_id").fetchall()[0][0]
    version: Any = conn.execute("PRAGMA user_version").fetchall()[0][0]
    objects: Any = conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()[0][0]
    return int(app_id), int(version), int(objects)


def _check_and_migrate(conn: apsw.Connection, path: str, readonly: bool) -> None:
    app_id, version, _ = _check(conn, path)
    if version == SCHEMA_VERSION and app_id == APPLICATION_ID:
        return
    if readonly:
        raise OutboxReadOnly(
            f"{path}: the outbox needs setting up or migrating (schema {version} -> "
            f"{SCHEMA_VERSION}) and was opened read-only",
            path=path,
        )
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Again inside the write lock: another process may have migrated meanwhile.
        _, version, _ = _check(conn, path)
        for target, script in MIGRATIONS:
            if target > version:
                conn.execute(script)
                conn.execute(f"PRAGMA user_version={target:d}")
        conn.execute(f"PRAGMA application_id={APPLICATION_ID:d}")
        conn.execute("COMMIT")
    except BaseException:
        if not conn.get_autocommit():
            conn.execute("ROLLBACK")
        raise


def _check(conn: apsw.Connection, path: str) -> tuple[int, int, int]:
    app_id, version, objects = _header(conn)
    if app_id == 0 and objects == 0 and version == 0:
        return app_id, version, objects  # a new, empty file
    if app_id != APPLICATION_ID:
        raise OutboxForeignFile(
            f"{path}: a SQLite database, but not a fastsmtp outbox "
            f"(application_id {app_id:#x}, {objects} schema objects)",
            path=path,
        )
    if version > SCHEMA_VERSION:
        raise OutboxSchemaTooNew(
            f"{path}: written by a newer fastsmtp (schema {version}; this one knows "
            f"up to {SCHEMA_VERSION})",
            path=path,
            version=version,
        )
    return app_id, version, objects
