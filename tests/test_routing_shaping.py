"""Per-destination shaping (strict GCRA windows, AIMD backoff and recovery, limits from
Python and TOML, snapshots) and relay selection (failover, weighted round-robin, health).
Pure logic on a hand-moved clock, plus one real-time wait."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastsmtp.routing import (
    Backoff,
    Limits,
    MXHost,
    RateLimiter,
    Relay,
    RelaySet,
    ReplyClass,
    Route,
    RoutingConfigError,
    Shaper,
    ShapingConfig,
    classify_reply,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def worst_window(times: list[float], width: float) -> int:
    """The most events inside any closed window [t, t + width]."""
    best, j = 0, 0
    for i in range(len(times)):
        while times[i] - times[j] > width + 1e-9:
            j += 1
        best = max(best, i - j + 1)
    return best


# ------------------------------------------------------------------ GCRA


@given(
    rate=st.floats(min_value=0.5, max_value=500),
    burst=st.integers(min_value=1, max_value=50),
    steps=st.lists(
        st.tuples(st.floats(min_value=0, max_value=0.5), st.integers(min_value=1, max_value=40)),
        min_size=1,
        max_size=300,
    ),
)
def test_gcra_never_exceeds_rate_times_window_plus_burst(
    rate: float, burst: int, steps: list[tuple[float, int]]
) -> None:
    limiter = RateLimiter([(rate, burst)])
    now = 0.0
    sent: list[float] = []
    for gap, wanted in steps:
        now += gap
        granted = limiter.try_acquire(wanted, now)
        assert 0 <= granted <= wanted
        sent += [now] * granted
    for width in (1.0, 1.5, 2.0, 5.0, 10.0):
        assert worst_window(sent, width) <= math.floor(rate * width + 1e-6) + burst


def test_gcra_grants_the_full_rate_when_asked_continuously() -> None:
    limiter = RateLimiter([(100.0, 10)])
    now, total = 0.0, 0
    while now < 10.0:
        total += limiter.try_acquire(1000, now)
        now += 0.01
    # 10 s at 100/s plus the initial burst, give or take the last step.
    assert 1000 <= total <= 1010


def test_several_windows_all_hold() -> None:
    # 10/s, but only 120 a minute: after the first burst the minute window rules.
    limits = Limits(per_second=10, per_minute=120, burst=10)
    limiter = RateLimiter([(r, limits.effective_burst) for r in limits.rates])
    now, sent = 0.0, []
    while now < 180:
        sent += [now] * limiter.try_acquire(50, now)
        now += 0.05
    assert worst_window(sent, 1.0) <= 10 + 10
    assert worst_window(sent, 60.0) <= 120 + 10
    assert abs(limiter.rate - 2.0) < 1e-9
    assert 0 < limiter.delay(now) <= 0.5 or limiter.try_acquire(1, now) == 1


async def test_acquire_waits_for_the_rate_in_real_time() -> None:
    limiter = RateLimiter([(20.0, 1)])
    start = time.monotonic()
    granted = 0
    while granted < 6:
        granted += await limiter.acquire(10, time.monotonic)
    # One at once, then one every 50 ms.
    assert time.monotonic() - start >= 0.24


# ------------------------------------------------------------------ AIMD


def make_destination(limits: Limits, backoff: Backoff, clock: FakeClock) -> object:
    config = ShapingConfig(default=limits, backoff=backoff)
    return Shaper(config, clock=clock).destination("mx:mx.example.test")


def test_throttling_halves_rate_and_connections_then_recovers_additively() -> None:
    clock = FakeClock()
    shaper = Shaper(
        ShapingConfig(
            default=Limits(connections=8, per_second=40),
            backoff=Backoff(decrease=0.5, increase=0.25, recover_after=10, holdoff=1.0),
        ),
        clock=clock,
    )
    dest = shaper.destination("mx:a")
    assert (dest.connections, dest.rate) == (8, 40.0)

    assert dest.record_reply(421, "4.7.0") == ReplyClass.THROTTLED
    assert (dest.connections, dest.rate, dest.factor) == (4, 20.0, 0.5)
    # More rejections from messages already in flight within the hold-off: no new cut.
    for _ in range(20):
        dest.record_reply(451, "4.7.1")
    assert dest.factor == 0.5 and dest.decreases == 1
    clock.now += 1.5
    dest.record(ReplyClass.REFUSED)  # a refused connection is a throttle signal too
    assert (dest.connections, dest.rate, dest.factor) == (2, 10.0, 0.25)

    # Clean streaks add back 0.25 each; other 4xx and 5xx neither cut nor count as clean.
    for _ in range(9):
        dest.record_reply(250)
    dest.record_reply(450, "4.2.0")
    dest.record_reply(550, "5.1.1")
    assert dest.factor == 0.25
    for _ in range(10):
        dest.record_reply(250)
    assert dest.factor == 0.5
    for _ in range(20):
        dest.record_reply(250)
    assert (dest.factor, dest.connections, dest.rate) == (1.0, 8, 40.0)
    for _ in range(50):
        dest.record_reply(250)
    assert dest.factor == 1.0

    snap = shaper.snapshot()[0]
    assert snap.key == "mx:a" and snap.decreases == 2
    assert snap.totals[ReplyClass.THROTTLED] == 21 and snap.totals[ReplyClass.REFUSED] == 1
    assert snap.recent[ReplyClass.OK] == sum(1 for _ in range(89))
    assert sum(snap.recent.values()) == 100  # the last 100 outcomes


def test_unlimited_destination_gets_a_measured_rate_on_first_throttle() -> None:
    clock = FakeClock()
    shaper = Shaper(
        ShapingConfig(backoff=Backoff(recover_after=5, increase=0.5, measure_window=10)),
        clock=clock,
    )
    dest = shaper.destination("mx:b")
    assert dest.rate is None
    for _ in range(10):  # 50 messages a second for 10 s
        assert dest.try_acquire(50) == 50
        clock.now += 1
    dest.record_reply(421, "4.7.0")
    assert dest.rate is not None and 20 <= dest.rate <= 30  # ~50/s halved
    # The new limit holds: far fewer than 50 go in the next second.
    granted = sum(dest.try_acquire(1) for _ in range(100))
    assert granted <= 30
    for _ in range(10):
        dest.record_reply(250)
    assert dest.rate is None  # fully recovered: unlimited again, as configured


def test_a_throttled_destination_does_not_slow_another() -> None:
    clock = FakeClock()
    shaper = Shaper(ShapingConfig(default=Limits(connections=4, per_second=10)), clock=clock)
    slow, fast = shaper.destination("mx:slow"), shaper.destination("mx:fast")
    slow.record_reply(421, "4.7.0")
    assert (slow.connections, slow.rate) == (2, 5.0)
    assert (fast.connections, fast.rate) == (4, 10.0)
    assert fast.try_acquire(10) == 10


@pytest.mark.parametrize(
    ("code", "enhanced", "expected"),
    [
        (250, "2.0.0", ReplyClass.OK),
        (421, None, ReplyClass.THROTTLED),
        (421, "4.3.2", ReplyClass.THROTTLED),
        (450, "4.7.1", ReplyClass.THROTTLED),
        (451, "4.7.0", ReplyClass.THROTTLED),
        (450, "4.2.1", ReplyClass.TRANSIENT),
        (452, None, ReplyClass.TRANSIENT),
        (550, "5.7.1", ReplyClass.PERMANENT),
    ],
)
def test_classify_reply(code: int, enhanced: str | None, expected: str) -> None:
    assert classify_reply(code, enhanced) == expected


# ------------------------------------------------------------ configuration


TOML = """
[default]
connections = 10
per_minute = 600
max_messages_per_connection = 100

[backoff]
decrease = 0.25
recover_after = 20

[[destination]]
match = ["*.google.com", "gmail.com"]
connections = 4
per_second = 20
source_address = "127.0.0.9"

[[destination]]
match = "mx:slow.example.test"
per_hour = 360
"""


def route_for(domain: str, *hosts: str) -> Route:
    return Route(domain, "mx:" + ",".join(sorted(hosts)), tuple(MXHost(h, 10, ()) for h in hosts))


def test_limits_from_toml_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "shaping.toml"
    path.write_text(TOML)
    config = ShapingConfig.from_toml(path)
    assert config == ShapingConfig.from_toml(TOML)
    assert config.backoff.decrease == 0.25 and config.backoff.recover_after == 20
    shaper = Shaper(config)

    google = shaper.for_route(
        route_for("customer.test", "aspmx.l.google.com", "alt1.aspmx.l.google.com")
    )
    assert google.limits == Limits(
        connections=4,
        per_second=20,
        per_minute=600,
        max_messages_per_connection=100,
        source_address="127.0.0.9",
    )
    assert google.rate == 10.0  # the per-minute default (10/s) is tighter than 20/s
    gmail = shaper.for_route(route_for("gmail.com", "gmail-smtp-in.l.google.com"))
    assert gmail.limits.connections == 4
    slow = shaper.destination("mx:slow.example.test")
    assert slow.limits.per_hour == 360 and slow.limits.connections == 10
    other = shaper.for_route(route_for("example.test", "mx.example.test"))
    assert other.limits == config.default
    # The same route again: the same destination object (state is kept per key).
    assert (
        shaper.for_route(
            route_for("customer.test", "aspmx.l.google.com", "alt1.aspmx.l.google.com")
        )
        is google
    )


def test_overrides_declared_in_python() -> None:
    config = ShapingConfig(default=Limits(connections=3)).with_override(
        "*.outlook.test", connections=1, per_second=2
    )
    shaper = Shaper(config)
    dest = shaper.for_route(route_for("corp.test", "corp-test.mail.protection.outlook.test"))
    assert (dest.connections, dest.rate) == (1, 2.0)
    with pytest.raises(RoutingConfigError):
        ShapingConfig().with_override("x.test", conections=1)


@pytest.mark.parametrize(
    "text",
    [
        "[default]\nconections = 3\n",
        "[default]\nconnections = 0\n",
        "[default]\nper_second = -1\n",
        "[default]\nburst = 0\n",
        "[backoff]\ndecrease = 1.5\n",
        "[limits]\nconnections = 1\n",
        "[[destination]]\nconnections = 1\n",  # no match
        "[[destination]]\nmatch = 'a.test'\nper_minute = 'fast'\n",
        "[default\n",
    ],
)
def test_bad_shaping_config_is_a_typed_error(text: str) -> None:
    with pytest.raises(RoutingConfigError):
        ShapingConfig.from_toml(text)


# ------------------------------------------------------------------- relays


def test_failover_uses_the_first_healthy_relay() -> None:
    clock = FakeClock()
    a, b, c = Relay("127.0.0.2"), Relay("127.0.0.3"), Relay("127.0.0.4", 2525)
    relays = RelaySet([a, b, c], "failover", retry_after=10, clock=clock)
    assert [relays.select() for _ in range(3)] == [a, a, a]
    relays.failed(a)
    assert relays.select() == b
    assert relays.order() == [b, c, a]
    relays.failed(b)
    assert relays.select() == c
    relays.failed(c)
    # All down: the one that comes back first is still offered.
    assert relays.select() == a
    clock.now += 10
    assert relays.select() == a and relays.is_up(a)
    relays.failed(a)  # second consecutive failure: down twice as long
    clock.now += 15
    assert not relays.is_up(a)
    clock.now += 5
    assert relays.is_up(a)
    relays.succeeded(a)
    assert relays.status()[0] == ("127.0.0.2:25", True, 0)


def test_weighted_round_robin_is_smooth_and_skips_down_relays() -> None:
    clock = FakeClock()
    a, b, c = Relay("a.test", weight=5), Relay("b.test"), Relay("c.test")
    relays = RelaySet([a, b, c], "round-robin", clock=clock)
    picks = [relays.select().host for _ in range(7)]
    assert picks == ["a.test", "a.test", "b.test", "a.test", "c.test", "a.test", "a.test"]
    counts = {r: 0 for r in ("a.test", "b.test", "c.test")}
    for _ in range(700):
        counts[relays.select().host] += 1
    assert counts == {"a.test": 500, "b.test": 100, "c.test": 100}
    relays.failed(a)
    assert {relays.select().host for _ in range(10)} == {"b.test", "c.test"}


def test_relay_config_errors() -> None:
    with pytest.raises(RoutingConfigError):
        RelaySet([], "failover")
    with pytest.raises(RoutingConfigError):
        RelaySet([Relay("a.test")], "random")
    with pytest.raises(RoutingConfigError):
        Relay("a.test", weight=0)
    with pytest.raises(RoutingConfigError):
        RelaySet([Relay("a.test"), Relay("a.test")])


def test_shaper_snapshot_is_empty_until_used() -> None:
    assert Shaper().snapshot() == []
