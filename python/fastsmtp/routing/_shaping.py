"""Per-destination traffic shaping: configured limits, and an AIMD controller that backs
off when a destination says "slow down" and recovers when it stops saying so.

Configuration (``ShapingConfig``): default ``Limits`` plus overrides matched against a
destination's recipient domain, MX host names or destination key (``"gmail.com"`` exactly,
or ``"*.google.com"`` for any name under google.com). Declared in Python or loaded from
TOML (``ShapingConfig.from_toml``)::

    [default]
    connections = 10
    per_minute = 600
    max_messages_per_connection = 100

    [backoff]
    decrease = 0.5
    recover_after = 50

    [[destination]]
    match = ["*.google.com", "gmail.com"]
    connections = 4
    per_second = 20
    source_address = "192.0.2.10"

Backoff (``Destination.record``): a throttling signal (a 421 reply, any 4.7.x enhanced
code, a refused connection) multiplies the destination's factor by ``decrease`` (at most
once per ``holdoff`` seconds, so one burst of rejections from the messages already in
flight counts once, as TCP counts one loss per window); the rate limit and the number of
connections are the configured ones times that factor. After ``recover_after``
consecutive clean outcomes the factor grows by ``increase`` (additive), back to 1. A
destination without a configured rate gets one at its first throttle: the rate it was
actually sending at, measured over the last ``measure_window`` seconds, times ``decrease``;
when it has fully recovered the limit is lifted again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the 'direct' extra installs tomli on 3.10
    import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]

from ._errors import RoutingConfigError
from ._limiter import RateLimiter

__all__ = [
    "Backoff",
    "Destination",
    "DestinationSnapshot",
    "Limits",
    "Override",
    "ReplyClass",
    "Shaper",
    "ShapingConfig",
    "classify_reply",
]


class ReplyClass:
    """Outcome classes a destination records (plain strings, so snapshots print well)."""

    OK = "ok"  # 2xx
    THROTTLED = "throttled"  # 421, or a 4.7.x enhanced code
    TRANSIENT = "transient"  # other 4xx
    PERMANENT = "permanent"  # 5xx
    REFUSED = "refused"  # the connection was refused or reset at connect
    TIMEOUT = "timeout"  # connect or reply time-out

    THROTTLING = frozenset({THROTTLED, REFUSED})


def classify_reply(code: int, enhanced_code: str | None = None) -> str:
    """The class of an SMTP reply: 421 and ``4.7.x`` are throttling signals (RFC 5321
    4.2.2: 421 "Service not available, closing transmission channel"; RFC 3463 X.7.x:
    security or policy status, which large providers use for rate limits)."""
    if 200 <= code < 300:
        return ReplyClass.OK
    if code == 421 or (enhanced_code is not None and enhanced_code.startswith("4.7.")):
        return ReplyClass.THROTTLED
    if 400 <= code < 500:
        return ReplyClass.TRANSIENT
    return ReplyClass.PERMANENT


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits for one destination.

    Attributes:
        connections: simultaneous connections.
        per_second, per_minute, per_hour: message rates (None: no limit in that window).
        burst: messages that may go at once; default: one second's worth of
            ``per_second`` (at least 1). Over any window ``W`` of at least a second, at
            most ``rate * W + burst`` messages go, for each declared rate.
        max_messages_per_connection: close and reopen after this many (None: no cap).
        source_address: the local IP to bind outgoing connections to (egress pools).
    """

    connections: int = 10
    per_second: float | None = None
    per_minute: float | None = None
    per_hour: float | None = None
    burst: int | None = None
    max_messages_per_connection: int | None = None
    source_address: str | None = None

    def __post_init__(self) -> None:
        if self.connections < 1:
            raise RoutingConfigError(f"connections must be at least 1, not {self.connections}")
        for name in ("per_second", "per_minute", "per_hour"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise RoutingConfigError(f"{name} must be a positive number, not {value!r}")
        if self.burst is not None and self.burst < 1:
            raise RoutingConfigError(f"burst must be at least 1, not {self.burst}")
        cap = self.max_messages_per_connection
        if cap is not None and cap < 1:
            raise RoutingConfigError(f"max_messages_per_connection must be at least 1, not {cap}")

    @property
    def rates(self) -> list[float]:
        """The declared rates, in messages per second."""
        out = []
        if self.per_second is not None:
            out.append(self.per_second)
        if self.per_minute is not None:
            out.append(self.per_minute / 60.0)
        if self.per_hour is not None:
            out.append(self.per_hour / 3600.0)
        return out

    @property
    def effective_burst(self) -> int:
        if self.burst is not None:
            return self.burst
        return max(1, math.ceil(self.per_second)) if self.per_second else 1


@dataclass(frozen=True, slots=True)
class Backoff:
    """AIMD settings (see the module docstring)."""

    decrease: float = 0.5
    increase: float = 0.1
    recover_after: int = 50
    holdoff: float = 1.0
    min_factor: float = 1 / 64
    measure_window: float = 10.0
    recent: int = 100  # outcomes kept for ``DestinationSnapshot.recent``

    def __post_init__(self) -> None:
        if not 0 < self.decrease < 1:
            raise RoutingConfigError("backoff.decrease must be between 0 and 1")
        if not 0 < self.increase <= 1:
            raise RoutingConfigError("backoff.increase must be in (0, 1]")
        if not 0 < self.min_factor <= 1:
            raise RoutingConfigError("backoff.min_factor must be in (0, 1]")
        if self.recover_after < 1 or self.recent < 1:
            raise RoutingConfigError("backoff.recover_after and recent must be at least 1")
        if self.holdoff < 0 or self.measure_window <= 0:
            raise RoutingConfigError("backoff.holdoff must be >= 0, measure_window > 0")


@dataclass(frozen=True, slots=True)
class Override:
    """Limits for destinations matching any of ``match``; only the fields in ``fields``
    replace the defaults."""

    match: tuple[str, ...]
    fields: Mapping[str, Any]

    def matches(self, names: Iterable[str]) -> bool:
        names = list(names)
        for pattern in self.match:
            pattern = pattern.lower().rstrip(".")
            if pattern.startswith("*."):
                suffix = pattern[1:]
                if any(n.endswith(suffix) for n in names):
                    return True
            elif pattern in names:
                return True
        return False


_LIMIT_FIELDS = frozenset(f.name for f in dataclasses.fields(Limits))
_BACKOFF_FIELDS = frozenset(f.name for f in dataclasses.fields(Backoff))


@dataclass(frozen=True)
class ShapingConfig:
    """Default limits, overrides (first match wins) and backoff settings."""

    default: Limits = Limits()
    overrides: tuple[Override, ...] = ()
    backoff: Backoff = Backoff()

    def __post_init__(self) -> None:
        for override in self.overrides:
            unknown = set(override.fields) - _LIMIT_FIELDS
            if unknown:
                raise RoutingConfigError(f"unknown limit field(s): {', '.join(sorted(unknown))}")
            dataclasses.replace(self.default, **override.fields)  # validates the values

    def with_override(self, match: str | Sequence[str], **fields: Any) -> ShapingConfig:
        """A copy with one more override (declared after the existing ones)."""
        patterns = (match,) if isinstance(match, str) else tuple(match)
        return dataclasses.replace(
            self, overrides=(*self.overrides, Override(patterns, dict(fields)))
        )

    def limits_for(self, names: Iterable[str]) -> Limits:
        """The limits of a destination known by ``names`` (domain, MX hosts, key)."""
        lowered = [n.lower().rstrip(".") for n in names]
        for override in self.overrides:
            if override.matches(lowered):
                return dataclasses.replace(self.default, **override.fields)
        return self.default

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShapingConfig:
        """Build from the TOML structure (``default``, ``backoff``, ``destination``)."""
        unknown = set(data) - {"default", "backoff", "destination"}
        if unknown:
            raise RoutingConfigError(f"unknown shaping section(s): {', '.join(sorted(unknown))}")
        default = _build(Limits, data.get("default", {}), _LIMIT_FIELDS, "default")
        backoff = _build(Backoff, data.get("backoff", {}), _BACKOFF_FIELDS, "backoff")
        overrides = []
        entries = data.get("destination", [])
        if not isinstance(entries, list):
            raise RoutingConfigError("destination must be an array of tables ([[destination]])")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise RoutingConfigError(f"destination[{i}] must be a table")
            entry = dict(entry)
            match = entry.pop("match", None)
            if isinstance(match, str):
                match = [match]
            if not match or not all(isinstance(m, str) and m for m in match):
                raise RoutingConfigError(f"destination[{i}].match must be a name or list of names")
            _build(Limits, entry, _LIMIT_FIELDS, f"destination[{i}]")  # validate
            overrides.append(Override(tuple(match), entry))
        return cls(default, tuple(overrides), backoff)

    @classmethod
    def from_toml(cls, source: str | Path) -> ShapingConfig:
        """Load from a TOML file path (``Path``) or TOML text (``str``)."""
        try:
            if isinstance(source, Path):
                with source.open("rb") as fh:
                    data = tomllib.load(fh)
            else:
                data = tomllib.loads(source)
        except tomllib.TOMLDecodeError as exc:
            raise RoutingConfigError(f"shaping TOML: {exc}") from exc
        return cls.from_dict(data)


def _build(kind: Any, values: Any, allowed: frozenset[str], where: str) -> Any:
    if not isinstance(values, dict):
        raise RoutingConfigError(f"{where} must be a table")
    unknown = set(values) - allowed
    if unknown:
        raise RoutingConfigError(f"unknown key(s) in {where}: {', '.join(sorted(unknown))}")
    try:
        return kind(**values)
    except TypeError as exc:
        raise RoutingConfigError(f"{where}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class DestinationSnapshot:
    """A destination's state for ``engine.destinations()``."""

    key: str
    limits: Limits  # as configured
    connections: int  # allowed now
    rate: float | None  # messages per second allowed now (None: unlimited)
    factor: float  # 1.0 = full configured limits
    recent: dict[str, int]  # outcome class -> count among the last ``Backoff.recent``
    totals: dict[str, int]  # outcome class -> count since the start
    decreases: int  # multiplicative decreases so far


@dataclass
class Destination:
    """One destination's limits and AIMD state. Not thread-safe (one event loop)."""

    key: str
    limits: Limits
    backoff: Backoff
    clock: Callable[[], float]
    factor: float = 1.0
    decreases: int = 0
    _limiter: RateLimiter | None = None
    _observed_base: bool = False  # the limiter's base rate was measured, not configured
    _streak: int = 0
    _last_decrease: float = -math.inf
    _recent: deque[str] = field(default_factory=deque)
    _totals: Counter[str] = field(default_factory=Counter)
    _sent: deque[tuple[float, int]] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self._recent = deque(maxlen=self.backoff.recent)
        rates = self.limits.rates
        if rates:
            burst = self.limits.effective_burst
            self._limiter = RateLimiter([(r, burst) for r in rates])

    # ------------------------------------------------------------ limits now

    @property
    def connections(self) -> int:
        """Connections allowed now: the configured number times the factor, at least 1."""
        return max(1, math.floor(self.limits.connections * self.factor))

    @property
    def rate(self) -> float | None:
        """Messages per second allowed now (the tightest window), None if unlimited."""
        return None if self._limiter is None else self._limiter.rate

    def try_acquire(self, n: int = 1) -> int:
        """Take up to ``n`` messages' worth of rate now (0..n). Counts what it grants."""
        now = self.clock()
        granted = n if self._limiter is None else self._limiter.try_acquire(n, now)
        if granted:
            self._sent.append((now, granted))
        return granted

    def delay(self) -> float:
        """Seconds until ``try_acquire`` can grant something."""
        return 0.0 if self._limiter is None else self._limiter.delay(self.clock())

    async def acquire(self, n: int = 1) -> int:
        """Wait for rate, then take up to ``n``."""
        while True:
            granted = self.try_acquire(n)
            if granted:
                return granted
            await asyncio.sleep(max(self.delay(), 0.001))

    # ------------------------------------------------------------- feedback

    def record(self, outcome: str) -> None:
        """Feed one outcome (a ``ReplyClass`` value) to the controller."""
        self._recent.append(outcome)
        self._totals[outcome] += 1
        if outcome in ReplyClass.THROTTLING:
            self._streak = 0
            now = self.clock()
            if now - self._last_decrease >= self.backoff.holdoff:
                self._decrease(now)
        elif outcome == ReplyClass.OK:
            self._streak += 1
            if self._streak >= self.backoff.recover_after and self.factor < 1.0:
                self._streak = 0
                self._increase()

    def record_reply(self, code: int, enhanced_code: str | None = None) -> str:
        """Classify an SMTP reply, record it, and return its class."""
        outcome = classify_reply(code, enhanced_code)
        self.record(outcome)
        return outcome

    def _measured_rate(self, now: float) -> float:
        window = self.backoff.measure_window
        while self._sent and self._sent[0][0] < now - window:
            self._sent.popleft()
        if not self._sent:
            return 1.0
        span = max(1.0, now - self._sent[0][0])
        return sum(n for _, n in self._sent) / span

    def _decrease(self, now: float) -> None:
        self._last_decrease = now
        self.decreases += 1
        if self._limiter is None:
            # No configured rate: start from what we were actually sending at.
            base = self._measured_rate(now)
            self._limiter = RateLimiter([(base, max(1, math.ceil(base)))])
            self._observed_base = True
            self.factor = 1.0
        self.factor = max(self.backoff.min_factor, self.factor * self.backoff.decrease)
        self._limiter.scale(self.factor)

    def _increase(self) -> None:
        self.factor = min(1.0, self.factor + self.backoff.increase)
        assert self._limiter is not None
        if self.factor >= 1.0 and self._observed_base:
            self._limiter = None  # fully recovered: unlimited again, as configured
            self._observed_base = False
        else:
            self._limiter.scale(self.factor)

    def snapshot(self) -> DestinationSnapshot:
        return DestinationSnapshot(
            key=self.key,
            limits=self.limits,
            connections=self.connections,
            rate=self.rate,
            factor=self.factor,
            recent=dict(Counter(self._recent)),
            totals=dict(self._totals),
            decreases=self.decreases,
        )


class Shaper:
    """The destinations of one engine, created on first use with their matched limits."""

    def __init__(
        self, config: ShapingConfig | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config or ShapingConfig()
        self._clock = clock
        self._destinations: dict[str, Destination] = {}

    def destination(self, key: str, names: Iterable[str] = ()) -> Destination:
        """The destination ``key``; on first use its limits are matched against ``key``
        and ``names`` (the recipient domain and MX host names)."""
        found = self._destinations.get(key)
        if found is None:
            limits = self.config.limits_for([key, *names])
            found = Destination(key, limits, self.config.backoff, self._clock)
            self._destinations[key] = found
        return found

    def for_route(self, route: Any) -> Destination:
        """The destination of a ``Route`` (its MX rollup key)."""
        found = self._destinations.get(route.destination)
        if found is not None:
            return found
        return self.destination(route.destination, [route.domain, *(h.name for h in route.hosts)])

    def snapshot(self) -> list[DestinationSnapshot]:
        return [d.snapshot() for d in self._destinations.values()]
