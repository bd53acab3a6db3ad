"""Routing for direct delivery: which servers take a recipient's mail, what TLS they must
offer, and how fast they may be sent to.

The engine calls this layer; it makes no SMTP connection itself. The pieces:

``Resolver``
    Cached async DNS (dnspython): ``mx``, ``addresses`` (AAAA + A), ``txt``, ``tlsa``.
    Honours TTLs, caches negative answers (RFC 2308) and failures briefly, coalesces
    concurrent look-ups of a name. Give it ``nameservers=[(ip, port)]`` to use exactly
    those servers; ``trust_ad=True`` only for a validating resolver on a trusted path.

``Router(resolver, mta_sts=..., dane=..., port=25)``
    ``await router.route(domain) -> Route`` (raises ``RouteError``) or
    ``await router.lookup(domain) -> Route | RouteFailure``; ``router.cached(domain)`` is
    the synchronous warm path (a dict look-up). A ``Route`` has the usable MX hosts in
    preference order with their addresses and ``HostTLS`` requirement,
    ``route.candidates()`` (equal preferences shuffled each call), ``route.destination``
    (the MX-rollup key to pool and shape by) and ``route.expires``. Null MX, NXDOMAIN and
    "no MX host exists" are permanent ``RouteFailure``s; SERVFAIL, time-outs and TLS
    policies no host can meet are transient. ``await router.group(recipients)`` splits
    addresses into one ``DestinationGroup`` per transaction.

``MTASTS(resolver, ssl_context=..., port=443)``
    RFC 8461 policy discovery, HTTPS fetch, strict parsing and caching; the router applies
    the policy per MX host (``enforce`` drops non-matching hosts, ``testing`` reports).

DANE (``verify_chain``, ``usable_tlsa``, ``tlsa_data``)
    With ``Router(dane=True)`` hosts reached through validated DNS get their TLSA records
    (RFC 7672); after the TLS handshake the engine calls
    ``verify_chain(der_chain, host.tls.tlsa, names=host.tls.verify_names)``.

``Shaper(ShapingConfig)``
    Per-destination ``Limits`` (connections, per second/minute/hour with strict GCRA
    windows, burst, ``max_messages_per_connection``, ``source_address``) from defaults and
    overrides (Python or TOML), and an AIMD ``Destination`` controller fed with
    ``record_reply(code, enhanced)`` / ``record(ReplyClass.REFUSED)``;
    ``shaper.snapshot()`` is what ``engine.destinations()`` shows.

``RelaySet([Relay(...)], "failover" | "round-robin")``
    Relay selection with health tracking, for relay (smarthost) delivery.

``TLSReport``
    TLS-RPT-style counters (RFC 8460 result types) of policy outcomes.

The engine's side, per message: ``grouping = await router.group(rcpts)``; report each
``grouping.failed`` entry (``failure.permanent`` -> rejected, else deferred); for each
group, ``dest = shaper.for_route(group.route)``; open at most ``dest.connections``
connections, trying ``group.route.attempts()`` in order (next address/host on connect
failure, 421 greeting or a failed ``HostTLS`` requirement); ``await dest.acquire(n)``
before sending; ``dest.record_reply(...)`` for every reply.
"""

try:
    import cryptography  # noqa: F401
    import dns  # noqa: F401
    import idna  # noqa: F401
except ModuleNotFoundError as e:  # pragma: no cover - tested in a venv without the extra
    raise ModuleNotFoundError(
        f"fastsmtp.routing (direct delivery) needs {e.name}, which comes with the 'direct' "
        "extra: pip install 'fastsmtp[direct]'",
        name=e.name,
    ) from e

from ._dane import DANE_EE, DANE_TA, DaneResult, tlsa_data, usable_tlsa, verify_chain
from ._errors import RouteError, RouteFailure, RoutingConfigError
from ._limiter import GCRA, RateLimiter
from ._mtasts import (
    MTASTS,
    STSLookup,
    STSMode,
    STSPolicy,
    STSPolicyError,
    parse_policy,
    parse_sts_record,
)
from ._names import InvalidDomain, mx_pattern_matches, normalize_domain
from ._relays import Relay, RelaySet
from ._report import TLSReport, TLSReportEntry
from ._resolver import DnsAnswer, DnsOutcome, MXRecord, Resolver, TLSARecord
from ._router import (
    DestinationGroup,
    Grouping,
    MXHost,
    Rollup,
    Route,
    Router,
    default_rollup,
)
from ._shaping import (
    Backoff,
    Destination,
    DestinationSnapshot,
    Limits,
    Override,
    ReplyClass,
    Shaper,
    ShapingConfig,
    classify_reply,
)
from ._tls import OPPORTUNISTIC, HostTLS, TLSMode

__all__ = [
    "DANE_EE",
    "DANE_TA",
    "GCRA",
    "MTASTS",
    "OPPORTUNISTIC",
    "Backoff",
    "DaneResult",
    "Destination",
    "DestinationGroup",
    "DestinationSnapshot",
    "DnsAnswer",
    "DnsOutcome",
    "Grouping",
    "HostTLS",
    "InvalidDomain",
    "Limits",
    "MXHost",
    "MXRecord",
    "Override",
    "RateLimiter",
    "Relay",
    "RelaySet",
    "ReplyClass",
    "Resolver",
    "Rollup",
    "Route",
    "RouteError",
    "RouteFailure",
    "Router",
    "RoutingConfigError",
    "STSLookup",
    "STSMode",
    "STSPolicy",
    "STSPolicyError",
    "Shaper",
    "ShapingConfig",
    "TLSARecord",
    "TLSMode",
    "TLSReport",
    "TLSReportEntry",
    "classify_reply",
    "default_rollup",
    "mx_pattern_matches",
    "normalize_domain",
    "parse_policy",
    "parse_sts_record",
    "tlsa_data",
    "usable_tlsa",
    "verify_chain",
]
