"""DANE (RFC 7672): TLSA records from a DNSSEC-signed zone served through unbound as a
validating resolver with a local trust anchor (``tests.peers.dns``), and certificate-chain
checks against TLSA records, including a chain presented in a real TLS handshake."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fastsmtp.routing import (
    DnsOutcome,
    Resolver,
    Route,
    Router,
    TLSARecord,
    TLSMode,
    tlsa_data,
    usable_tlsa,
    verify_chain,
)
from tests.peers.certs import TestPKI, make_test_ca
from tests.peers.dns import DnsServer, Zone
from tests.peers.https import PolicyServer


def der(path: Path) -> bytes:
    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )


@pytest.fixture
def mx_pki(tmp_path: Path) -> TestPKI:
    return make_test_ca(tmp_path / "mx", hosts=["mx.dane.test", "127.0.0.1"])


@pytest.fixture
def other_pki(tmp_path: Path) -> TestPKI:
    return make_test_ca(tmp_path / "other", hosts=["mx.dane.test"])


def tlsa(usage: int, selector: int, mtype: int, cert: bytes) -> TLSARecord:
    return TLSARecord(usage, selector, mtype, tlsa_data(cert, selector, mtype))


def zone_line(record: TLSARecord) -> str:
    return f"{record.usage} {record.selector} {record.mtype} {record.data.hex()}"


@pytest.fixture
def dns(dns_server: Callable[..., DnsServer], mx_pki: TestPKI) -> DnsServer:
    leaf, ca = der(mx_pki.cert_file), der(mx_pki.ca_file)
    signed = Zone(
        "dane.test",
        [
            "@ MX 10 mx",
            "@ MX 20 mx2",
            "@ MX 30 mx3",
            "@ MX 40 nodane",
            "mx A 127.0.0.2",
            "mx2 A 127.0.0.3",
            "mx3 A 127.0.0.4",
            "nodane A 127.0.0.5",
            f"_25._tcp.mx TLSA {zone_line(tlsa(3, 1, 1, leaf))}",
            f"_25._tcp.mx2 TLSA {zone_line(tlsa(2, 0, 1, ca))}",
            # Only PKIX usages: unusable for SMTP, so TLS without authentication.
            f"_25._tcp.mx3 TLSA {zone_line(tlsa(1, 1, 1, leaf))}",
        ],
        signed=True,
    )
    unsigned = Zone(
        "plain.test",
        ["@ MX 10 mx", "mx A 127.0.0.6", f"_25._tcp.mx TLSA {zone_line(tlsa(3, 1, 1, leaf))}"],
    )
    return dns_server([signed, unsigned])


def validating(dns: DnsServer) -> Resolver:
    return Resolver([dns.address], timeout=1.0, lifetime=2.0, trust_ad=True)


async def test_tlsa_answers_from_the_signed_zone_are_secure(dns: DnsServer) -> None:
    resolver = validating(dns)
    answer = await resolver.tlsa("mx.dane.test")
    assert answer.ok and answer.secure
    assert [(r.usage, r.selector, r.mtype) for r in answer.records] == [(3, 1, 1)]
    assert (await resolver.mx("dane.test")).secure
    # An unsigned zone's answers are never secure, and without trust_ad nothing is.
    assert not (await resolver.tlsa("mx.plain.test")).secure
    untrusting = Resolver([dns.address], timeout=1.0, lifetime=2.0)
    assert not (await untrusting.tlsa("mx.dane.test")).secure
    # A validated "no such name" is secure too (no TLSA: DANE does not apply).
    nothing = await resolver.tlsa("nodane.dane.test")
    assert nothing.outcome is DnsOutcome.NXDOMAIN and nothing.secure


async def test_router_applies_dane_per_mx_host(dns: DnsServer) -> None:
    router = Router(validating(dns), dane=True)
    route = await router.lookup("dane.test")
    assert isinstance(route, Route)
    tls = {h.name: h.tls for h in route.hosts}
    assert tls["mx.dane.test"].mode is TLSMode.DANE and tls["mx.dane.test"].required
    assert [r.usage for r in tls["mx.dane.test"].tlsa] == [3]
    assert tls["mx2.dane.test"].mode is TLSMode.DANE
    assert tls["mx2.dane.test"].verify_names == ("mx2.dane.test", "dane.test")
    assert tls["mx3.dane.test"].mode is TLSMode.DANE_ENCRYPT and tls["mx3.dane.test"].required
    assert tls["nodane.dane.test"].mode is TLSMode.OPPORTUNISTIC
    assert router.report.count("dane.test", "tlsa", "tlsa-invalid") == 1

    # The unsigned zone's TLSA record is not trusted: no DANE there.
    plain = await router.lookup("plain.test")
    assert isinstance(plain, Route)
    assert plain.hosts[0].tls.mode is TLSMode.OPPORTUNISTIC
    assert dns.queries("_25._tcp.mx.plain.test", "TLSA") == 0

    with pytest.raises(ValueError, match="trust_ad"):
        Router(Resolver([dns.address]), dane=True)


async def presented_leaf(pki: TestPKI, directory: Path) -> bytes:
    """The certificate a real TLS server presenting ``pki``'s certificate sends."""
    with PolicyServer(directory, ["mx.dane.test"], pki=pki) as server:
        # DANE does not use the WebPKI: no CA and no host name check at the TLS layer.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        _, writer = await asyncio.open_connection(server.host, server.port, ssl=context)
        leaf: bytes = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        await writer.wait_closed()
    return leaf


async def test_chain_from_a_real_handshake_against_published_records(
    dns: DnsServer, mx_pki: TestPKI, other_pki: TestPKI, tmp_path: Path
) -> None:
    route = await Router(validating(dns), dane=True).lookup("dane.test")
    assert isinstance(route, Route)
    ee_records = route.hosts[0].tls.tlsa
    genuine = await presented_leaf(mx_pki, tmp_path / "genuine")
    impostor = await presented_leaf(other_pki, tmp_path / "impostor")
    assert verify_chain([genuine], ee_records).ok
    result = verify_chain([impostor], ee_records)
    assert not result.ok and result.result_type == "validation-failure"


def test_dane_ee_matches_the_leaf_only(mx_pki: TestPKI, other_pki: TestPKI) -> None:
    leaf, ca = der(mx_pki.cert_file), der(mx_pki.ca_file)
    for selector in (0, 1):
        for mtype in (0, 1, 2):
            record = tlsa(3, selector, mtype, leaf)
            result = verify_chain([leaf, ca], [record])
            assert result.ok and result.record == record
    # Another certificate, or the CA in the EE slot: no match.
    assert not verify_chain([der(other_pki.cert_file)], [tlsa(3, 1, 1, leaf)]).ok
    assert not verify_chain([leaf, ca], [tlsa(3, 1, 1, ca)]).ok
    # DANE-EE ignores names and dates (RFC 7672 3.1.1).
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=3650)
    assert verify_chain([leaf], [tlsa(3, 1, 1, leaf)], names=["wrong.test"], now=later).ok


def test_dane_ta_checks_signature_names_and_dates(mx_pki: TestPKI, other_pki: TestPKI) -> None:
    leaf, ca = der(mx_pki.cert_file), der(mx_pki.ca_file)
    record = tlsa(2, 0, 1, ca)
    assert verify_chain([leaf, ca], [record], names=["mx.dane.test"]).ok

    mismatch = verify_chain([leaf, ca], [record], names=["other.test"])
    assert not mismatch.ok and mismatch.result_type == "certificate-host-mismatch"

    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=3650)
    expired = verify_chain([leaf, ca], [record], names=["mx.dane.test"], now=later)
    assert not expired.ok and expired.result_type == "certificate-expired"

    # A leaf from another CA, sent with this CA: the signature check fails.
    forged = verify_chain([der(other_pki.cert_file), ca], [record], names=["mx.dane.test"])
    assert not forged.ok and "not signed" in forged.reason

    # TA not in the chain: a full-SPKI record (2 1 0) still anchors it by key.
    spki = tlsa(2, 1, 0, ca)
    assert verify_chain([leaf], [spki], names=["mx.dane.test"]).ok
    assert not verify_chain([der(other_pki.cert_file)], [spki], names=["mx.dane.test"]).ok
    # A hashed TA record cannot anchor a chain that omits the TA.
    assert not verify_chain([leaf], [tlsa(2, 1, 1, ca)], names=["mx.dane.test"]).ok


def test_unusable_records_and_bad_input(mx_pki: TestPKI) -> None:
    leaf = der(mx_pki.cert_file)
    pkix = [
        tlsa(0, 0, 1, leaf),
        tlsa(1, 1, 1, leaf),
        TLSARecord(3, 2, 1, b"x"),
        TLSARecord(3, 1, 3, b"x"),
    ]
    assert usable_tlsa(pkix) == ()
    result = verify_chain([leaf], pkix)
    assert not result.ok and result.result_type == "tlsa-invalid"
    assert not verify_chain([], [tlsa(3, 1, 1, leaf)]).ok
    garbage = verify_chain([b"not a certificate"], [tlsa(3, 1, 1, leaf)])
    assert not garbage.ok and "unparsable" in garbage.reason
