"""The outbox's errors: every one is a :class:`fastsmtp.FastSMTPError`.

A built-in base is added where one fits, so callers can also catch what they know: a full
disk is an ``OSError`` (``errno.ENOSPC``), a read-only file a ``PermissionError``.
"""

from __future__ import annotations

import errno

from fastsmtp._errors import FastSMTPError


class OutboxError(FastSMTPError):
    """Base class of the outbox's errors. ``path`` names the database file."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class OutboxCorrupt(OutboxError):
    """The file is not a SQLite database, or SQLite found it damaged."""


class OutboxForeignFile(OutboxError):
    """The file is a SQLite database, but not a fastsmtp outbox (another application's)."""


class OutboxSchemaTooNew(OutboxError):
    """The outbox was written by a newer fastsmtp: its schema version is unknown here."""

    def __init__(self, message: str, *, path: str | None = None, version: int = 0) -> None:
        super().__init__(message, path=path)
        self.version = version


class OutboxLocked(OutboxError):
    """Another process holds the outbox: its sender lock (``holder`` says who, when it
    wrote that down), or a SQLite write lock that did not clear within the busy timeout."""

    def __init__(self, message: str, *, path: str | None = None, holder: str | None = None):
        super().__init__(message, path=path)
        self.holder = holder


class OutboxFull(OutboxError, OSError):
    """The disk (or the file system's quota) is full: the change was not committed."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        OSError.__init__(self, errno.ENOSPC, message)
        self.path = path

    def __str__(self) -> str:
        return str(self.strerror)


class OutboxReadOnly(OutboxError, PermissionError):
    """The outbox file (or its directory) cannot be written: it was opened for reading
    only, or a change was asked of a file this process may not write."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        PermissionError.__init__(self, errno.EACCES, message)
        self.path = path

    def __str__(self) -> str:
        return str(self.strerror)


class OutboxClosed(OutboxError):
    """The outbox (or its sender) was closed."""


class JobNotFound(OutboxError, KeyError):
    """No job has this ``job_id``."""

    def __init__(self, job_id: str, *, path: str | None = None) -> None:
        OutboxError.__init__(self, f"no job {job_id!r} in the outbox", path=path)
        self.job_id = job_id

    def __str__(self) -> str:
        return str(self.args[0])


class JobConflict(OutboxError, ValueError):
    """A ``job_id`` already names a job made from a different template (or batch data):
    reusing it would send a different message under an old identity."""

    def __init__(self, message: str, *, job_id: str, path: str | None = None) -> None:
        super().__init__(message, path=path)
        self.job_id = job_id
