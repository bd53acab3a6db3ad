"""A token bucket shared by every connection of an engine (messages per second)."""

from __future__ import annotations

import asyncio


class TokenBucket:
    """Grants up to ``rate`` messages a second, with bursts of at most one second's worth.

    ``take(n)`` grants as many tokens as are available now (at least one, waiting for it if
    need be), so a connection with room for 200 messages sends what the rate allows at once
    instead of waiting for all 200.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.updated = asyncio.get_running_loop().time()

    def _refill(self) -> None:
        now = asyncio.get_running_loop().time()
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
