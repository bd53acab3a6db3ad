"""TLS peers for the tests: a small CA that issues certificates of any lifetime and
purpose, Python ``ssl`` server contexts, an SMTP-like ``ssl`` server, and a raw TLS server
that can put any bytes on the wire after (or instead of) the handshake."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.peers.ports import LOCALHOST


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def pem(obj: x509.Certificate | ec.EllipticCurvePrivateKey) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass
class MiniCA:
    """A CA that issues leaves with any lifetime and purpose (the session PKI in
    tests/peers/certs.py makes only currently valid server certificates)."""

    key: ec.EllipticCurvePrivateKey = field(default_factory=_key)
    name: x509.Name = field(
        default_factory=lambda: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mini CA")])
    )

    def __post_init__(self) -> None:
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=400))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )

    def issue(
        self,
        directory: Path,
        name: str,
        hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
        *,
        days: tuple[int, int] = (-1, 30),
        client: bool = False,
    ) -> tuple[Path, Path]:
        """A leaf for ``hosts`` valid from ``days[0]`` to ``days[1]`` days from now;
        returns its (cert, key) PEM paths."""
        key = _key()
        now = dt.datetime.now(dt.UTC)
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        purpose = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + dt.timedelta(days=days[0]))
            .not_valid_after(now + dt.timedelta(days=days[1]))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_file, key_file = directory / f"{name}.pem", directory / f"{name}.key"
        cert_file.write_bytes(pem(cert))
        key_file.write_bytes(pem(key))
        return cert_file, key_file

    def write(self, directory: Path) -> Path:
        path = directory / "mini-ca.pem"
        path.write_bytes(pem(self.cert))
        return path


def server_context(
    cert_file: Path, key_file: Path, *, max_version: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


# --------------------------------------------------------------------------- servers


@dataclass
class SmtpLikeServer:
    """An asyncio ``ssl`` server speaking just enough SMTP: greeting, 250 for every line,
    221 and close on QUIT. Records per connection whether TLS resumed and the client's
    certificate."""

    port: int
    resumed: list[bool] = field(default_factory=list)
    client_certs: list[dict[str, object] | None] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)


@contextlib.asynccontextmanager
async def smtp_like_server(ctx: ssl.SSLContext) -> AsyncIterator[SmtpLikeServer]:
    state = SmtpLikeServer(port=0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        obj = writer.get_extra_info("ssl_object")
        state.resumed.append(bool(obj.session_reused))
        state.client_certs.append(obj.getpeercert() or None)
        try:
            writer.write(b"220 ready\r\n")
            while line := await reader.readline():
                state.lines.append(line)
                if line.upper().startswith(b"QUIT"):
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    break
                writer.write(b"250 ok\r\n")
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, LOCALHOST, 0, ssl=ctx)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


Behaviour = Callable[
    [asyncio.StreamReader, asyncio.StreamWriter, ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO],
    Awaitable[None],
]


@contextlib.asynccontextmanager
async def raw_tls_server(
    ctx: ssl.SSLContext, behaviour: Behaviour, *, handshake: bool = True
) -> AsyncIterator[int]:
    """A server that does TLS through ``ssl.SSLObject`` over memory BIOs on a raw socket,
    so that after (or instead of) the handshake it can put any bytes on the wire."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(incoming, outgoing, server_side=True)
        try:
            while handshake:
                try:
                    obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    pass
                finally:
                    if out := outgoing.read():
                        writer.write(out)
                        await writer.drain()
                data = await reader.read(65536)
                if not data:
                    return
                incoming.write(data)
            await behaviour(reader, writer, obj, incoming, outgoing)
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, LOCALHOST, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def seal(obj: ssl.SSLObject, outgoing: ssl.MemoryBIO, data: bytes) -> bytes:
    obj.write(data)
    return outgoing.read()
