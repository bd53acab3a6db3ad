"""The DNS resolver of the routing layer: MX, A/AAAA, TXT and TLSA look-ups with a cache
that honours TTLs, negative caching and one query per name in flight.

Why dnspython (``dns.asyncresolver``) and not aiodns: it is pure Python (no C library to
build or match), it runs on any asyncio loop including uvloop, and it hands back the whole
response, which this layer needs: the AD bit (DANE trusts a TLSA answer only when a
validating resolver says it is authenticated), the SOA of a negative answer (RFC 2308
negative caching), the exact rcode (NXDOMAIN is permanent, SERVFAIL transient) and typed
TLSA records. Its cost only matters on a cache miss; the warm path never reaches it.

The resolver is explicit: given ``nameservers`` it talks to exactly those (with ``port``),
and only ``Resolver()`` without them reads the system's ``/etc/resolv.conf``.

Caching rules:

* Positive answers live for the smallest TTL in the answer (CNAME chain included),
  clamped to ``[min_ttl, max_ttl]``.
* RFC 2308 3: "The TTL of this record is set from the minimum of the MINIMUM field of the
  SOA record and the TTL of the SOA itself"; negative answers (NXDOMAIN, NODATA) live that
  long, at most ``max_negative_ttl``. RFC 2308 5: "Negative responses without SOA records
  SHOULD NOT be cached", so those are not.
* RFC 2308 7.1: a resolver "MAY cache a server failure response. If it does so it MUST NOT
  cache it for longer than five (5) minutes"; SERVFAIL and time-outs live
  ``failure_ttl`` seconds (5 by default) so a broken domain is not asked for every chunk.
* Concurrent look-ups of one (name, type) share one query.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from ._cache import CoalescingCache

__all__ = ["DnsAnswer", "DnsOutcome", "MXRecord", "Resolver", "TLSARecord"]


class DnsOutcome(enum.Enum):
    """What a look-up came to."""

    ANSWER = "answer"  # records of the asked type (after CNAMEs)
    NODATA = "nodata"  # the name exists, no records of this type
    NXDOMAIN = "nxdomain"  # the name does not exist
    SERVFAIL = "servfail"  # the server could not answer (also REFUSED, bogus DNSSEC)
    TIMEOUT = "timeout"  # no answer in time


@dataclass(frozen=True, slots=True)
class MXRecord:
    preference: int
    host: str  # lower-case A-label, no trailing dot; "" for the root (a null MX)


@dataclass(frozen=True, slots=True)
class TLSARecord:
    """RFC 6698 2.1: certificate usage, selector, matching type, association data."""

    usage: int
    selector: int
    mtype: int
    data: bytes


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """One look-up's outcome.

    Attributes:
        records: ``MXRecord``/``TLSARecord`` objects, address strings or TXT strings.
        secure: the answer carried the AD bit from a resolver the caller trusts to
            validate DNSSEC (``Resolver(trust_ad=True)``); always False otherwise.
        ttl: seconds this answer is cached for (0: not cached).
        error: what went wrong, for failures.
    """

    name: str
    rdtype: str
    outcome: DnsOutcome
    records: tuple[Any, ...] = ()
    secure: bool = False
    ttl: float = 0.0
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome is DnsOutcome.ANSWER

    @property
    def failed(self) -> bool:
        """SERVFAIL or time-out: the answer is unknown (transient)."""
        return self.outcome in (DnsOutcome.SERVFAIL, DnsOutcome.TIMEOUT)

    def describe(self) -> str:
        """``"NAME TYPE: outcome (detail)"`` for failure texts."""
        detail = f" ({self.error})" if self.error else ""
        return f"{self.name} {self.rdtype}: {self.outcome.value}{detail}"


def _record(rdata: Any) -> Any:
    rdtype = rdata.rdtype
    if rdtype == dns.rdatatype.MX:
        exchange = rdata.exchange
        host = "" if exchange == dns.name.root else exchange.to_text(omit_final_dot=True)
        return MXRecord(rdata.preference, host.lower())
    if rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        return rdata.address
    if rdtype == dns.rdatatype.TXT:
        # A TXT record is a sequence of character-strings; a policy record is their
        # concatenation (RFC 7208 3.3 style, which RFC 8461 3.1 relies on).
        return b"".join(rdata.strings).decode("utf-8", errors="replace")
    if rdtype == dns.rdatatype.TLSA:
        return TLSARecord(rdata.usage, rdata.selector, rdata.mtype, bytes(rdata.cert))
    return rdata.to_text()


def _negative_ttl(response: dns.message.Message) -> float:
    """RFC 2308 5: min(SOA TTL, SOA MINIMUM), or 0 (do not cache) without an SOA."""
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA:
            return float(min(rrset.ttl, rrset[0].minimum))
    return 0.0


class Resolver:
    """Cached async DNS look-ups for routing.

    Args:
        nameservers: ``"ip"`` or ``("ip", port)`` entries to query, in order. ``None``
            reads the system configuration (``/etc/resolv.conf``); never used implicitly
            when nameservers are given.
        port: the port for entries without one.
        timeout: seconds to wait for one server's reply.
        lifetime: seconds for a whole look-up (all retries and servers).
        trust_ad: believe the AD bit (DNSSEC-validated) in answers. Only for a validating
            resolver reached over a trusted path (typically one on loopback): the bit
            itself is unsigned, so DANE (RFC 7672 2.1.1) is only as safe as that path.
        min_ttl, max_ttl: clamp for positive TTLs; max_negative_ttl for negative ones;
            failure_ttl: how long SERVFAIL/time-out answers are remembered.
        max_concurrency: look-ups on the wire at once (a cold cache with thousands of
            domains must not burst thousands of UDP queries at one server).
        clock: monotonic seconds; tests move it to expire entries.
    """

    def __init__(
        self,
        nameservers: Sequence[str | tuple[str, int]] | None = None,
        *,
        port: int = 53,
        timeout: float = 2.0,
        lifetime: float = 5.0,
        trust_ad: bool = False,
        min_ttl: float = 0.0,
        max_ttl: float = 86400.0,
        max_negative_ttl: float = 3600.0,
        failure_ttl: float = 5.0,
        max_concurrency: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if nameservers is not None and not nameservers:
            raise ValueError("nameservers must not be empty (use None for the system's)")
        if not 0 <= failure_ttl <= 300:
            raise ValueError("failure_ttl must be within 0..300 seconds (RFC 2308 7.1)")
        if nameservers is None:
            self._dns = dns.asyncresolver.Resolver(configure=True)
        else:
            self._dns = dns.asyncresolver.Resolver(configure=False)
            servers: list[str | dns.nameserver.Nameserver] = []
            for entry in nameservers:
                host, server_port = (entry, port) if isinstance(entry, str) else entry
                servers.append(dns.nameserver.Do53Nameserver(host, server_port))
            self._dns.nameservers = servers
        self._dns.cache = None  # ours is in front of it
        self._dns.timeout = timeout
        self._dns.lifetime = lifetime
        # RFC 6840 5.7: AD in a query asks for the AD bit without needing DO (and the
        # RRSIGs that would come with it).
        self._dns.flags = dns.flags.RD | dns.flags.AD
        self.trust_ad = trust_ad
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.max_negative_ttl = max_negative_ttl
        self.failure_ttl = failure_ttl
        self._clock = clock
        self._cache: CoalescingCache[tuple[str, str], DnsAnswer] = CoalescingCache(clock)
        self._limit = asyncio.Semaphore(max_concurrency)
        #: look-ups that went on the wire, by (name, type); tests and benchmarks read it.
        self.sent: Counter[tuple[str, str]] = Counter()

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    def flush(self) -> None:
        """Forget every cached answer."""
        self._cache.invalidate()

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        """The (cached) answer for ``name`` (A-label form) and ``rdtype``."""
        key = (name, rdtype)
        return await self._cache.get(key, lambda: self._lookup(name, rdtype))

    async def mx(self, domain: str) -> DnsAnswer:
        """MX records, sorted by preference (ties keep the server's order)."""
        return await self.query(domain, "MX")

    async def addresses(self, host: str, *, ipv4: bool = True, ipv6: bool = True) -> DnsAnswer:
        """AAAA and A records of ``host`` together: ``records`` lists IPv6 addresses first.

        The outcome is ANSWER if either family has addresses; otherwise a failure of either
        look-up wins over NXDOMAIN/NODATA (the address might exist), then NXDOMAIN.
        """
        lookups = []
        if ipv6:
            lookups.append(self.query(host, "AAAA"))
        if ipv4:
            lookups.append(self.query(host, "A"))
        answers = await asyncio.gather(*lookups)
        records = tuple(r for a in answers for r in a.records)
        ttl = min(a.ttl for a in answers)
        secure = all(a.secure for a in answers)
        if records:
            return DnsAnswer(host, "A/AAAA", DnsOutcome.ANSWER, records, secure, ttl)
        for outcome in (DnsOutcome.SERVFAIL, DnsOutcome.TIMEOUT, DnsOutcome.NXDOMAIN):
            for a in answers:
                if a.outcome is outcome:
                    return DnsAnswer(host, "A/AAAA", outcome, (), secure, ttl, a.error)
        return DnsAnswer(host, "A/AAAA", DnsOutcome.NODATA, (), secure, ttl)

    async def tlsa(self, host: str, port: int = 25) -> DnsAnswer:
        """TLSA records at ``_PORT._tcp.HOST`` (RFC 7672 2.2.1)."""
        return await self.query(f"_{port}._tcp.{host}", "TLSA")

    async def txt(self, name: str) -> DnsAnswer:
        return await self.query(name, "TXT")

    # ------------------------------------------------------------------ the wire

    async def _lookup(self, name: str, rdtype: str) -> tuple[DnsAnswer, float]:
        async with self._limit:
            self.sent[(name, rdtype)] += 1
            answer = await self._ask(name, rdtype)
        return answer, self._clock() + answer.ttl

    async def _ask(self, name: str, rdtype: str) -> DnsAnswer:
        qname = dns.name.from_text(name)
        try:
            result = await self._dns.resolve(qname, rdtype, raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN as exc:
            response = exc.responses().get(qname)  # type: ignore[no-untyped-call]
            secure, ttl = False, 0.0
            if response is not None:
                secure = self._secure(response)
                ttl = min(_negative_ttl(response), self.max_negative_ttl)
            return DnsAnswer(name, rdtype, DnsOutcome.NXDOMAIN, (), secure, ttl)
        except dns.resolver.NoNameservers as exc:
            return DnsAnswer(
                name, rdtype, DnsOutcome.SERVFAIL, (), False, self.failure_ttl, _errors(exc)
            )
        except dns.exception.Timeout as exc:
            return DnsAnswer(
                name, rdtype, DnsOutcome.TIMEOUT, (), False, self.failure_ttl, str(exc)
            )
        except dns.exception.DNSException as exc:  # YXDOMAIN, malformed replies, ...
            return DnsAnswer(
                name, rdtype, DnsOutcome.SERVFAIL, (), False, self.failure_ttl, str(exc)
            )
        response = result.response
        secure = self._secure(response)
        if result.rrset is None:
            ttl = min(_negative_ttl(response), self.max_negative_ttl)
            return DnsAnswer(name, rdtype, DnsOutcome.NODATA, (), secure, ttl)
        records = tuple(_record(rd) for rd in result.rrset)
        if rdtype == "MX":
            records = tuple(sorted(records, key=lambda r: r.preference))
        # resolve_chaining's minimum covers the CNAME chain too.
        ttl = float(result.chaining_result.minimum_ttl)
        ttl = min(max(ttl, self.min_ttl), self.max_ttl)
        return DnsAnswer(name, rdtype, DnsOutcome.ANSWER, records, secure, ttl)

    def _secure(self, response: dns.message.Message) -> bool:
        return self.trust_ad and bool(response.flags & dns.flags.AD)


def _errors(exc: dns.resolver.NoNameservers) -> str:
    """A short reason from dnspython's per-server error list (e.g. "SERVFAIL")."""
    errors = exc.kwargs.get("errors") or []
    # Each entry: (server, tcp, port, exception or answer text such as "SERVFAIL", response)
    reasons = [str(error[3]) for error in errors]
    return "; ".join(dict.fromkeys(reasons)) or "no server answered"
