"""Choosing among several relays (smarthosts): ``failover`` or weighted ``round-robin``,
with health tracking.

Only the choice lives here; the engine makes the connection and reports back with
``failed()`` (connection refused or timed out, or a 4xx greeting) or ``succeeded()``. The
engine must only ever move work that never went on the wire to another relay, so nothing
whose outcome is in doubt is sent twice.

* ``failover``: always the first healthy relay in the declared order; the next one only
  while the earlier ones are marked down.
* ``round-robin``: smooth weighted round-robin (the nginx algorithm: each pick adds every
  healthy relay's weight to its running score, takes the highest score and subtracts the
  total), so weights 5:1:1 give ``a a b a c a a`` rather than five ``a`` in a row.

A failed relay is down for ``retry_after`` seconds, doubling with each consecutive
failure up to ``max_retry_after``; when every relay is down the one that comes back
soonest is offered (a relay that is down is better than none).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ._errors import RoutingConfigError

__all__ = ["Relay", "RelayPolicy", "RelaySet"]

RelayPolicy = str  # "failover" | "round-robin"
POLICIES = ("failover", "round-robin")


@dataclass(frozen=True, slots=True)
class Relay:
    host: str
    port: int = 25
    weight: int = 1
    name: str = ""

    def __post_init__(self) -> None:
        if self.weight < 1:
            raise RoutingConfigError(f"relay weight must be at least 1, not {self.weight}")
        if not 0 < self.port < 65536:
            raise RoutingConfigError(f"relay port {self.port} is out of range")

    @property
    def label(self) -> str:
        return self.name or f"{self.host}:{self.port}"


class _Health:
    __slots__ = ("down_until", "failures", "score")

    def __init__(self) -> None:
        self.down_until = -math.inf
        self.failures = 0
        self.score = 0


class RelaySet:
    """Relays with a selection policy.

    Args:
        relays: in failover order.
        policy: ``"failover"`` or ``"round-robin"``.
        retry_after, max_retry_after: how long a failed relay stays down (doubling).
    """

    def __init__(
        self,
        relays: Sequence[Relay],
        policy: RelayPolicy = "failover",
        *,
        retry_after: float = 30.0,
        max_retry_after: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not relays:
            raise RoutingConfigError("a RelaySet needs at least one relay")
        if policy not in POLICIES:
            raise RoutingConfigError(f"relay policy must be one of {POLICIES}, not {policy!r}")
        if len({r.label for r in relays}) != len(relays):
            raise RoutingConfigError("relays must be distinct")
        self.relays = tuple(relays)
        self.policy = policy
        self.retry_after = retry_after
        self.max_retry_after = max_retry_after
        self._clock = clock
        self._health = {r: _Health() for r in self.relays}

    def is_up(self, relay: Relay) -> bool:
        return self._health[relay].down_until <= self._clock()

    def select(self) -> Relay:
        """The relay for the next connection."""
        now = self._clock()
        healthy = [r for r in self.relays if self._health[r].down_until <= now]
        if not healthy:
            return min(self.relays, key=lambda r: self._health[r].down_until)
        if self.policy == "failover":
            return healthy[0]
        total = 0
        best: Relay | None = None
        for relay in healthy:
            health = self._health[relay]
            health.score += relay.weight
            total += relay.weight
            if best is None or health.score > self._health[best].score:
                best = relay
        assert best is not None
        self._health[best].score -= total
        return best

    def order(self) -> list[Relay]:
        """Every relay in the order to try for one piece of work: the selected one first,
        then the other healthy ones in declared order, then the down ones (soonest back
        first)."""
        first = self.select()
        now = self._clock()
        rest = [r for r in self.relays if r != first]
        up = [r for r in rest if self._health[r].down_until <= now]
        down = sorted((r for r in rest if r not in up), key=lambda r: self._health[r].down_until)
        return [first, *up, *down]

    def failed(self, relay: Relay) -> None:
        """A connection to ``relay`` failed (refused, timed out, 4xx greeting)."""
        health = self._health[relay]
        health.failures += 1
        backoff = min(self.max_retry_after, self.retry_after * 2 ** (health.failures - 1))
        health.down_until = self._clock() + backoff

    def succeeded(self, relay: Relay) -> None:
        """A connection to ``relay`` worked: it is healthy again."""
        health = self._health[relay]
        health.failures = 0
        health.down_until = -math.inf

    def status(self) -> list[tuple[str, bool, int]]:
        """``(label, up, consecutive failures)`` per relay."""
        return [(r.label, self.is_up(r), self._health[r].failures) for r in self.relays]
