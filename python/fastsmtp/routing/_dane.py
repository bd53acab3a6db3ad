"""DANE for SMTP (RFC 7672, on RFC 6698/7671): which TLSA records count, and whether a
server's certificate chain matches them.

Usable records (RFC 7672 3.1): certificate usages DANE-TA(2) and DANE-EE(3) only; records
with PKIX-TA(0) or PKIX-EE(1) are unusable for SMTP (3.1.3). Selectors Cert(0) (the whole
DER certificate) and SPKI(1) (its SubjectPublicKeyInfo); matching types Full(0),
SHA2-256(1) and SHA2-512(2) (RFC 6698 2.1).

Checks, with the ``cryptography`` package:

* DANE-EE(3) (RFC 7672 3.1.1): the leaf certificate matches a record. Names and validity
  dates are not checked: the DNSSEC-signed record is the whole authentication.
* DANE-TA(2) (RFC 7672 3.1.2): a certificate in the chain the server sent matches a
  record (or, for a record holding a full SPKI, the top of the chain is signed by that
  key), every certificate below it is signed by the next one, the leaf names one of the
  reference identifiers (RFC 7672 3.2.3: the MX host name, or the next-hop domain) with
  wildcards matching one whole left-most label, and the certificates below the trust
  anchor are within their validity dates.

Failures come back as ``DaneResult`` with an RFC 8460 result type for the TLS report.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

from ._names import mx_pattern_matches
from ._resolver import TLSARecord

__all__ = ["DANE_EE", "DANE_TA", "DaneResult", "tlsa_data", "usable_tlsa", "verify_chain"]

DANE_TA = 2
DANE_EE = 3
_SELECTORS = (0, 1)
_MATCHING = (0, 1, 2)


def usable_tlsa(records: Sequence[TLSARecord]) -> tuple[TLSARecord, ...]:
    """The records an SMTP client may use (RFC 7672 3.1)."""
    return tuple(
        r
        for r in records
        if r.usage in (DANE_TA, DANE_EE) and r.selector in _SELECTORS and r.mtype in _MATCHING
    )


def tlsa_data(der: bytes, selector: int, mtype: int) -> bytes:
    """The association data a record of ``selector``/``mtype`` holds for a certificate
    (what a zone publishes; tests build records with it)."""
    cert = x509.load_der_x509_certificate(der)
    return _match_data(cert, der, selector, mtype)


def _match_data(cert: x509.Certificate, der: bytes, selector: int, mtype: int) -> bytes:
    if selector == 0:
        selected = der
    else:
        selected = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    if mtype == 1:
        return hashlib.sha256(selected).digest()
    if mtype == 2:
        return hashlib.sha512(selected).digest()
    return selected


@dataclass(frozen=True, slots=True)
class DaneResult:
    """``ok`` with the record that matched, or the reason and its RFC 8460 result type."""

    ok: bool
    record: TLSARecord | None = None
    reason: str = ""
    result_type: str = "success"


def verify_chain(
    chain: Sequence[bytes],
    records: Sequence[TLSARecord],
    *,
    names: Sequence[str] = (),
    now: dt.datetime | None = None,
) -> DaneResult:
    """Check a server's certificate chain (DER, leaf first, as sent) against TLSA records.

    Args:
        names: reference identifiers for DANE-TA(2) (A-label host names).
        now: the time for validity checks (default: now, UTC).
    """
    usable = usable_tlsa(records)
    if not usable:
        return DaneResult(False, None, "no usable TLSA records", "tlsa-invalid")
    if not chain:
        return DaneResult(False, None, "the server sent no certificate", "validation-failure")
    try:
        certs = [x509.load_der_x509_certificate(der) for der in chain]
    except ValueError as exc:
        return DaneResult(False, None, f"unparsable certificate: {exc}", "validation-failure")
    when = now or dt.datetime.now(dt.timezone.utc)

    for record in usable:
        if record.usage == DANE_EE and _matches(certs[0], chain[0], record):
            return DaneResult(True, record)

    problems: list[tuple[str, str]] = []
    for record in usable:
        if record.usage != DANE_TA:
            continue
        anchor = _find_anchor(certs, chain, record)
        if anchor is None:
            continue
        problem = _check_below_anchor(certs, anchor, record, names, when)
        if problem is None:
            return DaneResult(True, record)
        problems.append(problem)
    if problems:
        reason, result_type = problems[0]
        return DaneResult(False, None, reason, result_type)
    return DaneResult(
        False, None, "no certificate in the chain matches a TLSA record", "validation-failure"
    )


def _matches(cert: x509.Certificate, der: bytes, record: TLSARecord) -> bool:
    return _match_data(cert, der, record.selector, record.mtype) == record.data


def _find_anchor(
    certs: list[x509.Certificate], chain: Sequence[bytes], record: TLSARecord
) -> int | None:
    """Index of the trust anchor for a DANE-TA record: a chain certificate matching it, or
    ``len(certs)`` for a bare full-SPKI record that signed the top of the chain."""
    for i in range(1, len(certs)):
        if _matches(certs[i], chain[i], record):
            return i
    if record.selector == 1 and record.mtype == 0:
        try:
            key = serialization.load_der_public_key(record.data)
        except ValueError:
            return None
        if _signed_by(certs[-1], key):
            return len(certs)
    return None


def _check_below_anchor(
    certs: list[x509.Certificate],
    anchor: int,
    record: TLSARecord,
    names: Sequence[str],
    when: dt.datetime,
) -> tuple[str, str] | None:
    for i in range(min(anchor, len(certs) - 1)):
        try:
            certs[i].verify_directly_issued_by(certs[i + 1])
        except (ValueError, TypeError, InvalidSignature):
            return (f"certificate {i} is not signed by certificate {i + 1}", "validation-failure")
    for i in range(min(anchor, len(certs))):
        cert = certs[i]
        if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
            return (f"certificate {i} is outside its validity dates", "certificate-expired")
    if not _names_match(certs[0], names):
        wanted = ", ".join(names) or "(none given)"
        return (f"the certificate names none of {wanted}", "certificate-host-mismatch")
    return None


def _names_match(cert: x509.Certificate, names: Sequence[str]) -> bool:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        presented = [n.lower() for n in san.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        presented = [
            str(a.value).lower()
            for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        ]
    return any(mx_pattern_matches(p, name) for p in presented for name in names)


def _signed_by(cert: x509.Certificate, key: object) -> bool:
    """Whether ``key`` made ``cert``'s signature (ECDSA, RSA PKCS#1 v1.5, EdDSA)."""
    data, signature = cert.tbs_certificate_bytes, cert.signature
    hash_algorithm = cert.signature_hash_algorithm
    try:
        if isinstance(key, ec.EllipticCurvePublicKey) and hash_algorithm is not None:
            key.verify(signature, data, ec.ECDSA(hash_algorithm))
        elif isinstance(key, rsa.RSAPublicKey) and hash_algorithm is not None:
            key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, data)
        else:
            return False
    except InvalidSignature:
        return False
    return True
