"""MTA-STS (RFC 8461): discover, fetch, parse, cache and apply a domain's TLS policy.

Discovery (3.1): a TXT record at ``_mta-sts.DOMAIN``. "If multiple TXT records for
"_mta-sts" are returned by the resolver, records that do not begin with "v=STSv1;" are
discarded. If the number of resulting records is not one, or if the resulting record is
syntactically invalid, senders MUST assume the recipient domain does not have an available
MTA-STS Policy."

Fetch (3.3): ``https://mta-sts.DOMAIN/.well-known/mta-sts.txt`` with a certificate valid
for that host; status 200; "HTTP 3xx redirects MUST NOT be followed"; the media type
should be ``text/plain``. The host is resolved with the routing resolver and reached on
``port`` (443; tests pass another) with the caller's ``ssl.SSLContext`` (tests pass one
that trusts the test CA).

Caching (3.3, 5.1): a fetched policy is kept for its ``max_age`` and identified by the TXT
record's ``id``; the policy is fetched again only when the id changes or it expired. When
the TXT record is missing or unreadable, or a fetch fails, an unexpired cached policy stays
in force ("If a valid TXT record is found but no policy can be fetched via HTTPS (for any
reason), and there is no valid (non-expired) previously cached policy, senders MUST
continue with delivery as though the domain has not implemented MTA-STS."). Failed fetches
are not repeated for ``fetch_retry`` seconds (3.3: senders "may wish to rate-limit the
frequency of attempts to fetch the HTTPS endpoint").

The policy grammar (3.2) is parsed strictly: field names and values are case-sensitive,
``version: STSv1``, ``mode`` and ``max_age`` must each appear exactly once, ``mx`` at
least once unless the mode is ``none``; unknown (extension) fields are ignored.
"""

from __future__ import annotations

import asyncio
import enum
import re
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ._https import HTTPError, https_get
from ._names import InvalidDomain, mx_pattern_matches, normalize_domain
from ._report import TLSReport
from ._resolver import Resolver

__all__ = [
    "MTASTS",
    "STSLookup",
    "STSMode",
    "STSPolicy",
    "STSPolicyError",
    "parse_policy",
    "parse_sts_record",
]

WELL_KNOWN = "/.well-known/mta-sts.txt"
MAX_AGE_LIMIT = 31557600  # 3.2: "maximum value of 31557600"

# 3.1: sts-id = %s"id=" 1*32(ALPHA / DIGIT); fields split by *WSP ";" *WSP.
_STS_ID = re.compile(r"[A-Za-z0-9]{1,32}\Z")
# 3.1 sts-ext-name/-value and 3.2 sts-policy-extension-name/-value share one shape: a name
# of (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / "."), a value of visible ASCII
# without "=", ";" and space.
_EXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}\Z")
_EXT_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+\Z")
_MAX_AGE = re.compile(r"[0-9]{1,10}\Z")


class STSPolicyError(ValueError):
    """A TXT record or policy file does not follow RFC 8461's grammar."""


class STSMode(enum.Enum):
    ENFORCE = "enforce"
    TESTING = "testing"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class STSPolicy:
    """A parsed policy. ``id`` is the TXT record id it was fetched under."""

    mode: STSMode
    mx: tuple[str, ...]
    max_age: int
    id: str = ""

    def matches(self, host: str) -> bool:
        """4.1: the MX host matches at least one ``mx`` pattern."""
        return any(mx_pattern_matches(pattern, host) for pattern in self.mx)


def parse_sts_record(records: Sequence[str]) -> str | None:
    """The policy id from the TXT strings at ``_mta-sts.DOMAIN``, or None when there is
    no single valid STSv1 record (3.1: then the domain has no available policy)."""
    candidates = [r for r in records if r.startswith("v=STSv1;") or r == "v=STSv1"]
    if len(candidates) != 1:
        return None
    fields = [f.strip(" \t") for f in candidates[0].split(";")]
    if fields and fields[-1] == "":
        fields.pop()  # a trailing delimiter is allowed
    if not fields or fields[0] != "v=STSv1":
        return None
    policy_id = None
    for field in fields[1:]:
        name, sep, value = field.partition("=")
        if not sep:
            return None
        if name == "id":
            if policy_id is not None or not _STS_ID.match(value):
                return None
            policy_id = value
        elif not (_EXT_NAME.match(name) and _EXT_VALUE.match(value)):
            return None
    return policy_id


def parse_policy(text: str, policy_id: str = "") -> STSPolicy:
    """Parse a policy file body (3.2), strictly.

    Raises:
        STSPolicyError: with the reason.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # a final line terminator
    version = mode = max_age = None
    mx: list[str] = []
    for number, raw in enumerate(lines, 1):
        line = raw[:-1] if raw.endswith("\r") else raw
        # sts-policy-field *WSP: trailing blanks are allowed, leading ones are not.
        line = line.rstrip(" \t")
        name, sep, value = line.partition(":")
        if not sep:
            raise STSPolicyError(f"line {number}: expected 'key: value', got {line[:60]!r}")
        value = value.lstrip(" \t")
        if name == "version":
            if version is not None:
                raise STSPolicyError("version given twice")
            if value != "STSv1":
                raise STSPolicyError(f"unsupported version {value[:20]!r} (only STSv1)")
            version = value
        elif name == "mode":
            if mode is not None:
                raise STSPolicyError("mode given twice")
            try:
                mode = STSMode(value)
            except ValueError:
                raise STSPolicyError(
                    f"mode {value[:20]!r} is not enforce, testing or none"
                ) from None
        elif name == "max_age":
            if max_age is not None:
                raise STSPolicyError("max_age given twice")
            if not _MAX_AGE.match(value) or int(value) > MAX_AGE_LIMIT:
                raise STSPolicyError(f"max_age {value[:20]!r} is not 0..{MAX_AGE_LIMIT}")
            max_age = int(value)
        elif name == "mx":
            mx.append(_mx_pattern(value))
        elif not (_EXT_NAME.match(name) and _EXT_VALUE.match(value)):
            raise STSPolicyError(f"line {number}: malformed field {line[:60]!r}")
    if version is None:
        raise STSPolicyError("no version field")
    if mode is None:
        raise STSPolicyError("no mode field")
    if max_age is None:
        raise STSPolicyError("no max_age field")
    if not mx and mode is not STSMode.NONE:
        raise STSPolicyError(f"no mx field in a {mode.value} policy")
    return STSPolicy(mode, tuple(mx), max_age, policy_id)


def _mx_pattern(value: str) -> str:
    # sts-policy-mx-value = ["*."] Domain
    wildcard = value.startswith("*.")
    try:
        domain = normalize_domain(value[2:] if wildcard else value)
    except InvalidDomain as exc:
        raise STSPolicyError(f"bad mx pattern {value[:60]!r}") from exc
    return f"*.{domain}" if wildcard else domain


@dataclass(frozen=True, slots=True)
class STSLookup:
    """The policy in force for a domain right now, if any.

    Attributes:
        policy: the policy (never one in mode ``none``), or None.
        valid_until: when this answer should be looked at again (the TXT record's TTL or
            the policy's expiry, whichever is sooner); the router bounds a route's life
            with it.
        error: why a fetch failed, when one did (a cached policy may still be in force).
    """

    domain: str
    policy: STSPolicy | None
    valid_until: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class _Fetched:
    """A fetch's outcome: a policy until ``expires`` (its max_age), or a failure remembered
    until ``expires`` (``fetch_retry``)."""

    policy: STSPolicy | None
    expires: float
    error: str | None = None


class MTASTS:
    """MTA-STS policies for recipient domains, fetched and cached.

    Args:
        resolver: looks up ``_mta-sts.DOMAIN`` and the policy host's addresses.
        ssl_context: verifies the policy host's certificate (default: the system's
            trust store with host name checking). Must check host names.
        port: the HTTPS port (443; tests pass their server's).
        timeout: seconds for a whole fetch (connect, TLS, response).
        fetch_retry: seconds before a failed fetch is tried again.
        max_body: the largest policy file accepted (RFC 8461 3.3 suggests 64 KiB).
        report: TLS-RPT counters for fetch failures.
        clock: monotonic seconds (the resolver's by default).
    """

    def __init__(
        self,
        resolver: Resolver,
        *,
        ssl_context: ssl.SSLContext | None = None,
        port: int = 443,
        timeout: float = 10.0,
        fetch_retry: float = 300.0,
        max_body: int = 64 * 1024,
        report: TLSReport | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.resolver = resolver
        self.ssl_context = ssl_context or ssl.create_default_context()
        if not self.ssl_context.check_hostname:
            raise ValueError("the MTA-STS ssl_context must check host names (RFC 8461 3.3)")
        self.port = port
        self.timeout = timeout
        self.fetch_retry = fetch_retry
        self.max_body = max_body
        self.report = report
        self._clock = clock or resolver.clock
        self._policies: dict[str, _Fetched] = {}  # domain -> last good policy
        self._failures: dict[tuple[str, str], _Fetched] = {}  # (domain, id) -> failure
        self._fetching: dict[tuple[str, str], asyncio.Task[_Fetched]] = {}
        #: policy fetches made (attempts, successful or not), for tests.
        self.fetches = 0

    def cached_policy(self, domain: str) -> STSPolicy | None:
        """The unexpired cached policy of ``domain`` (A-label form), if any."""
        entry = self._policies.get(domain)
        if entry is not None and entry.policy is not None and entry.expires > self._clock():
            return entry.policy
        return None

    async def lookup(self, domain: str) -> STSLookup:
        """The policy in force for ``domain`` (A-label form), fetching it if needed."""
        txt = await self.resolver.txt(f"_mta-sts.{domain}")
        now = self._clock()
        until = now + txt.ttl
        entry = self._policies.get(domain)
        cached = entry.policy if entry is not None and entry.expires > now else None
        if entry is not None and cached is not None:
            until = min(until, entry.expires)
        policy_id = parse_sts_record(txt.records) if txt.ok else None
        if policy_id is None or (cached is not None and cached.id == policy_id):
            # No valid record now (a cached policy stays in force until it expires), or
            # the cached policy is the current one.
            return STSLookup(domain, _active(cached), until)
        failure = self._failures.get((domain, policy_id))
        if failure is None or failure.expires <= now:
            fetched = await self._fetch_once(domain, policy_id)
            if fetched.policy is not None:
                self._policies[domain] = fetched
                self._failures.pop((domain, policy_id), None)
                return STSLookup(
                    domain, _active(fetched.policy), min(now + txt.ttl, fetched.expires)
                )
            self._failures[(domain, policy_id)] = failure = fetched
        # The fetch failed (now or recently): an older unexpired policy stays in force.
        return STSLookup(domain, _active(cached), min(until, failure.expires), failure.error)

    async def _fetch_once(self, domain: str, policy_id: str) -> _Fetched:
        key = (domain, policy_id)
        task = self._fetching.get(key)
        if task is None:
            task = asyncio.ensure_future(self._fetch(domain, policy_id))
            self._fetching[key] = task
            task.add_done_callback(lambda _t: self._fetching.pop(key, None))
        return await asyncio.shield(task)

    async def _fetch(self, domain: str, policy_id: str) -> _Fetched:
        self.fetches += 1
        host = f"mta-sts.{domain}"
        try:
            policy = await asyncio.wait_for(self._get(host, policy_id), self.timeout)
        except ssl.SSLCertVerificationError as exc:
            return self._failed(domain, "sts-webpki-invalid", f"{host}: certificate: {exc}")
        except STSPolicyError as exc:
            return self._failed(domain, "sts-policy-invalid", f"{host}: {exc}")
        except TimeoutError:
            return self._failed(domain, "sts-policy-fetch-error", f"{host}: timed out")
        except (OSError, ssl.SSLError, HTTPError, _FetchError) as exc:
            return self._failed(domain, "sts-policy-fetch-error", f"{host}: {exc}")
        return _Fetched(policy, self._clock() + policy.max_age)

    async def _get(self, host: str, policy_id: str) -> STSPolicy:
        addresses = await self.resolver.addresses(host)
        if not addresses.ok:
            raise _FetchError(f"no address ({addresses.describe()})")
        last: Exception | None = None
        for address in addresses.records:
            try:
                response = await https_get(
                    host,
                    WELL_KNOWN,
                    address=address,
                    port=self.port,
                    ssl_context=self.ssl_context,
                    max_body=self.max_body,
                )
                break
            except ssl.SSLCertVerificationError:
                raise
            except (OSError, ssl.SSLError) as exc:
                last = exc  # try the next address
        else:
            raise _FetchError(f"could not connect: {last}")
        if response.status != 200:
            raise _FetchError(f"HTTP status {response.status} (redirects are not followed)")
        if response.media_type != "text/plain":
            raise STSPolicyError(f"media type {response.media_type!r} is not text/plain")
        try:
            text = response.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise STSPolicyError("policy is not UTF-8 text") from exc
        return parse_policy(text, policy_id)

    def _failed(self, domain: str, result_type: str, text: str) -> _Fetched:
        if self.report is not None:
            self.report.record(domain, "sts", result_type)
        return _Fetched(None, self._clock() + self.fetch_retry, text)


class _FetchError(Exception):
    pass


def _active(policy: STSPolicy | None) -> STSPolicy | None:
    """A policy in mode ``none`` is as good as no policy (RFC 8461 5)."""
    return None if policy is None or policy.mode is STSMode.NONE else policy
