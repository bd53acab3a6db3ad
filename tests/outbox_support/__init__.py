"""Helpers for the outbox tests: a size-limited tmpfs (a real full disk) and templates."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator

import fastsmtp

TEMPLATE = fastsmtp.Message(
    sender="Shop <news@shop.example>",
    subject="Hello {{ first }}",
    text="Hi {{ first }}, your code is {{ code }}.",
)


def people(n: int, start: int = 0) -> list[dict[str, object]]:
    return [
        {"address": f"user{i}@example.org", "first": f"User{i}", "code": i}
        for i in range(start, start + n)
    ]


@contextlib.contextmanager
def tmpfs(size: str = "8m") -> Iterator[str]:
    """A fresh tmpfs of ``size`` mounted on a temporary directory (needs root, as the
    test machines and CI run)."""
    directory = tempfile.mkdtemp(prefix="fastsmtp-tmpfs-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", directory], check=True)
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", directory], check=False)
        os.rmdir(directory)


def remount_readonly(directory: str) -> None:
    subprocess.run(["mount", "-o", "remount,ro", directory], check=True)


def fill_disk(directory: str, leave: int) -> str:
    """Fill the file system of ``directory`` up to ``leave`` free bytes with a ballast
    file; returns its path (delete it to free the space)."""
    ballast = os.path.join(directory, "ballast")
    stat = os.statvfs(directory)
    free = stat.f_bavail * stat.f_frsize
    with open(ballast, "wb") as f:
        remaining = max(0, free - leave)
        block = b"\0" * (1 << 20)
        while remaining > 0:
            n = min(remaining, len(block))
            try:
                f.write(block[:n])
                f.flush()
            except OSError:
                break
            remaining -= n
    return ballast
