"""Domain names as they go on the wire: lower-case A-labels without a trailing dot.

Non-ASCII domains are converted with UTS 46 / IDNA 2008 (the ``idna`` package, the same
rules the Rust core applies to addresses), so ``bücher.example`` is looked up as
``xn--bcher-kva.example``. ASCII names are checked against the RFC 1035 2.3.1 "preferred
name syntax" as RFC 5321 4.1.2 uses it for ``Domain``:

    sub-domain = Let-dig [Ldh-str]
    Ldh-str    = *( ALPHA / DIGIT / "-" ) Let-dig

and the length limits of RFC 1035 2.3.4 (63 octets a label, 255 a name on the wire, so at
most 253 characters in text form).
"""

from __future__ import annotations

import re

import idna

__all__ = ["InvalidDomain", "mx_pattern_matches", "normalize_domain"]

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")


class InvalidDomain(ValueError):
    """The text is not a usable domain name."""


def normalize_domain(domain: str) -> str:
    """The lower-case A-label form of ``domain`` (no trailing dot).

    Raises:
        InvalidDomain: empty, too long, a bad label, or not IDNA-encodable.
    """
    name = domain.strip().rstrip(".")
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True, transitional=False).decode("ascii")
        except idna.IDNAError as exc:
            raise InvalidDomain(
                f"{domain!r} is not a valid internationalized domain: {exc}"
            ) from None
    name = name.lower()
    if not name or len(name) > 253:
        raise InvalidDomain(f"{domain!r} is not a valid domain (empty or over 253 characters)")
    for label in name.split("."):
        if not _LABEL.match(label):
            raise InvalidDomain(f"{domain!r} is not a valid domain (bad label {label!r})")
    return name


def mx_pattern_matches(pattern: str, host: str) -> bool:
    """RFC 8461 4.1 MX host matching: a pattern is a host name, or ``*.`` followed by a
    domain, and "the wildcard ... matches only the left-most label" of the host: ``*.a.b``
    matches ``x.a.b`` but neither ``a.b`` nor ``y.x.a.b``. Case-insensitive; trailing dots
    are ignored. Both arguments are expected in A-label form."""
    pattern = pattern.lower().rstrip(".")
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        head, sep, rest = host.partition(".")
        return bool(head) and bool(sep) and rest == pattern[2:]
    return host == pattern
