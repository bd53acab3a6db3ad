"""Strict per-destination rate limits: GCRA (the generic cell rate algorithm of ATM
networks, a token bucket written as one timestamp) for each declared window.

For a rate ``r`` per second and a burst ``b``, a GCRA keeps a theoretical arrival time
``tat`` and admits a message at time ``t`` when ``tat - (b - 1) / r <= t``, moving ``tat``
to ``max(tat, t) + 1 / r``. Over any window of length ``W`` it admits at most
``floor(r * W) + b`` messages: this is the guarantee the shaping tests check, for every
window of at least a second. Several windows (per second, minute, hour) are several GCRAs,
and a message goes only when all of them admit it.

``scale(factor)`` changes every rate (and burst) at once (the AIMD controller's lever) without
forgetting what was already sent.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence

__all__ = ["GCRA", "RateLimiter"]

# Float slack so that arithmetic on exact interval multiples does not lose a message.
_EPS = 1e-9


class GCRA:
    """One rate: ``rate`` messages a second with bursts of up to ``burst``."""

    __slots__ = ("_base_burst", "_base_rate", "interval", "rate", "tat", "tolerance")

    def __init__(self, rate: float, burst: int) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ValueError(f"rate must be a positive number, not {rate!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst!r}")
        self._base_rate = rate
        self._base_burst = burst
        self.rate = rate
        self.interval = 1.0 / rate
        self.tolerance = (burst - 1) * self.interval
        self.tat = -math.inf

    def scale(self, factor: float) -> None:
        """Scale the rate and the burst (at least 1) by ``factor`` of their base values: a
        destination that says "slow down" gets smaller bursts too, not only fewer of them."""
        self.rate = self._base_rate * factor
        self.interval = 1.0 / self.rate
        burst = max(1, math.floor(self._base_burst * factor))
        self.tolerance = (burst - 1) * self.interval

    def available(self, now: float) -> int:
        """How many messages would be admitted at ``now``."""
        slack = now + self.tolerance - max(self.tat, now)
        if slack < -_EPS:
            return 0
        return int((slack + _EPS) / self.interval) + 1

    def consume(self, n: int, now: float) -> None:
        self.tat = max(self.tat, now) + n * self.interval

    def wait(self, now: float) -> float:
        """Seconds until one message would be admitted."""
        return max(0.0, self.tat - self.tolerance - now)


class RateLimiter:
    """All of a destination's windows at once.

    Args:
        rates: ``(messages per second, burst)`` for each window, e.g. a per-minute limit
            of 600 is ``(10.0, burst)``.
    """

    __slots__ = ("_windows",)

    def __init__(self, rates: Sequence[tuple[float, int]]) -> None:
        if not rates:
            raise ValueError("a RateLimiter needs at least one rate")
        self._windows = [GCRA(rate, burst) for rate, burst in rates]

    @property
    def rate(self) -> float:
        """The tightest current rate, messages per second."""
        return min(w.rate for w in self._windows)

    def scale(self, factor: float) -> None:
        for window in self._windows:
            window.scale(factor)

    def try_acquire(self, n: int, now: float) -> int:
        """Take up to ``n`` messages' worth now; returns how many were granted (0..n)."""
        granted = n
        for window in self._windows:
            granted = min(granted, window.available(now))
        if granted > 0:
            for window in self._windows:
                window.consume(granted, now)
        return granted

    def delay(self, now: float) -> float:
        """Seconds until at least one message may go."""
        return max(w.wait(now) for w in self._windows)

    async def acquire(self, n: int, clock: Callable[[], float]) -> int:
        """Wait until at least one message may go, then take up to ``n``."""
        while True:
            now = clock()
            granted = self.try_acquire(n, now)
            if granted:
                return granted
            await asyncio.sleep(max(self.delay(now), 0.001))
