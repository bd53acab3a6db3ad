"""Map a caller's ``ssl.SSLContext`` onto the Rust TLS layer's ``TlsConfig``, or say why
it cannot be, so the engine keeps Python's ``ssl`` path for that context.

Callers pass contexts today (Django settings, custom CAs, ``CERT_NONE`` for a lab relay).
An ``SSLContext`` is mostly readable: ``verify_mode``, ``check_hostname``,
``minimum_version``/``maximum_version``, ``options``, ``verify_flags``, the cipher list, and
the certificates held in its store (``get_ca_certs(binary_form=True)``; on Debian,
``create_default_context()`` loads the system bundle eagerly, so those are there too).
What is *not* readable:

* a CA directory (``capath``, ``SSL_CERT_DIR``): OpenSSL reads it lazily, so an empty
  store may be a directory of CAs or nothing at all. Such a context is not mapped;
* non-CA certificates in the store (a pinned self-signed server certificate):
  ``get_ca_certs`` skips them, so a store holding any is not mapped;
* the client certificate and key (``load_cert_chain``): OpenSSL has them, Python offers no
  getter. They cannot be detected either, so a mapped context presents no client
  certificate unless the caller passes ``client_cert``/``client_key`` here too.

Everything that maps does so exactly (the same certificates trusted, the same names
checked, the same versions offered), with one deliberate exception: OpenSSL (with
``hostname_checks_common_name``, on by default) falls back to the subject's common name for
a certificate without a subjectAltName; rustls never does, as browsers stopped doing in
2017. A setting with no rustls equivalent (TLS below 1.2, CRL checks, a cipher list that
forbids a suite rustls would offer, key logging) keeps the ``ssl`` path, with the reason.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Literal

from fastsmtp._fastsmtp import TlsConfig

__all__ = ["ContextMapping", "map_ssl_context"]

# OpenSSL names of the suites rustls (ring provider) offers: TLS 1.3, then TLS 1.2.
RUSTLS_CIPHERS = frozenset(
    {
        "TLS_AES_256_GCM_SHA384",
        "TLS_AES_128_GCM_SHA256",
        "TLS_CHACHA20_POLY1305_SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-CHACHA20-POLY1305",
    }
)

# verify_flags that webpki already behaves like: trusted-first path building, strict
# X.509 parsing, any store certificate as an anchor (partial chains), proxy certificates
# refused either way.
_HARMLESS_VERIFY_FLAGS = (
    ssl.VERIFY_X509_TRUSTED_FIRST
    | ssl.VERIFY_X509_STRICT
    | ssl.VERIFY_X509_PARTIAL_CHAIN
    | ssl.VERIFY_DEFAULT
)

Version = Literal["TLSv1.2", "TLSv1.3"]
_VERSIONS: dict[ssl.TLSVersion, Version] = {
    ssl.TLSVersion.TLSv1_2: "TLSv1.2",
    ssl.TLSVersion.TLSv1_3: "TLSv1.3",
}


@dataclass(frozen=True, slots=True)
class ContextMapping:
    """The outcome: ``config`` to use the Rust TLS layer, or ``None`` and ``reason`` to keep
    Python's ``ssl`` path for this context."""

    config: TlsConfig | None
    reason: str | None = None


def _version_range(ctx: ssl.SSLContext) -> tuple[Version, Version] | str:
    """(min, max) in TlsConfig's spelling, or the reason they do not map."""
    low, high = ctx.minimum_version, ctx.maximum_version
    if high == ssl.TLSVersion.MAXIMUM_SUPPORTED:
        high = ssl.TLSVersion.TLSv1_3
    # The deprecated per-version switches narrow the range the same way.
    if ctx.options & ssl.OP_NO_TLSv1_3:
        high = min(high, ssl.TLSVersion.TLSv1_2)
    if ctx.options & ssl.OP_NO_TLSv1_2 and low <= ssl.TLSVersion.TLSv1_2:
        low = ssl.TLSVersion.TLSv1_3
    if low == ssl.TLSVersion.MINIMUM_SUPPORTED or low < ssl.TLSVersion.TLSv1_2:
        return f"minimum_version {low.name} is below TLS 1.2, which rustls does not speak"
    if high < low:
        return f"no TLS version from {low.name} to {high.name}"
    return _VERSIONS[low], _VERSIONS[high]


def map_ssl_context(
    ctx: ssl.SSLContext,
    *,
    client_cert: str | os.PathLike[str] | None = None,
    client_key: str | os.PathLike[str] | None = None,
) -> ContextMapping:
    """Decide how ``ctx`` is served: a ``TlsConfig`` that verifies exactly what ``ctx``
    verifies, or ``None`` with the reason the ``ssl`` path must stay.

    ``client_cert``/``client_key`` are the files the caller loaded into ``ctx`` with
    ``load_cert_chain``, if any (see the module docs: they cannot be read back).
    Raises what ``TlsConfig`` raises for unreadable client-certificate files.
    """
    if ctx.keylog_filename:
        return ContextMapping(None, "keylog_filename is set (TLS key logging)")
    if ctx.verify_flags & ~_HARMLESS_VERIFY_FLAGS:
        return ContextMapping(None, f"verify_flags {ctx.verify_flags!r} (CRL checks)")
    versions = _version_range(ctx)
    if isinstance(versions, str):
        return ContextMapping(None, versions)
    allowed = {c["name"] for c in ctx.get_ciphers()}
    missing = RUSTLS_CIPHERS - allowed
    if missing:
        names = ", ".join(sorted(missing))
        return ContextMapping(None, f"the cipher list forbids suites rustls offers: {names}")

    verify = ctx.verify_mode != ssl.CERT_NONE  # a client's CERT_OPTIONAL verifies too
    ca_data: bytes | None = None
    if verify:
        stats = ctx.cert_store_stats()
        if stats["crl"]:
            return ContextMapping(None, "the store holds CRLs")
        if stats["x509"] != stats["x509_ca"]:
            return ContextMapping(
                None, "the store holds non-CA certificates (a pinned server certificate)"
            )
        cas = ctx.get_ca_certs(binary_form=True)
        if not cas:
            return ContextMapping(
                None, "no CA certificates in the store (a CA directory, or none at all)"
            )
        ca_data = b"".join(cas)
    config = TlsConfig(
        ca_data=ca_data,
        client_cert=client_cert,
        client_key=client_key,
        verify=verify,
        check_hostname=verify and ctx.check_hostname,
        min_version=versions[0],
        max_version=versions[1],
        resumption=not ctx.options & ssl.OP_NO_TICKET,
    )
    return ContextMapping(config)
