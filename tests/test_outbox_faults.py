"""The outbox under faults, for real: a full disk (a size-limited tmpfs), a read-only file
system, a database locked by another connection, damaged, foreign and newer files, and
schema migrations. Each fault is a typed error, nothing half-done is reported as done,
and what was committed before stays."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
from pathlib import Path

import apsw
import pytest

import fastsmtp
from fastsmtp.outbox import (
    SCHEMA_VERSION,
    Outbox,
    OutboxCorrupt,
    OutboxError,
    OutboxForeignFile,
    OutboxFull,
    OutboxLocked,
    OutboxReadOnly,
    OutboxSchemaTooNew,
    _schema,
)
from tests.outbox_support import TEMPLATE, fill_disk, people, remount_readonly, tmpfs

# The test machines and CI run as root; a developer's unprivileged run cannot mount.
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs: needs root")


def digest(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# -- files that are not (our) outboxes ---------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        os.urandom(8192),
        b"name,address\nann,ann@example.org\n" * 200,
        b"SQLite format 3\0" + b"x" * 100,
    ],
)
def test_a_file_that_is_not_a_database_is_corrupt(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "mail.db"
    path.write_bytes(content)
    with pytest.raises(OutboxCorrupt) as caught:
        Outbox(path)
    assert isinstance(caught.value, fastsmtp.FastSMTPError)
    assert caught.value.path == str(path)
    assert path.read_bytes() == content  # untouched


def test_another_applications_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    db = apsw.Connection(str(path))
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
    db.execute("INSERT INTO users (email) VALUES ('ann@example.org')")
    db.close()
    before = digest(path)
    with pytest.raises(OutboxForeignFile):
        Outbox(path)
    with pytest.raises(OutboxForeignFile):
        Outbox(path, readonly=True)
    assert digest(path) == before


def test_an_outbox_from_a_newer_fastsmtp_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mail.db"
    Outbox(path).close()
    db = apsw.Connection(str(path))
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    before = digest(path)
    with pytest.raises(OutboxSchemaTooNew) as caught:
        Outbox(path)
    assert caught.value.version == SCHEMA_VERSION + 1
    assert digest(path) == before


def test_a_damaged_outbox_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "mail.db"
    with Outbox(path) as ob:
        ob.create_job("j", TEMPLATE, people(5000))
    size = path.stat().st_size
    with open(path, "r+b") as f:  # zero the middle pages (the header stays); random
        f.seek(size // 3)  # bytes can look like an interior page whose scan skips them
        f.write(bytes(size // 3))
    ob = Outbox(path)
    assert ob.check() != ["ok"]
    with pytest.raises(OutboxCorrupt):
        list(ob.recipients("j"))
    ob.close()


# -- migrations ------------------------------------------------------------------------


def test_migrations_apply_in_order_and_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "mail.db"
    with Outbox(path) as ob:
        ob.create_job("j", TEMPLATE, people(3))
    # A migration that fails half-way changes nothing.
    broken = ((SCHEMA_VERSION + 1, "ALTER TABLE jobs ADD COLUMN note TEXT; SELECT nope();"),)
    monkeypatch.setattr(_schema, "MIGRATIONS", _schema.MIGRATIONS + broken)
    monkeypatch.setattr(_schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(OutboxError):
        Outbox(path)
    db = apsw.Connection(str(path))
    assert db.execute("PRAGMA user_version").fetchall() == [(SCHEMA_VERSION,)]
    assert "note" not in [c[1] for c in db.execute("PRAGMA table_info(jobs)")]
    db.close()
    # A good one is applied once, and the data stays.
    good = ((SCHEMA_VERSION + 1, "ALTER TABLE jobs ADD COLUMN note TEXT"),)
    monkeypatch.setattr(_schema, "MIGRATIONS", _schema.MIGRATIONS[:-1] + good)
    with Outbox(path) as ob:
        assert ob.job("j").counts == {"queued": 3}
    with Outbox(path) as ob:  # opening again does not apply it again
        assert ob.job("j").total == 3
    db = apsw.Connection(str(path))
    assert db.execute("PRAGMA user_version").fetchall() == [(SCHEMA_VERSION + 1,)]
    db.close()


# -- read-only -------------------------------------------------------------------------


@needs_root
async def test_a_read_only_file_system(tmp_path: Path) -> None:
    with tmpfs("8m") as directory:
        path = os.path.join(directory, "mail.db")
        with Outbox(path) as ob:
            ob.create_job("j", TEMPLATE, people(3))
        remount_readonly(directory)
        with pytest.raises(OutboxReadOnly) as caught:
            Outbox(path)
        assert isinstance(caught.value, PermissionError)
        with Outbox(path, readonly=True) as ob:  # inspection still works
            assert ob.job("j").counts == {"queued": 3}
            assert next(r.address for r in ob.recipients("j")) == "user0@example.org"
            with pytest.raises(OutboxReadOnly):
                ob.cancel("j")
            with pytest.raises(OutboxReadOnly):
                ob.create_job("k", TEMPLATE, people(1))
            with pytest.raises(OutboxError):
                await ob.open_sender()


# -- locked ----------------------------------------------------------------------------


async def test_a_database_locked_by_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "mail.db"
    ob = Outbox(path, busy_timeout=0.2)
    ob.create_job("j", TEMPLATE, people(4))
    sender = await ob.open_sender()
    claims = await sender.claim(4)
    blocker = apsw.Connection(str(path))
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(OutboxLocked):
            ob.create_job("k", TEMPLATE, people(2))
        with pytest.raises(OutboxLocked):
            ob.cancel("j")
        future = sender.mark_on_wire(claims[:2])
        with pytest.raises(OutboxLocked):
            await future
        assert ob.job("j").counts == {"queued": 4}  # readers still read (WAL)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    # The lock gone, the next group commits; the failed one changed nothing.
    commit = await sender.mark_on_wire(claims[2:])
    assert commit.rows == 2
    await sender.close()
    assert ob.job("j").counts == {"queued": 2, "on_wire": 2}
    assert [r.index for r in ob.recipients("j", states=["on_wire"])] == [2, 3]
    with pytest.raises(fastsmtp.outbox.JobNotFound):
        ob.job("k")
    ob.close()


# -- a full disk -----------------------------------------------------------------------

BIG = {"blob": "x" * 3000}


@needs_root
def test_a_full_disk_while_adding_a_job(tmp_path: Path) -> None:
    with tmpfs("8m") as directory:
        path = os.path.join(directory, "mail.db")
        ob = Outbox(path)
        ob.create_job("small", TEMPLATE, people(100))
        ballast = fill_disk(directory, leave=512 << 10)
        everyone = [{"address": f"u{i}@example.org", **BIG} for i in range(600)]
        with pytest.raises(OutboxFull) as caught:
            ob.create_job("big", TEMPLATE, everyone, chunk_size=50)
        assert isinstance(caught.value, OSError) and caught.value.errno == errno.ENOSPC
        # The chunks committed before the disk filled are there; the job is unfinished
        # (so no sender claims it), and the earlier job is whole.
        stored = ob.job("big", counts=True)
        assert stored.state == "filling" and 0 < stored.total < 600
        assert stored.counts == {"queued": stored.total}
        assert ob.job("small").counts == {"queued": 100}
        assert ob.check() == ["ok"]
        # Space again: the same call finishes the job.
        os.remove(ballast)
        done = ob.create_job("big", TEMPLATE, everyone, chunk_size=50)
        assert done.total == 600 and done.state == "active"
        assert [r.address for r in ob.recipients("big")] == [e["address"] for e in everyone]
        ob.close()


@needs_root
async def test_a_full_disk_while_sending(tmp_path: Path) -> None:
    with tmpfs("8m") as directory:
        path = os.path.join(directory, "mail.db")
        ob = Outbox(path)
        ob.create_job("j", TEMPLATE, people(3000))
        sender = await ob.open_sender()
        claims = await sender.claim(3000)
        await sender.mark_on_wire(claims[:1000])
        for c in claims[:1000]:
            sender.record(c, "accepted", 250, "2.0.0", "ok")
        await sender.mark_on_wire(claims[1000:])
        assert await sender.flush() is None
        assert ob.job("j").counts == {"accepted": 1000, "on_wire": 2000}
        ballast = fill_disk(directory, leave=256 << 10)
        # Groups bigger than the space left are refused whole. (A small one may still fit
        # in the WAL's already allocated space: then it commits whole.)
        groups: dict[int, tuple[asyncio.Future[object], list[int]]] = {}
        for c in claims[1000:]:
            future = sender.record(c, "rejected", 550, "5.1.1", "x" * 2000)
            groups.setdefault(id(future), (future, []))[1].append(c.index)
        failed: list[int] = []
        committed: list[int] = []
        for future, indexes in groups.values():
            try:
                await future
            except OutboxFull:
                failed += indexes
            else:
                committed += indexes
        assert len(failed) > 1000
        # Exactly the acknowledged groups are in the file; the refused ones left no trace.
        rows = {r.index: r.state for r in ob.recipients("j")}
        assert sum(1 for s in rows.values() if s == "accepted") == 1000
        assert all(rows[i] == "rejected" for i in committed)
        assert all(rows[i] == "on_wire" for i in failed)
        os.remove(ballast)
        await sender.close()
        ob.close()
        with Outbox(path) as again:
            assert again.check() == ["ok"]
            assert again.job("j").counts["accepted"] == 1000
            sender = await again.open_sender()
            # The refused results never happened: those recipients are in doubt now
            # (their end of data was marked sent), not silently lost or resent.
            assert sender.in_doubt_found == len(failed)
            await sender.close()


def test_full_disk_is_an_oserror_and_fastsmtp_error() -> None:
    error = OutboxFull("disk full", path="/x")
    assert isinstance(error, OSError) and isinstance(error, fastsmtp.FastSMTPError)
    assert error.errno == errno.ENOSPC and str(error) == "disk full"


def test_asyncio_is_not_needed_to_inspect(tmp_path: Path) -> None:
    # The inspection side is plain blocking code: no event loop involved.
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
    with Outbox(tmp_path / "m.db") as ob:
        assert ob.jobs() == []
