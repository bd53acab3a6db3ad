"""Throw-away X.509 material for TLS tests against the real peers.

``make_test_ca`` builds a private CA plus a server certificate for ``127.0.0.1``/``localhost``
signed by it; clients that trust the CA verify the servers (Postfix, aiosmtpd) properly.
``make_self_signed`` builds a certificate nobody trusts, for "verification fails" tests.
Everything is written as PEM files so the C servers can load it too.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["DEFAULT_HOSTS", "TestPKI", "make_self_signed", "make_test_ca"]

DEFAULT_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost")

# Backdate a little so small clock differences between processes never matter.
_BACKDATE = dt.timedelta(hours=1)
_LIFETIME = dt.timedelta(days=30)


@dataclass(frozen=True)
class TestPKI:
    """PEM paths of a CA and one server certificate/key pair issued under it.

    For a self-signed certificate ``ca_file`` is the certificate itself.
    """

    __test__ = False  # not a pytest test class despite the name

    ca_file: Path
    cert_file: Path
    key_file: Path

    def client_context(self, *, check_hostname: bool = True) -> ssl.SSLContext:
        """An SSL client context that trusts only this PKI's CA (and verifies peers)."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file))
        ctx.check_hostname = check_hostname
        return ctx

    def server_context(self) -> ssl.SSLContext:
        """An SSL server context presenting this PKI's server certificate."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        return ctx


def _new_key() -> ec.EllipticCurvePrivateKey:
    # P-256 keys are generated in microseconds, unlike RSA; every TLS stack here accepts them.
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fastsmtp tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    # Postfix and Dovecot refuse nothing here, but keep keys private out of habit.
    os.chmod(path, 0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _server_builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    hosts: Sequence[str],
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _LIFETIME)
        .add_extension(_san(hosts), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
            critical=False,
        )
    )


def make_test_ca(
    directory: str | os.PathLike[str], hosts: Sequence[str] = DEFAULT_HOSTS
) -> TestPKI:
    """Create a CA and a server certificate for ``hosts`` signed by it, under ``directory``.

    Files: ``ca.pem``, ``server.pem`` and ``server.key``. The server certificate's
    subjectAltName lists ``hosts`` (IP addresses as iPAddress entries, the rest as DNS names),
    so passing other hosts gives a trusted certificate with a mismatching name.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    ca_key = _new_key()
    ca_name = _name("fastsmtp test CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    key = _new_key()
    cert = (
        _server_builder(_name(hosts[0]), ca_name, key, hosts)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # Python 3.13's VERIFY_X509_STRICT insists on the AKI extension.
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    pki = TestPKI(out / "ca.pem", out / "server.pem", out / "server.key")
    _write_cert(pki.ca_file, ca_cert)
    _write_cert(pki.cert_file, cert)
    _write_key(pki.key_file, key)
    return pki


def make_self_signed(
    directory: str | os.PathLike[str],
    hosts: Sequence[str] = DEFAULT_HOSTS,
    name: str = "untrusted",
) -> TestPKI:
    """Create a self-signed server certificate for ``hosts`` that no test CA vouches for.

    Files: ``NAME.pem`` and ``NAME.key``; the returned ``ca_file`` is the certificate itself,
    so only a client that explicitly pins it would accept it. Clients using another PKI's
    ``client_context()`` must fail verification against a server presenting it.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    key = _new_key()
    subject = _name(f"fastsmtp {name} self-signed")
    cert = (
        _server_builder(subject, subject, key, hosts)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = out / f"{name}.pem", out / f"{name}.key"
    _write_cert(cert_file, cert)
    _write_key(key_file, key)
    return TestPKI(cert_file, cert_file, key_file)
