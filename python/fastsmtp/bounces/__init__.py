"""Bounces, delivery status notifications, complaints and auto-replies: parsing and VERP.

The parsing and the VERP codec are in Rust (``fastsmtp._fastsmtp``); this package is their
public face. It checks argument types (``TypeError`` for a wrong type, ``InvalidMessage``
for a value the codec cannot take) before calling in.

    report = parse_bounce(raw_bytes, verp_secret=SECRET)
    if report.kind == "dsn":
        for rcpt in report.recipients:
            print(rcpt.address, rcpt.category, rcpt.permanent)
    if report.verp_status == "valid":
        job, index = report.verp_job, report.verp_recipient

A VERP address (``bounces+TOKEN@bounces.example.com``) carries the job and recipient in an
HMAC-signed, case-insensitive base32 token, so a bounce maps back to its recipient even
when the bounce names no address, and a forged bounce cannot suppress anyone.
"""

from __future__ import annotations

from typing import Literal, cast

from fastsmtp import _fastsmtp as _native
from fastsmtp._errors import InvalidMessage
from fastsmtp._fastsmtp import BounceRecipient, BounceReport, FeedbackReport

__all__ = [
    "CATEGORIES",
    "BounceKind",
    "BounceRecipient",
    "BounceReport",
    "FeedbackReport",
    "VerpStatus",
    "make_verp_address",
    "parse_bounce",
    "parse_verp_address",
    "verp_address_status",
]

BounceKind = Literal["dsn", "arf", "bounce", "auto_reply", "unknown"]
"""``BounceReport.kind``."""

VerpStatus = Literal["valid", "forged", "not_verp"]
"""What a VERP address check found."""

CATEGORIES: frozenset[str] = frozenset(
    {
        "bad_mailbox",
        "inactive_mailbox",
        "bad_domain",
        "mailbox_full",
        "message_too_large",
        "spam_block",
        "content_rejected",
        "policy",
        "rate_limited",
        "dns_failure",
        "relay_denied",
        "bad_sender",
        "network",
        "expired",
        "transient",
        "complaint",
        "delivered",
        "other",
    }
)
"""Every value of ``BounceRecipient.category``."""

_U64_LIMIT = 1 << 64


def _check_secret(secret: object) -> bytes:
    if not isinstance(secret, bytes):
        raise TypeError(f"the VERP secret must be bytes, not {type(secret).__name__}")
    return secret


def parse_bounce(
    raw: bytes | bytearray,
    verp_secret: bytes | None = None,
    *,
    envelope_recipient: str | None = None,
) -> BounceReport:
    """Parse one inbound message: an RFC 3464 DSN, an RFC 5965 complaint, a non-standard
    bounce or an auto-reply. Never fails on content: anything unrecognisable is a report of
    kind ``"unknown"``. Raises ``InvalidMessage`` if ``raw`` is not bytes.

    With ``verp_secret``, the report's ``verp_*`` fields say which job and recipient the
    VERP token names (checked in ``envelope_recipient`` — the address the report was
    delivered to, when the intake knows it — then the delivery headers, the original
    envelope sender and the returned message's Return-Path).
    """
    if verp_secret is not None:
        _check_secret(verp_secret)
    if envelope_recipient is not None and not isinstance(envelope_recipient, str):
        raise TypeError("envelope_recipient must be a str")
    return _native.parse_bounce(raw, verp_secret, envelope_recipient=envelope_recipient)


def make_verp_address(
    secret: bytes, local_prefix: str, domain: str, job: int, recipient: int
) -> str:
    """``local_prefix+TOKEN@domain`` for ``job`` and ``recipient`` (each 0 to 2**64-1),
    signed with ``secret``. Raises ``InvalidMessage`` (``field="verp"``) for an empty
    secret, a prefix or domain with unusual characters, or a local part over 64 octets."""
    _check_secret(secret)
    for name, value in (("job", job), ("recipient", recipient)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if not 0 <= value < _U64_LIMIT:
            raise InvalidMessage(f"{name} must be between 0 and 2**64-1", field="verp")
    for name, text in (("local_prefix", local_prefix), ("domain", domain)):
        if not isinstance(text, str):
            raise TypeError(f"{name} must be a str, not {type(text).__name__}")
    return _native.make_verp_address(secret, local_prefix, domain, job, recipient)


def parse_verp_address(secret: bytes, address: str) -> tuple[int, int] | None:
    """``(job, recipient)`` of a VERP address signed with ``secret``, or None if the address
    is not VERP or its token is forged (``verp_address_status`` tells which)."""
    _check_secret(secret)
    if not isinstance(address, str):
        raise TypeError(f"address must be a str, not {type(address).__name__}")
    return _native.parse_verp_address(secret, address)


def verp_address_status(secret: bytes, address: str) -> VerpStatus:
    """``"valid"``, ``"forged"`` (a token of the right shape whose signature fails: count
    it) or ``"not_verp"``."""
    _check_secret(secret)
    if not isinstance(address, str):
        raise TypeError(f"address must be a str, not {type(address).__name__}")
    return cast(VerpStatus, _native.verp_address_status(secret, address))
