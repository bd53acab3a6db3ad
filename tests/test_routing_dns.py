"""Routing against a real DNS server (unbound on loopback, ``tests.peers.dns``): MX order,
equal-preference shuffling, implicit and null MX, NXDOMAIN/SERVFAIL/time-out, IDNA, IPv6,
MX rollup, grouping, and the cache ("at most one look-up per name per TTL", counted in the
server's query log)."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Callable

import pytest

from fastsmtp.routing import (
    DnsOutcome,
    Resolver,
    Route,
    RouteError,
    RouteFailure,
    Router,
)
from tests.peers.dns import DnsServer, Zone
from tests.peers.ports import free_port

ZONES = [
    Zone(
        "multi.test",
        [
            "@ MX 10 mx1",
            "@ MX 20 mx2a",
            "@ MX 20 mx2b",
            "@ MX 20 mx2c",
            "@ MX 30 mx3",
            "mx1 A 127.0.0.2",
            "mx2a A 127.0.0.3",
            "mx2b A 127.0.0.4",
            "mx2c A 127.0.0.5",
            "mx3 A 127.0.0.6",
            "mx3 AAAA ::1",
        ],
    ),
    Zone("null.test", ["@ MX 0 ."]),
    Zone("mixnull.test", ["@ MX 0 .", "@ MX 10 mx1.multi.test."]),
    Zone("aonly.test", ["@ A 127.0.0.7", "@ AAAA ::1"]),
    Zone("ghost.test", ["@ MX 10 nohost.multi.test."]),
    Zone("xn--bcher-kva.test", ["@ MX 10 mx1.multi.test."]),
    Zone(
        "provider.test",
        ["aspmx A 127.0.0.8", "alt1.aspmx A 127.0.0.9"],
    ),
    Zone("cust1.test", ["@ MX 1 aspmx.provider.test.", "@ MX 5 alt1.aspmx.provider.test."]),
    Zone("cust2.test", ["@ MX 5 aspmx.provider.test.", "@ MX 10 alt1.aspmx.provider.test."]),
    Zone("ttl.test", ["@ 2 MX 10 mx1.multi.test."], negative_ttl=3),
    Zone("bogus.test", ["@ MX 10 mx1.multi.test."], bogus=True),
]


class FakeClock:
    """Monotonic time the test moves by hand (cache expiry without sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def dns(dns_server: Callable[..., DnsServer]) -> DnsServer:
    return dns_server(ZONES, dead_zones=["dead.test"])


def resolver_for(server: DnsServer, **kwargs: object) -> Resolver:
    return Resolver([server.address], timeout=1.0, lifetime=2.0, **kwargs)  # type: ignore[arg-type]


async def routed(router: Router, domain: str) -> Route:
    result = await router.lookup(domain)
    assert isinstance(result, Route), result
    return result


async def failed(router: Router, domain: str) -> RouteFailure:
    result = await router.lookup(domain)
    assert isinstance(result, RouteFailure), result
    return result


async def test_mx_hosts_in_preference_order_with_addresses(dns: DnsServer) -> None:
    route = await routed(Router(resolver_for(dns)), "multi.test")
    assert [h.preference for h in route.hosts] == [10, 20, 20, 20, 30]
    assert route.hosts[0].name == "mx1.multi.test"
    assert route.hosts[0].addresses == ("127.0.0.2",)
    assert {h.name for h in route.hosts[1:4]} == {
        "mx2a.multi.test",
        "mx2b.multi.test",
        "mx2c.multi.test",
    }
    # AAAA first by default, then A.
    assert route.hosts[4].addresses == ("::1", "127.0.0.6")
    assert route.port == 25
    assert not route.implicit_mx
    attempts = route.attempts(random.Random(1))
    assert attempts[0] == (route.hosts[0], "127.0.0.2")
    assert [a for _, a in attempts[-2:]] == ["::1", "127.0.0.6"]


async def test_prefer_ipv4_and_ipv6_only(dns: DnsServer) -> None:
    v4_first = await routed(Router(resolver_for(dns), prefer_ipv4=True), "multi.test")
    assert v4_first.hosts[4].addresses == ("127.0.0.6", "::1")
    v6_only = await routed(Router(resolver_for(dns), ipv4=False), "aonly.test")
    assert v6_only.hosts[0].addresses == ("::1",)
    # Only mx3 has an IPv6 address: the other hosts are skipped, not fatal.
    v6_multi = await routed(Router(resolver_for(dns), ipv4=False), "multi.test")
    assert [h.name for h in v6_multi.hosts] == ["mx3.multi.test"]
    assert len(v6_multi.skipped) == 4


async def test_equal_preferences_are_shuffled_per_call(dns: DnsServer) -> None:
    route = await routed(Router(resolver_for(dns)), "multi.test")
    rng = random.Random(7)
    middles = set()
    for _ in range(300):
        order = [h.name for h in route.candidates(rng)]
        assert order[0] == "mx1.multi.test"  # preference 10 always first
        assert order[-1] == "mx3.multi.test"  # preference 30 always last
        middles.add(tuple(order[1:4]))
    assert len(middles) == 6  # every order of the three preference-20 hosts occurs


async def test_implicit_mx_uses_the_domain_addresses(dns: DnsServer) -> None:
    route = await routed(Router(resolver_for(dns)), "aonly.test")
    assert route.implicit_mx
    assert [(h.name, h.preference) for h in route.hosts] == [("aonly.test", 0)]
    assert route.hosts[0].addresses == ("::1", "127.0.0.7")


async def test_null_mx_is_a_permanent_failure(dns: DnsServer) -> None:
    router = Router(resolver_for(dns))
    failure = await failed(router, "null.test")
    assert failure.permanent
    assert (failure.code, failure.enhanced_code) == (556, "5.1.10")
    assert "does not accept mail" in failure.text and "null MX" in failure.text
    with pytest.raises(RouteError) as info:
        await router.route("null.test")
    assert info.value.is_permanent and info.value.failure == failure
    # No address look-ups were made for the "." target.
    assert dns.queries(".", "A") == dns.queries(".", "AAAA") == 0


async def test_null_mx_next_to_real_hosts_is_ignored(dns: DnsServer) -> None:
    route = await routed(Router(resolver_for(dns)), "mixnull.test")
    assert [h.name for h in route.hosts] == ["mx1.multi.test"]


async def test_nxdomain_is_permanent(dns: DnsServer) -> None:
    failure = await failed(Router(resolver_for(dns)), "nope.multi.test")
    assert failure.permanent
    assert failure.enhanced_code == "5.1.2"
    assert "nope.multi.test does not exist" in failure.text


async def test_mx_host_that_does_not_exist_is_permanent(dns: DnsServer) -> None:
    failure = await failed(Router(resolver_for(dns)), "ghost.test")
    assert failure.permanent
    assert failure.enhanced_code == "5.4.4"
    assert "nohost.multi.test" in failure.text


async def test_servfail_is_transient(dns: DnsServer) -> None:
    # bogus.test is signed under a key its trust anchor does not name: the validating
    # resolver answers SERVFAIL, as for any broken DNSSEC chain.
    failure = await failed(Router(resolver_for(dns)), "bogus.test")
    assert failure.transient
    assert (failure.code, failure.enhanced_code) == (451, "4.4.3")
    assert "SERVFAIL" in failure.text and "bogus.test" in failure.text


async def test_timeout_is_transient(dns: DnsServer) -> None:
    resolver = Resolver([dns.address], timeout=0.3, lifetime=0.6)
    failure = await failed(Router(resolver), "x.dead.test")
    assert failure.transient
    assert "timeout" in failure.text


async def test_idna_domain_is_looked_up_as_a_labels(dns: DnsServer) -> None:
    route = await routed(Router(resolver_for(dns)), "Bücher.test")
    assert route.domain == "xn--bcher-kva.test"
    assert [h.name for h in route.hosts] == ["mx1.multi.test"]
    assert dns.queries("xn--bcher-kva.test", "MX") == 1


async def test_invalid_domains_fail_without_dns(dns: DnsServer) -> None:
    router = Router(resolver_for(dns))
    for bad in ("bad..test", "-x.test", "a" * 64 + ".test", "under_score.test"):
        failure = await failed(router, bad)
        assert failure.permanent and failure.code == 553, bad
    assert sum(dns.query_counts().values()) == 0


async def test_address_literals_route_without_dns(dns: DnsServer) -> None:
    router = Router(resolver_for(dns))
    v4 = await routed(router, "[127.0.0.9]")
    assert v4.hosts[0].addresses == ("127.0.0.9",) and v4.destination == "literal:127.0.0.9"
    v6 = await routed(router, "[IPv6:::1]")
    assert v6.hosts[0].addresses == ("::1",)
    assert (await failed(router, "[not-an-ip]")).permanent
    assert sum(dns.query_counts().values()) == 0


async def test_mx_rollup_and_grouping(dns: DnsServer) -> None:
    router = Router(resolver_for(dns))
    cust1 = await routed(router, "cust1.test")
    cust2 = await routed(router, "cust2.test")
    other = await routed(router, "multi.test")
    # Same MX host set (different preferences): same machines, same destination.
    assert (
        cust1.destination
        == cust2.destination
        == ("mx:alt1.aspmx.provider.test,aspmx.provider.test")
    )
    assert other.destination != cust1.destination

    rcpts = [
        "a@cust1.test",
        "b@multi.test",
        "c@cust2.test",
        "d@null.test",
        "e@cust1.test",
        "f@nope.multi.test",
        "no-domain",
        "g@MULTI.test",
    ]
    grouping = await router.group(rcpts)
    groups = {g.destination: g.recipients for g in grouping.groups}
    assert groups == {
        cust1.destination: ["a@cust1.test", "e@cust1.test", "c@cust2.test"],
        other.destination: ["b@multi.test", "g@MULTI.test"],
    }
    failed_rcpts = {r: f for r, f in grouping.failed}
    assert set(failed_rcpts) == {"d@null.test", "f@nope.multi.test", "no-domain"}
    assert all(f.permanent for f in failed_rcpts.values())
    assert failed_rcpts["d@null.test"].enhanced_code == "5.1.10"


async def test_custom_rollup_key(dns: DnsServer) -> None:
    def by_provider(domain: str, hosts: object) -> str:
        names = [h.name for h in hosts]  # type: ignore[attr-defined]
        return "provider" if all(n.endswith(".provider.test") for n in names) else domain

    router = Router(resolver_for(dns), rollup=by_provider)
    assert (await routed(router, "cust1.test")).destination == "provider"
    assert (await routed(router, "multi.test")).destination == "multi.test"


async def test_one_lookup_per_ttl_even_under_concurrency(dns: DnsServer) -> None:
    clock = FakeClock()
    router = Router(resolver_for(dns, clock=clock))
    routes = await asyncio.gather(*(router.lookup("ttl.test") for _ in range(50)))
    assert all(isinstance(r, Route) for r in routes)
    for _ in range(50):
        assert isinstance(await router.lookup("ttl.test"), Route)
        assert isinstance(router.cached("ttl.test"), Route)
    assert dns.queries("ttl.test", "MX") == 1
    assert dns.queries("mx1.multi.test", "A") == 1
    route = router.cached("ttl.test")
    assert isinstance(route, Route) and route.expires == clock.now + 2  # the MX TTL

    clock.now += 2.01  # the MX answer (TTL 2) expired; mx1's A (TTL 300) did not
    assert router.cached("ttl.test") is None
    await asyncio.gather(*(router.lookup("ttl.test") for _ in range(20)))
    assert dns.queries("ttl.test", "MX") == 2
    assert dns.queries("mx1.multi.test", "A") == 1


async def test_route_follows_a_dns_change_after_the_ttl(dns: DnsServer) -> None:
    clock = FakeClock()
    router = Router(resolver_for(dns, clock=clock))
    dns.add_zone(Zone("moving.test", ["@ 5 MX 10 mx1.multi.test."]))
    assert [h.name for h in (await routed(router, "moving.test")).hosts] == ["mx1.multi.test"]
    dns.add_zone(Zone("moving.test", ["@ 5 MX 10 mx3.multi.test."]))
    clock.now += 4
    assert [h.name for h in (await routed(router, "moving.test")).hosts] == ["mx1.multi.test"]
    clock.now += 1.5
    assert [h.name for h in (await routed(router, "moving.test")).hosts] == ["mx3.multi.test"]


async def test_negative_answers_are_cached_for_the_soa_minimum(dns: DnsServer) -> None:
    clock = FakeClock()
    resolver = resolver_for(dns, clock=clock)
    router = Router(resolver)
    for _ in range(10):
        assert (await failed(router, "gone.ttl.test")).permanent
    answer = await resolver.mx("gone.ttl.test")
    assert answer.outcome is DnsOutcome.NXDOMAIN
    assert answer.ttl == 3  # RFC 2308: min(SOA TTL, SOA MINIMUM) of ttl.test
    assert dns.queries("gone.ttl.test", "MX") == 1
    clock.now += 3.01
    await router.lookup("gone.ttl.test")
    assert dns.queries("gone.ttl.test", "MX") == 2
    # NODATA is cached the same way (aonly.test has no MX).
    for _ in range(5):
        assert (await resolver.mx("aonly.test")).outcome is DnsOutcome.NODATA
    assert dns.queries("aonly.test", "MX") == 1


async def test_failures_are_cached_briefly(dns: DnsServer) -> None:
    clock = FakeClock()
    router = Router(resolver_for(dns, clock=clock, failure_ttl=5.0))
    for _ in range(5):
        assert (await failed(router, "bogus.test")).transient
    assert dns.queries("bogus.test", "MX") == 1
    clock.now += 5.01
    await router.lookup("bogus.test")
    assert dns.queries("bogus.test", "MX") == 2


async def test_resolver_uses_only_the_nameserver_it_is_given() -> None:
    # Nothing listens there: the look-up must fail, not fall back to /etc/resolv.conf.
    resolver = Resolver([("127.0.0.1", free_port())], timeout=0.3, lifetime=0.6)
    answer = await resolver.mx("localhost")
    assert answer.failed


async def test_connect_falls_back_to_the_next_mx_host(dns: DnsServer) -> None:
    """The engine's loop over ``route.attempts()``: mx1 (127.0.0.2) has nothing listening
    on the port, the preference-20 hosts do (127.0.0.3 here): delivery moves on."""
    port = free_port("127.0.0.3")
    listener = socket.create_server(("127.0.0.3", port))
    try:
        route = await routed(Router(resolver_for(dns), port=port), "multi.test")
        connected = None
        tried = []
        for host, address in route.attempts():
            tried.append(address)
            try:
                _, writer = await asyncio.open_connection(address, route.port)
            except OSError:
                continue
            connected = (host.name, address)
            writer.close()
            await writer.wait_closed()
            break
        assert tried[0] == "127.0.0.2"
        assert connected == ("mx2a.multi.test", "127.0.0.3")
        assert "127.0.0.3" in tried
    finally:
        listener.close()
