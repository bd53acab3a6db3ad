"""A TTL cache whose misses are coalesced: concurrent callers asking for the same key while
its value is being computed share one computation (one DNS query, one HTTPS fetch).

Every entry carries its own expiry (a DNS answer's TTL, a policy's max_age), so the cache
never serves a value past its lifetime; values that must not be cached at all are stored
with an expiry in the past and simply recomputed by the next caller. The clock is injected
so tests can move time without sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["CoalescingCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class CoalescingCache(Generic[K, V]):
    """``key -> (value, expires)`` with at most one computation in flight per key.

    Args:
        clock: monotonic seconds (``time.monotonic`` by default).
        max_entries: when the cache is full, expired entries are dropped first, then the
            oldest inserted ones (a cheap bound on memory for huge domain lists).
    """

    def __init__(self, clock: Callable[[], float], max_entries: int = 100_000) -> None:
        self._clock = clock
        self._max_entries = max_entries
        self._values: dict[K, tuple[V, float]] = {}
        self._inflight: dict[K, asyncio.Task[tuple[V, float]]] = {}

    def __len__(self) -> int:
        return len(self._values)

    def peek(self, key: K) -> V | None:
        """The cached value if it has not expired, without computing anything."""
        entry = self._values.get(key)
        if entry is not None and entry[1] > self._clock():
            return entry[0]
        return None

    def peek_stale(self, key: K) -> tuple[V, float] | None:
        """The cached value and its expiry, expired or not (for serve-stale decisions)."""
        return self._values.get(key)

    def put(self, key: K, value: V, expires: float) -> None:
        if len(self._values) >= self._max_entries and key not in self._values:
            self._evict()
        self._values[key] = (value, expires)

    def invalidate(self, key: K | None = None) -> None:
        """Forget one key, or everything."""
        if key is None:
            self._values.clear()
        else:
            self._values.pop(key, None)

    async def get(self, key: K, compute: Callable[[], Awaitable[tuple[V, float]]]) -> V:
        """The cached value, or the result of ``compute()`` (``(value, expires)``), which
        is stored. Callers arriving while ``compute()`` runs wait for the same result; a
        caller that is cancelled does not cancel the computation the others wait for."""
        entry = self._values.get(key)
        if entry is not None and entry[1] > self._clock():
            return entry[0]
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._compute(key, compute))
            self._inflight[key] = task
        value, _ = await asyncio.shield(task)
        return value

    async def _compute(
        self, key: K, compute: Callable[[], Awaitable[tuple[V, float]]]
    ) -> tuple[V, float]:
        try:
            value, expires = await compute()
            self.put(key, value, expires)
            return value, expires
        finally:
            del self._inflight[key]

    def _evict(self) -> None:
        now = self._clock()
        expired = [k for k, (_, exp) in self._values.items() if exp <= now]
        for k in expired:
            del self._values[k]
        # Still full: drop the oldest tenth (dicts keep insertion order).
        if len(self._values) >= self._max_entries:
            for k in list(self._values)[: max(1, self._max_entries // 10)]:
                del self._values[k]
