"""A token bucket shared by every connection of an engine (messages per second)."""

from __future__ import annotations

import asyncio


class TokenBucket:
    """Grants ``rate`` messages a second, with bursts of at most ``burst``.

    It starts full and holds at most ``burst`` tokens, so over any window of ``w`` seconds
    at most ``rate * w + burst`` messages are granted (a provider throttling on short
    windows sees no more than that). ``take(n)`` grants as many tokens as are available
    now (at least one, waiting for it if need be), so a connection with room for 200
    messages sends what the rate allows at once instead of waiting for all 200.
    """

    def __init__(self, rate: float, burst: int = 1) -> None:
        self.rate = rate
        self.capacity = float(max(1, burst))
        self.tokens = self.capacity
        self._loop = asyncio.get_running_loop()
        self.updated = self._loop.time()

    def _refill(self) -> None:
        now = self._loop.time()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    async def take(self, wanted: int) -> int:
        while True:
            self._refill()
            if self.tokens >= 1:
                granted = min(wanted, int(self.tokens))
                self.tokens -= granted
                return granted
            await asyncio.sleep((1 - self.tokens) / self.rate)
