"""The start/stop shape every peer shares, so each one only writes start() and stop()."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Peer:
    """A server process or thread: ``with peer:`` starts it and always stops it."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
