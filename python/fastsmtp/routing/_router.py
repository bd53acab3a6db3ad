"""From a recipient domain to a ``Route``: the MX hosts to try, in order, with their
addresses and TLS requirements, and the destination key the engine pools and shapes by.

The rules, from RFC 5321 5.1 unless noted:

* MX records are tried in preference order (lowest first). "If there are multiple
  destinations with the same preference and there is no clear reason to favor one ...
  then the sender-SMTP MUST randomize them to spread the load": ``Route.candidates()``
  shuffles each preference level afresh on every call.
* "If an empty list of MXs is returned, the address is treated as if it was associated
  with an implicit MX RR, with a preference of 0, pointing to that host": a domain with no
  MX records (NODATA) is delivered to its own A/AAAA addresses.
* RFC 7505 3: a null MX ("a single MX RR with an RDATA section consisting of preference
  number 0 and a zero-length label, written in master files as '.'") means the domain
  accepts no mail: a permanent failure with ``5.1.10`` (RFC 7505 4.2), and no connection.
  A "." record next to real ones is ignored (the domain broke RFC 7505 3's "MUST NOT
  advertise any other MX RR"; the real hosts are still worth a try).
* NXDOMAIN for the domain is permanent (``5.1.2``); SERVFAIL or a time-out is transient
  (``4.4.3``). MX hosts without addresses are skipped; when none is left the failure is
  permanent if every host is known not to exist and transient otherwise.
* Address literals (``[192.0.2.1]``, ``[IPv6:2001:db8::1]``, RFC 5321 4.1.3) route to that
  address without DNS.

Destination keys ("MX rollup"): domains served by the same MX host names share one key,
so every customer domain of one provider (all pointing at ``aspmx.l.google.com`` and its
alternates, say) shares one pool and one set of limits. The default key is the sorted set
of MX host names; ``rollup=`` replaces it (e.g. a function mapping ``*.google.com`` hosts
to ``"google"``).

A route lives as long as the shortest TTL among the answers it was built from (and the
MTA-STS record's), so routing follows DNS changes; within that time ``Router.cached()``
answers from a dict without awaiting anything.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ._cache import CoalescingCache
from ._dane import usable_tlsa
from ._errors import RouteError, RouteFailure, permanent, transient
from ._mtasts import MTASTS, STSLookup, STSMode
from ._names import InvalidDomain, normalize_domain
from ._report import TLSReport
from ._resolver import DnsAnswer, DnsOutcome, MXRecord, Resolver
from ._tls import OPPORTUNISTIC, HostTLS, TLSMode

__all__ = [
    "DestinationGroup",
    "Grouping",
    "MXHost",
    "Rollup",
    "Route",
    "Router",
    "default_rollup",
]


@dataclass(frozen=True, slots=True)
class MXHost:
    """One host to deliver to: its name, MX preference, addresses (IPv6 first unless the
    router prefers IPv4) and the TLS it must offer."""

    name: str
    preference: int
    addresses: tuple[str, ...]
    tls: HostTLS = OPPORTUNISTIC


@dataclass(frozen=True, slots=True)
class Route:
    """Where mail for ``domain`` goes.

    Attributes:
        domain: the recipient domain, A-label form.
        destination: the pooling/shaping key (MX rollup).
        hosts: usable MX hosts in preference order (ties in the server's order; use
            ``candidates()`` for the randomized order to try).
        port: the SMTP port to connect to (25, or the router's override).
        implicit_mx: the domain has no MX records; ``hosts`` is the domain itself.
        skipped: ``(host, reason)`` for MX hosts left out (no address, excluded by an
            MTA-STS policy in enforce mode, TLSA look-up failure).
        expires: monotonic time after which the route must be rebuilt.
        sts: the MTA-STS policy look-up, when the router does MTA-STS.
    """

    domain: str
    destination: str
    hosts: tuple[MXHost, ...]
    port: int = 25
    implicit_mx: bool = False
    skipped: tuple[tuple[str, str], ...] = ()
    expires: float = 0.0
    sts: STSLookup | None = None

    @property
    def policy_key(self) -> str:
        """Equal for routes whose hosts ask the same TLS: recipients of different domains
        can share one transaction only when destination and policy_key agree."""
        return "|".join(sorted({h.tls.describe() for h in self.hosts}))

    def candidates(self, rng: random.Random | None = None) -> list[MXHost]:
        """The hosts to try, in order: by preference, equal preferences shuffled."""
        shuffle = (rng or random).shuffle
        ordered: list[MXHost] = []
        level: list[MXHost] = []
        for host in self.hosts:
            if level and host.preference != level[0].preference:
                shuffle(level)
                ordered += level
                level = []
            level.append(host)
        shuffle(level)
        return ordered + level

    def attempts(self, rng: random.Random | None = None) -> list[tuple[MXHost, str]]:
        """Every ``(host, address)`` pair in the order to try them."""
        return [(h, a) for h in self.candidates(rng) for a in h.addresses]


Rollup = Callable[[str, Sequence[MXHost]], str]


def default_rollup(domain: str, hosts: Sequence[MXHost]) -> str:
    """``"mx:" + sorted MX host names``: domains with the same MX hosts share a key."""
    return "mx:" + ",".join(sorted({h.name for h in hosts}))


@dataclass(slots=True)
class DestinationGroup:
    """Recipients that go to one destination in one transaction."""

    destination: str
    route: Route
    recipients: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Grouping:
    """``Router.group()``'s answer: one group per transaction, and the recipients whose
    domain could not be routed (each with its failure)."""

    groups: list[DestinationGroup]
    failed: list[tuple[str, RouteFailure]]


class Router:
    """Routes recipient domains to MX hosts, with caching.

    Args:
        resolver: the DNS resolver (its clock is the router's clock).
        port: SMTP port of every MX host (25; tests and submission-style relays differ).
        mta_sts: apply MTA-STS policies fetched by this object.
        dane: look up TLSA records where the MX answer is DNSSEC-validated (needs a
            ``Resolver(trust_ad=True)`` pointed at a validating resolver).
        rollup: the destination key function (``default_rollup``).
        ipv4, ipv6: which address families to look up and use.
        prefer_ipv4: list IPv4 addresses before IPv6 ones.
        report: TLS-RPT counters (shared with ``mta_sts`` if that has none).
        invalid_ttl: seconds a syntactically invalid domain's failure is cached.
    """

    def __init__(
        self,
        resolver: Resolver,
        *,
        port: int = 25,
        mta_sts: MTASTS | None = None,
        dane: bool = False,
        rollup: Rollup = default_rollup,
        ipv4: bool = True,
        ipv6: bool = True,
        prefer_ipv4: bool = False,
        report: TLSReport | None = None,
        invalid_ttl: float = 3600.0,
        max_routes: int = 100_000,
    ) -> None:
        if not (ipv4 or ipv6):
            raise ValueError("at least one of ipv4 and ipv6 must be enabled")
        if dane and not resolver.trust_ad:
            raise ValueError("dane=True needs a Resolver(trust_ad=True) (a validating resolver)")
        self.resolver = resolver
        self.port = port
        self.mta_sts = mta_sts
        self.dane = dane
        self.rollup = rollup
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.prefer_ipv4 = prefer_ipv4
        self.report = report if report is not None else TLSReport()
        if mta_sts is not None and mta_sts.report is None:
            mta_sts.report = self.report
        self.invalid_ttl = invalid_ttl
        self._clock = resolver.clock
        self._routes: CoalescingCache[str, Route | RouteFailure] = CoalescingCache(
            self._clock, max_routes
        )

    # ---------------------------------------------------------------- lookups

    def cached(self, domain: str) -> Route | RouteFailure | None:
        """The cached, unexpired route (or failure) for ``domain``; no I/O, no await. This
        is the per-recipient warm path."""
        return self._routes.peek(domain)

    async def lookup(self, domain: str) -> Route | RouteFailure:
        """The route for ``domain``, or why there is none (never raises for DNS outcomes)."""
        hit = self._routes.peek(domain)
        if hit is not None:
            return hit
        return await self._routes.get(domain, lambda: self._build(domain))

    async def route(self, domain: str) -> Route:
        """The route for ``domain``.

        Raises:
            RouteError: with ``failure.permanent`` telling rejected from deferred.
        """
        result = await self.lookup(domain)
        if isinstance(result, RouteFailure):
            raise RouteError(result)
        return result

    def invalidate(self, domain: str | None = None) -> None:
        """Forget one domain's cached route, or all (DNS answers stay cached)."""
        self._routes.invalidate(domain)

    async def group(self, recipients: Iterable[str]) -> Grouping:
        """Split recipient addresses into one group per transaction: a message to several
        domains becomes one transaction per destination (and TLS policy)."""
        by_domain: dict[str, list[str]] = {}
        failed: list[tuple[str, RouteFailure]] = []
        for rcpt in recipients:
            at = rcpt.rfind("@")
            if at <= 0:
                failed.append((rcpt, permanent(rcpt, "5.1.3", f"{rcpt!r} has no domain")))
                continue
            domain = rcpt[at + 1 :]
            bucket = by_domain.get(domain)
            if bucket is None:
                by_domain[domain] = [rcpt]
            else:
                bucket.append(rcpt)
        routes: dict[str, Route | RouteFailure] = {}
        missing: list[str] = []
        for domain in by_domain:
            hit = self._routes.peek(domain)
            if hit is None:
                missing.append(domain)
            else:
                routes[domain] = hit
        if missing:
            found = await asyncio.gather(*(self.lookup(d) for d in missing))
            routes.update(zip(missing, found, strict=True))
        groups: dict[tuple[str, str], DestinationGroup] = {}
        for domain, rcpts in by_domain.items():
            result = routes[domain]
            if isinstance(result, RouteFailure):
                failed.extend((r, result) for r in rcpts)
                continue
            key = (result.destination, result.policy_key)
            group = groups.get(key)
            if group is None:
                groups[key] = DestinationGroup(result.destination, result, list(rcpts))
            else:
                group.recipients.extend(rcpts)
        return Grouping(list(groups.values()), failed)

    # ---------------------------------------------------------------- building

    async def _build(self, domain: str) -> tuple[Route | RouteFailure, float]:
        now = self._clock()
        if domain.startswith("["):
            return self._literal(domain), now + self.invalid_ttl
        try:
            name = normalize_domain(domain)
        except InvalidDomain as exc:
            return permanent(domain, "5.1.2", str(exc), code=553), now + self.invalid_ttl
        mx = await self.resolver.mx(name)
        ttl = mx.ttl
        if mx.outcome is DnsOutcome.NXDOMAIN:
            text = f"domain {name} does not exist (DNS: NXDOMAIN)"
            return permanent(name, "5.1.2", text), now + ttl
        if mx.failed:
            text = f"DNS lookup failed: {mx.describe()}"
            return transient(name, "4.4.3", text), now + ttl
        implicit = mx.outcome is DnsOutcome.NODATA
        if implicit:
            records: list[MXRecord] = [MXRecord(0, name)]
        else:
            records = [r for r in mx.records if r.host]
            if not records:
                text = f"domain {name} does not accept mail (null MX, RFC 7505)"
                return permanent(name, "5.1.10", text, code=556), now + ttl

        sts_task: asyncio.Task[STSLookup] | None = None
        if self.mta_sts is not None:
            sts_task = asyncio.ensure_future(self.mta_sts.lookup(name))
        try:
            answers = await asyncio.gather(
                *(self.resolver.addresses(r.host, ipv4=self.ipv4, ipv6=self.ipv6) for r in records)
            )
            tlsa: list[DnsAnswer | None] = [None] * len(records)
            if self.dane and mx.secure:
                # RFC 7672 2.2.1/2.2.2: DANE applies to MX hosts reached through a
                # validated MX RRset (or a validated implicit MX) whose address records
                # are validated too.
                wanted = [i for i, a in enumerate(answers) if a.ok and a.secure]
                found = await asyncio.gather(
                    *(self.resolver.tlsa(records[i].host, self.port) for i in wanted)
                )
                for i, answer in zip(wanted, found, strict=True):
                    tlsa[i] = answer
            sts = await sts_task if sts_task is not None else None
        finally:
            if sts_task is not None and not sts_task.done():
                sts_task.cancel()

        hosts: list[MXHost] = []
        skipped: list[tuple[str, str]] = []
        missing_only = True  # every skipped host simply does not exist
        blocked_by: str | None = None  # a TLS policy excluded a host
        for record, addresses, tlsa_answer in zip(records, answers, tlsa, strict=True):
            ttl = min(ttl, addresses.ttl)
            if not addresses.ok:
                skipped.append((record.host, f"no address: {addresses.describe()}"))
                if addresses.failed:
                    missing_only = False
                continue
            tls: HostTLS | None = OPPORTUNISTIC
            if tlsa_answer is not None:
                ttl = min(ttl, tlsa_answer.ttl)
                tls = self._dane_tls(name, record.host, tlsa_answer, skipped)
                blocked_by = blocked_by or ("dane" if tls is None else None)
            # RFC 8461 2: where DANE applies, MTA-STS does not add to it.
            if tls is OPPORTUNISTIC and sts is not None and sts.policy is not None:
                tls = self._sts_tls(name, record.host, sts, skipped)
                blocked_by = blocked_by or ("mta-sts" if tls is None else None)
            if tls is None:
                missing_only = False
                continue
            hosts.append(MXHost(record.host, record.preference, self._order(addresses), tls))

        if sts is not None:
            ttl = min(ttl, max(0.0, sts.valid_until - now))
        expires = now + ttl
        if not hosts:
            reasons = "; ".join(f"{h}: {why}" for h, why in skipped)
            if missing_only:
                text = f"no usable MX host for {name} ({reasons})"
                return permanent(name, "5.4.4", text), expires
            text = f"no usable MX host for {name} now ({reasons})"
            # RFC 3463: X.7.5 "Cryptographic failure" for a TLS policy that cannot be met.
            enhanced = "4.7.5" if blocked_by else "4.4.3"
            return transient(name, enhanced, text, policy=blocked_by), expires
        destination = self.rollup(name, hosts)
        route = Route(
            name, destination, tuple(hosts), self.port, implicit, tuple(skipped), expires, sts
        )
        return route, expires

    def _order(self, answer: DnsAnswer) -> tuple[str, ...]:
        addresses: tuple[str, ...] = answer.records
        if self.prefer_ipv4:
            addresses = tuple(sorted(addresses, key=lambda a: ":" in a))
        return addresses

    def _dane_tls(
        self, domain: str, host: str, answer: DnsAnswer, skipped: list[tuple[str, str]]
    ) -> HostTLS | None:
        """The DANE requirement from a TLSA answer, or None (host unusable)."""
        if answer.failed:
            # RFC 7672 2.2.1 (in short): when the TLSA look-up of a host that should have
            # one fails, the host must not be used without it.
            skipped.append((host, f"DANE: TLSA lookup failed: {answer.describe()}"))
            self.report.record(domain, "tlsa", "dnssec-invalid")
            return None
        if not answer.ok or not answer.secure:
            return OPPORTUNISTIC  # no TLSA records (or an unsigned zone): DANE does not apply
        usable = usable_tlsa(answer.records)
        if not usable:
            self.report.record(domain, "tlsa", "tlsa-invalid")
            return HostTLS(TLSMode.DANE_ENCRYPT, required=True, verify_names=(host,))
        names = (host,) if host == domain else (host, domain)
        return HostTLS(TLSMode.DANE, required=True, verify_names=names, tlsa=usable)

    def _sts_tls(
        self, domain: str, host: str, sts: STSLookup, skipped: list[tuple[str, str]]
    ) -> HostTLS | None:
        """The MTA-STS requirement for one host, or None (excluded in enforce mode)."""
        policy = sts.policy
        assert policy is not None
        enforce = policy.mode is STSMode.ENFORCE
        if not policy.matches(host):
            # RFC 8461 4.1/5.1: an MX host matching no "mx" pattern fails the policy.
            self.report.record(domain, "sts", "validation-failure")
            if enforce:
                patterns = ", ".join(policy.mx)
                skipped.append(
                    (host, f"MTA-STS policy of {domain} (enforce) allows only {patterns}")
                )
                return None
        return HostTLS(
            TLSMode.MTA_STS,
            required=enforce,
            report_only=not enforce,
            verify_names=(host,),
            policy_domain=domain,
        )

    def _literal(self, domain: str) -> Route | RouteFailure:
        text = domain[1:-1] if domain.endswith("]") else domain[1:]
        if text.lower().startswith("ipv6:"):
            text = text[5:]
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return permanent(domain, "5.1.2", f"{domain!r} is not a valid address literal", 553)
        host = MXHost(str(address), 0, (str(address),))
        return Route(domain, f"literal:{address}", (host,), self.port, expires=float("inf"))
