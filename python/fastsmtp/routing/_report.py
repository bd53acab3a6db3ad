"""TLS-RPT-style counters (RFC 8460): how often each TLS policy succeeded or failed, and why.

RFC 8460 4.3 names the result types a report carries; these counters use the same words so
an operator (or a later TLS-RPT report writer) can read them directly:

* successes: ``"success"``;
* negotiation failures (4.3.1): ``"starttls-not-supported"``, ``"certificate-host-mismatch"``,
  ``"certificate-expired"``, ``"certificate-not-trusted"``, ``"validation-failure"``;
* policy failures: ``"tlsa-invalid"``, ``"dnssec-invalid"``, ``"dane-required"`` (4.3.2.1,
  DANE) and ``"sts-policy-fetch-error"``, ``"sts-policy-invalid"``, ``"sts-webpki-invalid"``
  (4.3.2.2, MTA-STS).

Each count is keyed by the policy domain, the policy type (``"sts"``, ``"tlsa"`` or
``"no-policy-found"``, as RFC 8460 4.4 ``policy-type``) and the result type. The router
counts what it sees while building routes (policy fetches, MX hosts an MTA-STS policy
excludes, unusable TLSA answers); the engine counts each TLS session's outcome.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

__all__ = ["RESULT_TYPES", "TLSReport", "TLSReportEntry"]

RESULT_TYPES = frozenset(
    {
        "success",
        "starttls-not-supported",
        "certificate-host-mismatch",
        "certificate-expired",
        "certificate-not-trusted",
        "validation-failure",
        "tlsa-invalid",
        "dnssec-invalid",
        "dane-required",
        "sts-policy-fetch-error",
        "sts-policy-invalid",
        "sts-webpki-invalid",
    }
)
POLICY_TYPES = frozenset({"sts", "tlsa", "no-policy-found"})


@dataclass(frozen=True, slots=True)
class TLSReportEntry:
    policy_domain: str
    policy_type: str
    result_type: str
    count: int


class TLSReport:
    """Counters of TLS policy outcomes; ``snapshot()`` lists them."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str, str]] = Counter()

    def record(self, policy_domain: str, policy_type: str, result_type: str, n: int = 1) -> None:
        if policy_type not in POLICY_TYPES:
            raise ValueError(f"unknown TLS-RPT policy type {policy_type!r}")
        if result_type not in RESULT_TYPES:
            raise ValueError(f"unknown TLS-RPT result type {result_type!r}")
        self._counts[(policy_domain, policy_type, result_type)] += n

    def count(
        self,
        policy_domain: str | None = None,
        policy_type: str | None = None,
        result_type: str | None = None,
    ) -> int:
        """The sum of the counts matching every given field."""
        return sum(
            n
            for (d, p, r), n in self._counts.items()
            if (policy_domain is None or d == policy_domain)
            and (policy_type is None or p == policy_type)
            and (result_type is None or r == result_type)
        )

    def snapshot(self) -> list[TLSReportEntry]:
        return [TLSReportEntry(d, p, r, n) for (d, p, r), n in sorted(self._counts.items())]

    def clear(self) -> None:
        self._counts.clear()
