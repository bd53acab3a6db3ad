"""The sender lock: at most one process sends from an outbox at a time.

An exclusive ``flock`` on a side file (``<outbox>-sender.lock``). The kernel releases it
when its holder exits for any reason, SIGKILL included, so a dead sender never blocks the
next one and there is no lease to expire or steal. The holder writes its pid and host into
the file, so a second sender's error says who holds it. SQLite's own locks are not used
for this: they last one transaction, and readers (inspection, a CLI) must keep working
while a sender runs.

Known limit: ``flock`` is not reliable on some network file systems; keep outboxes on a
local disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket

from fastsmtp.outbox._errors import OutboxLocked, OutboxReadOnly


def lock_path(db_path: str) -> str:
    return db_path + "-sender.lock"


class SenderLock:
    """Held from :meth:`acquire` until :meth:`release` (or the process's end)."""

    def __init__(self, db_path: str) -> None:
        self.path = lock_path(db_path)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise OutboxLocked naming the holder at once (no waiting)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except PermissionError as exc:
            raise OutboxReadOnly(
                f"{self.path}: cannot create the sender lock ({exc.strerror})", path=self.path
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise OutboxLocked(
                f"{self.path}: another sender holds this outbox"
                + (f" ({holder})" if holder else ""),
                path=self.path,
                holder=holder or None,
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the only descriptor releases the flock


def holder(db_path: str) -> str | None:
    """Who holds the sender lock now (``"pid N on HOST"``, or ``""`` when it did not say),
    None when no sender is running. Takes the lock for an instant to find out."""
    path = lock_path(db_path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read(fd)
    finally:
        os.close(fd)  # releases the shared lock if it was taken
    return None


def _read(fd: int) -> str:
    with contextlib.suppress(OSError):
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    return ""
