"""MTA-STS (RFC 8461): policies published through the real DNS server (unbound) and
fetched over HTTPS from a loopback server with a test CA; the strict parsers; the cache;
how the router applies enforce/testing/none per MX host."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fastsmtp.routing import (
    MTASTS,
    Resolver,
    Route,
    RouteFailure,
    Router,
    STSMode,
    STSPolicyError,
    TLSMode,
    TLSReport,
    mx_pattern_matches,
    parse_policy,
    parse_sts_record,
)
from tests.peers.dns import DnsServer, Zone
from tests.peers.https import PolicyServer


def enforce(*mx: str, max_age: int = 86400, mode: str = "enforce") -> str:
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), f"max_age: {max_age}"]
    return "\r\n".join(lines) + "\r\n"


def sts_zone(name: str, mx: list[str], policy_id: str = "id1", ttl: int = 300) -> Zone:
    return Zone(
        name,
        [
            *(f"@ {ttl} MX {10 * (i + 1)} {host}." for i, host in enumerate(mx)),
            f'_mta-sts {ttl} TXT "v=STSv1; id={policy_id};"',
            "mta-sts A 127.0.0.1",
        ],
    )


ZONES = [
    Zone("hosts.test", ["mx1 A 127.0.0.2", "mx2 A 127.0.0.3", "mx3 A 127.0.0.4"]),
    sts_zone("enforce.test", ["mx1.hosts.test", "mx2.hosts.test"]),
    sts_zone("nomatch.test", ["mx1.hosts.test"]),
    sts_zone("testing.test", ["mx1.hosts.test", "mx2.hosts.test"]),
    sts_zone("none.test", ["mx1.hosts.test"]),
    sts_zone("invalid.test", ["mx1.hosts.test"]),
    sts_zone("badcert.test", ["mx1.hosts.test"]),
    sts_zone("redirect.test", ["mx1.hosts.test"]),
    sts_zone("html.test", ["mx1.hosts.test"]),
    sts_zone("changing.test", ["mx1.hosts.test", "mx2.hosts.test"], ttl=10),
    Zone("plain.test", ["@ MX 10 mx1.hosts.test."]),
]

POLICIES = {
    "mta-sts.enforce.test": enforce("mx1.hosts.test"),
    "mta-sts.nomatch.test": enforce("*.elsewhere.test"),
    "mta-sts.testing.test": enforce("mx1.hosts.test", mode="testing"),
    "mta-sts.none.test": "version: STSv1\nmode: none\nmax_age: 86400\n",
    "mta-sts.invalid.test": "version: STSv1\nmode: enforce\nmx: mx1.hosts.test\n",  # no max_age
    "mta-sts.badcert.test": enforce("mx1.hosts.test"),
    "mta-sts.redirect.test": (301, "text/plain", ""),
    "mta-sts.html.test": (200, "text/html", enforce("mx1.hosts.test")),
    "mta-sts.changing.test": enforce("mx1.hosts.test", max_age=100),
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def peers(
    dns_server: Callable[..., DnsServer], policy_server: Callable[..., PolicyServer]
) -> tuple[DnsServer, PolicyServer]:
    # badcert.test's policy host is left out of the certificate's names.
    names = [h for h in POLICIES if h != "mta-sts.badcert.test"]
    return dns_server(ZONES), policy_server(names, POLICIES)


def make_router(
    peers: tuple[DnsServer, PolicyServer], clock: FakeClock | None = None
) -> tuple[Router, MTASTS]:
    dns, https = peers
    kwargs = {"clock": clock} if clock else {}
    resolver = Resolver([dns.address], timeout=1.0, lifetime=2.0, **kwargs)  # type: ignore[arg-type]
    sts = MTASTS(resolver, ssl_context=https.pki.client_context(), port=https.port, timeout=5)
    return Router(resolver, mta_sts=sts), sts


async def test_enforce_drops_mx_hosts_the_policy_does_not_list(
    peers: tuple[DnsServer, PolicyServer],
) -> None:
    router, _ = make_router(peers)
    route = await router.lookup("enforce.test")
    assert isinstance(route, Route)
    assert [h.name for h in route.hosts] == ["mx1.hosts.test"]
    tls = route.hosts[0].tls
    assert (tls.mode, tls.required, tls.report_only) == (TLSMode.MTA_STS, True, False)
    assert tls.verify_pkix and tls.verify_names == ("mx1.hosts.test",)
    assert route.skipped[0][0] == "mx2.hosts.test"
    assert "MTA-STS policy of enforce.test (enforce)" in route.skipped[0][1]
    assert router.report.count("enforce.test", "sts", "validation-failure") == 1


async def test_enforce_with_no_matching_mx_defers_with_the_policy_named(
    peers: tuple[DnsServer, PolicyServer],
) -> None:
    router, _ = make_router(peers)
    failure = await router.lookup("nomatch.test")
    assert isinstance(failure, RouteFailure)
    assert failure.transient and failure.policy == "mta-sts"
    assert failure.enhanced_code == "4.7.5"
    assert "MTA-STS policy of nomatch.test (enforce)" in failure.text
    assert "*.elsewhere.test" in failure.text


async def test_testing_mode_delivers_and_reports(peers: tuple[DnsServer, PolicyServer]) -> None:
    router, _ = make_router(peers)
    route = await router.lookup("testing.test")
    assert isinstance(route, Route)
    assert [h.name for h in route.hosts] == ["mx1.hosts.test", "mx2.hosts.test"]
    assert all(h.tls.mode is TLSMode.MTA_STS for h in route.hosts)
    assert all(h.tls.report_only and not h.tls.required for h in route.hosts)
    # mx2 does not match: counted, not dropped.
    assert router.report.count("testing.test", "sts", "validation-failure") == 1


@pytest.mark.parametrize(
    ("domain", "result_type"),
    [
        ("invalid.test", "sts-policy-invalid"),
        ("badcert.test", "sts-webpki-invalid"),
        ("redirect.test", "sts-policy-fetch-error"),
        ("html.test", "sts-policy-invalid"),
    ],
)
async def test_unusable_policies_mean_no_policy_and_are_reported(
    peers: tuple[DnsServer, PolicyServer], domain: str, result_type: str
) -> None:
    router, sts = make_router(peers)
    route = await router.lookup(domain)
    assert isinstance(route, Route)
    assert [h.tls.mode for h in route.hosts] == [TLSMode.OPPORTUNISTIC]
    assert route.sts is not None and route.sts.error
    assert router.report.count(domain, "sts", result_type) == 1
    assert sts.fetches == 1


async def test_mode_none_and_no_record_are_opportunistic(
    peers: tuple[DnsServer, PolicyServer],
) -> None:
    router, sts = make_router(peers)
    for domain in ("none.test", "plain.test"):
        route = await router.lookup(domain)
        assert isinstance(route, Route)
        assert [h.tls.mode for h in route.hosts] == [TLSMode.OPPORTUNISTIC]
    assert sts.fetches == 1  # none.test's policy; plain.test has no TXT record


async def test_policy_cached_by_id_and_max_age(peers: tuple[DnsServer, PolicyServer]) -> None:
    dns, https = peers
    clock = FakeClock()
    router, sts = make_router(peers, clock)
    for _ in range(5):
        router.invalidate()
        route = await router.lookup("changing.test")
        assert isinstance(route, Route) and len(route.hosts) == 1
    assert https.fetches("mta-sts.changing.test") == 1
    # The route lives no longer than the TXT record (TTL 10).
    assert route.expires == clock.now + 10

    # Same id after the TXT TTL: the cached policy is used, no new fetch.
    clock.now += 11
    assert isinstance(await router.lookup("changing.test"), Route)
    assert https.fetches("mta-sts.changing.test") == 1

    # A new id: fetched again, the new policy (listing mx2 as well) applies.
    https.policies["mta-sts.changing.test"] = enforce(
        "mx1.hosts.test", "mx2.hosts.test", max_age=100
    )
    dns.add_zone(sts_zone("changing.test", ["mx1.hosts.test", "mx2.hosts.test"], "id2", 10))
    clock.now += 11
    route = await router.lookup("changing.test")
    assert isinstance(route, Route) and len(route.hosts) == 2
    assert https.fetches("mta-sts.changing.test") == 2

    # A newer id whose fetch fails: the cached (unexpired) policy stays in force, and the
    # failure is not retried on every route.
    https.policies["mta-sts.changing.test"] = (500, "text/plain", "oops")
    dns.add_zone(sts_zone("changing.test", ["mx1.hosts.test", "mx2.hosts.test"], "id3", 10))
    clock.now += 11
    route = await router.lookup("changing.test")
    assert isinstance(route, Route) and route.sts is not None
    assert route.sts.policy is not None and route.sts.policy.id == "id2"
    assert "500" in (route.sts.error or "")
    clock.now += 11
    await router.lookup("changing.test")
    assert https.fetches("mta-sts.changing.test") == 3

    # The TXT record disappears: the cached policy still holds until max_age (100 s).
    dns.add_zone(
        Zone("changing.test", ["@ 10 MX 10 mx1.hosts.test.", "@ 10 MX 20 mx3.hosts.test."])
    )
    clock.now += 11
    route = await router.lookup("changing.test")
    assert isinstance(route, Route)
    assert [h.name for h in route.hosts] == ["mx1.hosts.test"]  # mx3 not in the policy
    clock.now += 100
    route = await router.lookup("changing.test")
    assert isinstance(route, Route)
    assert [h.tls.mode for h in route.hosts] == [TLSMode.OPPORTUNISTIC] * 2
    assert sts.fetches == 3


# ----------------------------------------------------------------- parsers


def test_parse_policy_accepts_the_rfc_examples() -> None:
    policy = parse_policy(
        "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n"
        "mx: backupmx.example.com\r\nmax_age: 604800\r\n",
        "id9",
    )
    assert policy.mode is STSMode.ENFORCE
    assert policy.mx == ("mail.example.com", "*.example.net", "backupmx.example.com")
    assert policy.max_age == 604800 and policy.id == "id9"
    # LF line ends, trailing blanks, unknown extension fields, no final newline.
    lax = parse_policy("version: STSv1\nmode: testing  \nmx: MX.Example.COM\nmax_age: 0\next_1: x")
    assert lax.mode is STSMode.TESTING and lax.mx == ("mx.example.com",) and lax.max_age == 0
    assert parse_policy("version: STSv1\nmode: none\nmax_age: 1\n").mx == ()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "mode: enforce\nmx: a.test\nmax_age: 1\n",  # no version
        "version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n",
        "version: stsv1\nmode: enforce\nmx: a.test\nmax_age: 1\n",  # case-sensitive
        "version: STSv1\nmode: Enforce\nmx: a.test\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmax_age: 1\n",  # enforce without mx
        "version: STSv1\nmode: enforce\nmx: a.test\n",  # no max_age
        "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -1\n",
        "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 31557601\n",
        "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 12345678901\n",
        "version: STSv1\nmode: enforce\nmode: testing\nmx: a.test\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx: a..test\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx: *.*.test\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 1\nnot a field\n",
        "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 1\n bad: leading\n",
        "<html>version: STSv1</html>",
    ],
)
def test_parse_policy_rejects(text: str) -> None:
    with pytest.raises(STSPolicyError):
        parse_policy(text)


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        (["v=STSv1; id=20160831085700Z;"], "20160831085700Z"),
        (["v=STSv1;id=abc"], "abc"),
        (["v=STSv1; id=abc; ext=val"], "abc"),
        (["v=spf1 -all", "v=STSv1; id=abc;"], "abc"),
        (["v=STSv1; id=abc;", "v=STSv1; id=def;"], None),  # two records: no policy
        (["v=STSv1; id=;"], None),
        (["v=STSv1; id=" + "a" * 33], None),
        (["v=STSv1; id=a-b"], None),
        (["v=STSv1; id=a; id=b"], None),
        (["v=STSv1"], None),  # no id
        (["V=STSv1; id=abc"], None),
        ([], None),
    ],
)
def test_parse_sts_record(records: list[str], expected: str | None) -> None:
    assert parse_sts_record(records) == expected


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("mail.example.com", "mail.example.com", True),
        ("mail.example.com", "MAIL.example.com.", True),
        ("*.example.com", "mx1.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", "xexample.com", False),
        ("mail.example.com", "mail2.example.com", False),
    ],
)
def test_mx_pattern_matching(pattern: str, host: str, expected: bool) -> None:
    assert mx_pattern_matches(pattern, host) is expected


def test_tls_report_rejects_unknown_words() -> None:
    report = TLSReport()
    report.record("a.test", "sts", "success", 3)
    assert report.count(result_type="success") == 3
    with pytest.raises(ValueError):
        report.record("a.test", "sts", "made-up")
    with pytest.raises(ValueError):
        report.record("a.test", "dkim", "success")
    assert [(e.policy_domain, e.count) for e in report.snapshot()] == [("a.test", 3)]
