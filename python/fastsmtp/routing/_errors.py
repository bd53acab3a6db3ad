"""Why a domain could not be routed, as a value (``RouteFailure``) and as an exception
(``RouteError``).

A failure is *permanent* (the engine reports the recipient ``rejected``: NXDOMAIN, a null
MX, no usable MX host) or *transient* (``deferred`` and retried: SERVFAIL, a DNS timeout,
a TLS policy that no MX host can satisfy right now). Each carries an SMTP-style reply code,
an RFC 3463 enhanced status code and a text that names the domain and the reason, so a
result reads like one a real MTA would give.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import FastSMTPError

__all__ = ["RouteError", "RouteFailure", "RoutingConfigError"]


@dataclass(frozen=True, slots=True)
class RouteFailure:
    """One domain's routing failure.

    Attributes:
        domain: the recipient domain (A-label form when it could be encoded).
        permanent: True when retrying cannot help (report ``rejected``).
        code: 550/554 for permanent failures, 451 for transient ones.
        enhanced_code: RFC 3463 status, e.g. ``"5.1.10"`` for a null MX (RFC 7505 4.2).
        text: a sentence for people, naming the domain and the cause.
        policy: the TLS policy to blame (``"mta-sts"``, ``"dane"``) when one is.
    """

    domain: str
    permanent: bool
    code: int
    enhanced_code: str
    text: str
    policy: str | None = None

    @property
    def transient(self) -> bool:
        return not self.permanent

    def __str__(self) -> str:
        return f"{self.code} {self.enhanced_code} {self.text}"


def permanent(domain: str, enhanced_code: str, text: str, code: int = 550) -> RouteFailure:
    return RouteFailure(domain, True, code, enhanced_code, text)


def transient(
    domain: str, enhanced_code: str, text: str, *, policy: str | None = None
) -> RouteFailure:
    return RouteFailure(domain, False, 451, enhanced_code, text, policy)


class RouteError(FastSMTPError):
    """A domain could not be routed; ``failure`` says why and whether it is permanent."""

    def __init__(self, failure: RouteFailure) -> None:
        super().__init__(str(failure))
        self.failure = failure

    @property
    def is_permanent(self) -> bool:
        return self.failure.permanent

    @property
    def is_transient(self) -> bool:
        return not self.failure.permanent


class RoutingConfigError(FastSMTPError, ValueError):
    """A routing, shaping or relay setting is invalid (bad TOML, unknown key, bad value)."""
