"""fastsmtp's Rust TLS session (``TlsSession``) over real sockets against real TLS peers:
Python ``ssl`` servers (asyncio) with the test PKI, ``stunnel4`` in front of ``smtp-sink``,
Postfix STARTTLS (the SMTP part driven by hand), ``openssl s_server`` renegotiating, and
raw servers that misbehave on purpose. Every failure must be a typed ``TLSError``, never a
hang or a panic.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fastsmtp import TLSCertificateError, TLSConfigError, TLSError
from fastsmtp._fastsmtp import TlsConfig, TlsSession
from tests.peers.certs import TestPKI
from tests.peers.ports import LOCALHOST, free_port, wait_for_port
from tests.peers.postfix import PostfixInstance
from tests.peers.stunnel import Stunnel
from tests.tls_support import (
    Behaviour,
    MiniCA,
    pem,
    raw_tls_server,
    seal,
    server_context,
    smtp_like_server,
)

TIMEOUT = 5.0
REPLY_END = re.compile(rb"(?:^|\r\n)\d{3} [^\r\n]*\r\n$")

# --------------------------------------------------------------------------- the client


class TlsClient:
    """A TlsSession over an asyncio stream: the test's stand-in for the engine, one
    ``feed`` per socket read and one write per ``data_to_send``."""

    def __init__(
        self, session: TlsSession, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.session = session
        self.reader = reader
        self.writer = writer
        self.plain = bytearray()
        self.writes: list[bytes] = []

    @classmethod
    async def connect(cls, config: TlsConfig, port: int, server_name: str = LOCALHOST) -> TlsClient:
        reader, writer = await asyncio.open_connection(LOCALHOST, port)
        return cls(TlsSession(config, server_name), reader, writer)

    async def flush(self) -> None:
        data = self.session.data_to_send()
        if data:
            self.writes.append(data)
            self.writer.write(data)
            await self.writer.drain()

    async def read_once(self) -> bool:
        """One socket read fed to the session; False at end of file (``eof()`` raises
        if that is an error)."""
        data = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
        if not data:
            self.session.eof()
            return False
        self.plain += self.session.feed(data)
        await self.flush()
        return True

    async def handshake(self) -> None:
        await self.flush()
        while not self.session.handshake_done:
            await self.read_once()

    async def reply(self) -> bytes:
        """The next complete SMTP reply (all lines of a multi-line one)."""
        while not REPLY_END.search(self.plain):
            if not await self.read_once():
                raise AssertionError(f"EOF before a complete reply: {bytes(self.plain)!r}")
        reply, self.plain = bytes(self.plain), bytearray()
        return reply

    async def command(self, line: bytes) -> bytes:
        self.session.send(line)
        await self.flush()
        return await self.reply()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.session.close()
            await self.flush()
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def smtp_transaction(client: TlsClient, rcpt: str, body: bytes) -> None:
    """One message over an established session, lock-step, every reply checked."""
    assert (await client.command(b"MAIL FROM:<ann@example.com>\r\n")).startswith(b"250")
    assert (await client.command(f"RCPT TO:<{rcpt}>\r\n".encode())).startswith(b"250")
    assert (await client.command(b"DATA\r\n")).startswith(b"354")
    assert (await client.command(body + b"\r\n.\r\n")).startswith(b"250")


def message_body(subject: str) -> bytes:
    return (
        f"From: ann@example.com\r\nTo: bob@example.org\r\nSubject: {subject}\r\n\r\n".encode()
        + b"x" * 1200
    )


# --------------------------------------------------------------------------- certificates


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def config(pki: TestPKI) -> TlsConfig:
    return TlsConfig(ca_file=pki.ca_file)


@pytest.fixture(scope="module")
def mini_ca() -> MiniCA:
    return MiniCA()


# --------------------------------------------------------------------------- Python ssl


@pytest.mark.parametrize(
    ("max_version", "expected"),
    [(None, "TLSv1.3"), (ssl.TLSVersion.TLSv1_2, "TLSv1.2")],
)
async def test_an_smtp_exchange_over_a_python_ssl_server(
    pki: TestPKI, config: TlsConfig, max_version: ssl.TLSVersion | None, expected: str
) -> None:
    ctx = server_context(pki.cert_file, pki.key_file, max_version=max_version)
    async with smtp_like_server(ctx) as server:
        client = await TlsClient.connect(config, server.port, "127.0.0.1")
        await client.handshake()
        assert client.session.version == expected
        assert client.session.cipher
        leaf = x509.load_pem_x509_certificate(pki.cert_file.read_bytes())
        assert client.session.peer_certificates[0] == leaf.public_bytes(serialization.Encoding.DER)
        assert await client.reply() == b"220 ready\r\n"
        assert await client.command(b"EHLO client.example\r\n") == b"250 ok\r\n"
        assert await client.command(b"QUIT\r\n") == b"221 bye\r\n"
        await client.close()
    assert server.lines == [b"EHLO client.example\r\n", b"QUIT\r\n"]


async def test_a_pipelined_burst_goes_out_as_one_record(pki: TestPKI, config: TlsConfig) -> None:
    async with smtp_like_server(server_context(pki.cert_file, pki.key_file)) as server:
        client = await TlsClient.connect(config, server.port)
        await client.handshake()
        await client.reply()
        client.writes.clear()
        commands = [f"RCPT TO:<r{i}@example.org>\r\n".encode() for i in range(30)]
        for line in commands:
            client.session.send(line)
        await client.flush()
        assert len(client.writes) == 1
        # One TLS 1.3 application-data record: 5-byte header + ciphertext, nothing else.
        wire = client.writes[0]
        assert wire[0] == 23 and int.from_bytes(wire[3:5]) == len(wire) - 5
        while len(server.lines) < 30:
            await client.read_once()
        assert server.lines == commands
        await client.close()


@pytest.mark.parametrize("max_version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_a_second_connection_resumes_the_session(
    pki: TestPKI, max_version: ssl.TLSVersion
) -> None:
    config = TlsConfig(ca_file=pki.ca_file)  # a fresh session cache
    ctx = server_context(pki.cert_file, pki.key_file, max_version=max_version)
    async with smtp_like_server(ctx) as server:
        for _ in range(3):
            client = await TlsClient.connect(config, server.port)
            await client.handshake()
            # TLS 1.3 tickets arrive after the handshake, with the greeting.
            assert await client.reply() == b"220 ready\r\n"
            assert await client.command(b"QUIT\r\n") == b"221 bye\r\n"
            resumed = client.session.resumed
            assert client.session.peer_certificates  # kept from the first handshake
            await client.close()
        assert resumed
    assert server.resumed == [False, True, True]


async def test_sessions_of_another_config_do_not_resume(pki: TestPKI) -> None:
    async with smtp_like_server(server_context(pki.cert_file, pki.key_file)) as server:
        for _ in range(2):
            client = await TlsClient.connect(TlsConfig(ca_file=pki.ca_file), server.port)
            await client.handshake()
            await client.reply()
            assert not client.session.resumed
            await client.close()
    assert server.resumed == [False, False]


async def test_resumption_off_means_full_handshakes(pki: TestPKI) -> None:
    config = TlsConfig(ca_file=pki.ca_file, resumption=False)
    async with smtp_like_server(server_context(pki.cert_file, pki.key_file)) as server:
        for _ in range(2):
            client = await TlsClient.connect(config, server.port)
            await client.handshake()
            await client.reply()
            await client.close()
    assert server.resumed == [False, False]


@pytest.mark.parametrize("server_name", ["127.0.0.1", "localhost"])
async def test_host_names_and_ip_addresses_are_checked(
    pki: TestPKI, config: TlsConfig, server_name: str
) -> None:
    async with smtp_like_server(server_context(pki.cert_file, pki.key_file)) as server:
        client = await TlsClient.connect(config, server.port, server_name)
        await client.handshake()
        assert await client.reply() == b"220 ready\r\n"
        await client.close()


async def expect_tls_error(config: TlsConfig, port: int, server_name: str = LOCALHOST) -> TLSError:
    client = await TlsClient.connect(config, port, server_name)
    try:
        with pytest.raises(TLSError) as info:
            await client.handshake()
            await client.reply()
    finally:
        await client.close()
    return info.value


async def test_a_certificate_for_another_name_is_refused(pki: TestPKI, config: TlsConfig) -> None:
    async with smtp_like_server(server_context(pki.cert_file, pki.key_file)) as server:
        error = await expect_tls_error(config, server.port, "mx.example.org")
        # A name mismatch is forgiven only with check_hostname=False.
        lax = TlsConfig(ca_file=pki.ca_file, check_hostname=False)
        client = await TlsClient.connect(lax, server.port, "mx.example.org")
        await client.handshake()
        assert await client.reply() == b"220 ready\r\n"
        await client.close()
    assert isinstance(error, TLSCertificateError)
    assert isinstance(error, ssl.SSLCertVerificationError)  # as the ssl path raised
    assert error.kind == "certificate_wrong_name"
    assert error.verify_code == 62
    assert "not valid for the server name" in str(error)


async def test_an_unknown_ca_is_refused_unless_verification_is_off(
    untrusted_pki: TestPKI, config: TlsConfig
) -> None:
    ctx = server_context(untrusted_pki.cert_file, untrusted_pki.key_file)
    async with smtp_like_server(ctx) as server:
        error = await expect_tls_error(config, server.port)
        chain_only = await expect_tls_error(
            TlsConfig(ca_file=config_ca(untrusted_pki, other=True), check_hostname=False),
            server.port,
        )
        client = await TlsClient.connect(TlsConfig(verify=False), server.port)
        await client.handshake()
        assert await client.reply() == b"220 ready\r\n"
        await client.close()
    assert isinstance(error, TLSCertificateError)
    assert error.kind == "certificate_unknown_ca"
    assert chain_only.kind == "certificate_unknown_ca"


def config_ca(pki: TestPKI, *, other: bool) -> Path:
    """A CA file that does (other=False) or does not (other=True) vouch for ``pki``."""
    if not other:
        return pki.ca_file
    path = pki.ca_file.parent / "other-ca.pem"
    if not path.exists():
        path.write_bytes(pem(MiniCA().cert))
    return path


@pytest.mark.parametrize(("days", "word"), [((-30, -1), "expired"), ((1, 30), "not yet valid")])
async def test_a_certificate_outside_its_validity_is_refused(
    tmp_path: Path, mini_ca: MiniCA, days: tuple[int, int], word: str
) -> None:
    cert, key = mini_ca.issue(tmp_path, "dated", days=days)
    config = TlsConfig(ca_file=mini_ca.write(tmp_path))
    async with smtp_like_server(server_context(cert, key)) as server:
        error = await expect_tls_error(config, server.port)
    assert isinstance(error, TLSCertificateError)
    assert error.kind == "certificate_expired"
    assert word in str(error)


async def test_ca_data_in_pem_or_der_replaces_the_system_store(pki: TestPKI) -> None:
    pem = pki.ca_file.read_text()
    der = ssl.PEM_cert_to_DER_cert(pem)
    async with smtp_like_server(server_context(pki.cert_file, pki.key_file)) as server:
        for config in (TlsConfig(ca_data=pem), TlsConfig(ca_data=der)):
            client = await TlsClient.connect(config, server.port)
            await client.handshake()
            assert await client.reply() == b"220 ready\r\n"
            await client.close()
        # The system store does not know the test CA.
        error = await expect_tls_error(TlsConfig(), server.port)
    assert error.kind == "certificate_unknown_ca"


async def test_a_client_certificate_is_presented_when_the_server_asks(
    tmp_path: Path, pki: TestPKI, mini_ca: MiniCA
) -> None:
    cert, key = mini_ca.issue(tmp_path, "client.example", ("client.example",), client=True)
    ctx = server_context(pki.cert_file, pki.key_file)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(mini_ca.write(tmp_path))
    async with smtp_like_server(ctx) as server:
        config = TlsConfig(ca_file=pki.ca_file, client_cert=cert, client_key=key)
        client = await TlsClient.connect(config, server.port)
        await client.handshake()
        assert await client.reply() == b"220 ready\r\n"
        await client.close()
        # Cert and key in one file, as ssl.load_cert_chain(certfile) accepts.
        both = tmp_path / "both.pem"
        both.write_bytes(cert.read_bytes() + key.read_bytes())
        client = await TlsClient.connect(
            TlsConfig(ca_file=pki.ca_file, client_cert=both), server.port
        )
        await client.handshake()
        assert await client.reply() == b"220 ready\r\n"
        await client.close()

    # Without one, the server refuses with an alert. TLS 1.3 finishes the client's side of
    # the handshake first, so the alert comes with the first read after it. (asyncio's ssl
    # server drops the connection without flushing the alert; the raw server sends it.)
    async def never(*_: object) -> None:
        raise AssertionError("the handshake should have failed")

    async with raw_tls_server(ctx, never) as port:
        error = await expect_tls_error(TlsConfig(ca_file=pki.ca_file), port)
    subject = server.client_certs[0]
    assert subject is not None
    assert subject["subject"] == ((("commonName", "client.example"),),)
    assert error.kind == "alert_received"
    assert error.alert == "certificate_required"


def test_bad_settings_fail_before_any_connection(tmp_path: Path, pki: TestPKI) -> None:
    with pytest.raises(FileNotFoundError):
        TlsConfig(ca_file=tmp_path / "missing.pem")
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(TLSConfigError, match="no PEM certificate"):
        TlsConfig(ca_file=tmp_path / "junk.pem")
    with pytest.raises(TLSConfigError):
        TlsConfig(ca_data=b"\x30\x82\xff")
    with pytest.raises(TLSConfigError, match="private key"):
        TlsConfig(ca_file=pki.ca_file, client_cert=pki.cert_file)  # no key anywhere
    with pytest.raises(ValueError, match="check_hostname"):
        TlsConfig(verify=False, check_hostname=True)
    with pytest.raises(ValueError, match="min_version"):
        TlsConfig(min_version="TLSv1.1")  # type: ignore[arg-type]
    with pytest.raises(TLSConfigError):
        TlsConfig(min_version="TLSv1.3", max_version="TLSv1.2")
    with pytest.raises(TLSConfigError, match="server name"):
        TlsSession(TlsConfig(ca_file=pki.ca_file), "not a host name")
    assert isinstance(TLSConfigError("x"), ValueError)


# --------------------------------------------------------------------------- hostile peers


def after_handshake_send(data: bytes) -> Behaviour:
    async def behaviour(
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        obj: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
    ) -> None:
        writer.write(seal(obj, outgoing, b"220 ready\r\n") + data)
        await writer.drain()
        await reader.read(65536)  # until the client gives up

    return behaviour


@pytest.mark.parametrize(
    "injected",
    [
        pytest.param(b"220 and now some plaintext\r\n", id="plaintext"),
        pytest.param(b"\x17\x03\x03\x00\x20" + b"g" * 32, id="undecryptable-record"),
        pytest.param(b"\x16\x03\x03\x00\x04\x00\x00\x00\x00", id="cleartext-hello-request"),
        pytest.param(b"\x17\x03\x03\xff\xff", id="oversized-record-header"),
    ],
)
@pytest.mark.parametrize("max_version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_garbage_after_the_handshake_is_a_protocol_error(
    pki: TestPKI, config: TlsConfig, injected: bytes, max_version: ssl.TLSVersion
) -> None:
    ctx = server_context(pki.cert_file, pki.key_file, max_version=max_version)
    async with raw_tls_server(ctx, after_handshake_send(injected)) as port:
        client = await TlsClient.connect(config, port)
        with pytest.raises(TLSError) as info:
            # (TLS 1.2: the server's last flight, the 220 and the garbage may come in one read.)
            await client.handshake()
            while True:
                await client.read_once()
        await client.close()
    assert info.value.kind == "peer_misbehaved"
    assert client.session.handshake_done
    assert b"plaintext" not in client.plain


async def test_a_record_cut_off_by_the_close_is_truncation(pki: TestPKI, config: TlsConfig) -> None:
    async def behaviour(
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        obj: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
    ) -> None:
        record = seal(obj, outgoing, b"250 this reply never completes\r\n")
        writer.write(record[: len(record) - 7])
        await writer.drain()

    async with raw_tls_server(server_context(pki.cert_file, pki.key_file), behaviour) as port:
        client = await TlsClient.connect(config, port)
        await client.handshake()
        with pytest.raises(TLSError) as info:
            while await client.read_once():
                pass
        await client.close()
    assert info.value.kind == "truncated"
    assert client.plain == b""


@pytest.mark.parametrize("cut", ["nothing", "half-flight"])
async def test_a_server_that_stops_mid_handshake(pki: TestPKI, config: TlsConfig, cut: str) -> None:
    async def behaviour(
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        obj: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
    ) -> None:
        incoming.write(await reader.read(65536))  # the ClientHello
        with contextlib.suppress(ssl.SSLWantReadError):
            obj.do_handshake()
        flight = outgoing.read()
        if cut == "half-flight":
            writer.write(flight[: len(flight) // 2])
            await writer.drain()
        await asyncio.sleep(0.05)

    ctx = server_context(pki.cert_file, pki.key_file)
    async with raw_tls_server(ctx, behaviour, handshake=False) as port:
        error = await expect_tls_error(config, port)
    assert error.kind == "closed_during_handshake"


async def test_a_server_that_is_not_tls_at_all(config: TlsConfig) -> None:
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 plaintext SMTP server ESMTP\r\n")
        await writer.drain()
        await reader.read(65536)
        writer.close()

    server = await asyncio.start_server(greet, LOCALHOST, 0)
    try:
        error = await expect_tls_error(config, server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()
    assert error.kind == "peer_misbehaved"


@contextlib.contextmanager
def openssl_s_server(pki: TestPKI) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """``openssl s_server`` over TLS 1.2: a line "R" on its stdin makes it renegotiate."""
    port = free_port()
    proc = subprocess.Popen(
        [
            "openssl",
            "s_server",
            "-tls1_2",
            "-accept",
            f"{LOCALHOST}:{port}",
            "-cert",
            str(pki.cert_file),
            "-key",
            str(pki.key_file),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port(LOCALHOST, port, timeout=10)
        yield port, proc
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stdin is not None:
            proc.stdin.close()


async def test_a_renegotiation_request_is_refused_with_a_typed_error(
    pki: TestPKI, config: TlsConfig
) -> None:
    with openssl_s_server(pki) as (port, proc):
        client = await TlsClient.connect(config, port, "127.0.0.1")
        await client.handshake()
        assert client.session.version == "TLSv1.2"
        assert proc.stdin is not None
        proc.stdin.write(b"R\n")  # s_server: SSL_renegotiate, sends an encrypted HelloRequest
        proc.stdin.flush()
        with pytest.raises(TLSError) as info:
            while await client.read_once():
                pass
        await client.close()
    # rustls answers the HelloRequest with a no_renegotiation warning, which OpenSSL
    # (waiting for a ClientHello) turns into a fatal handshake_failure.
    assert client.writes[-1][0] == 21  # our reply to the HelloRequest: an alert record
    assert info.value.kind == "alert_received"
    assert info.value.alert == "handshake_failure"


# --------------------------------------------------------------------------- stunnel, Postfix


async def test_implicit_tls_through_stunnel_to_smtp_sink(
    stunnel_sink: Stunnel, pki: TestPKI
) -> None:
    config = TlsConfig(ca_file=pki.ca_file)  # a fresh session cache
    resumed = []
    for i in range(2):
        client = await TlsClient.connect(config, stunnel_sink.port, "127.0.0.1")
        await client.handshake()
        assert (await client.reply()).startswith(b"220 ")
        ehlo = await client.command(b"EHLO client.example\r\n")
        assert b"250-PIPELINING" in ehlo
        await smtp_transaction(client, "bob@example.org", message_body(f"over stunnel {i}"))
        assert (await client.command(b"QUIT\r\n")).startswith(b"221")
        resumed.append(client.session.resumed)
        await client.close()
    assert resumed == [False, True]


async def test_starttls_with_postfix_by_hand(postfix: PostfixInstance, pki: TestPKI) -> None:
    config = TlsConfig(ca_file=pki.ca_file)  # a fresh session cache
    rcpt = f"tls-by-hand-{uuid.uuid4().hex[:8]}@example.org"
    resumed = []
    for i in range(2):
        reader, writer = await asyncio.open_connection(*postfix.address)

        async def plain_reply(reader: asyncio.StreamReader = reader) -> bytes:
            lines = b""
            while not REPLY_END.search(lines):
                line = await asyncio.wait_for(reader.readline(), TIMEOUT)
                assert line, "EOF in plaintext"
                lines += line
            return lines

        assert (await plain_reply()).startswith(b"220 ")
        writer.write(b"EHLO client.example\r\n")
        assert b"STARTTLS" in await plain_reply()
        writer.write(b"STARTTLS\r\n")
        assert (await plain_reply()).startswith(b"220 ")
        # RFC 3207 section 4.2: anything read before TLS is forgotten; the stream reader
        # holds nothing more (Postfix sends nothing after its 220).
        client = TlsClient(TlsSession(config, "127.0.0.1"), reader, writer)
        await client.handshake()
        ehlo = await client.command(b"EHLO client.example\r\n")
        assert b"STARTTLS" not in ehlo and b"250 " in ehlo
        await smtp_transaction(client, rcpt, message_body(f"STARTTLS by hand {i}"))
        assert (await client.command(b"QUIT\r\n")).startswith(b"221")
        resumed.append(client.session.resumed)
        await client.close()
    delivered = postfix.messages_for(rcpt, expected=2)
    assert sorted(b"STARTTLS by hand" in m for m in delivered) == [True, True]
    assert resumed == [False, True]  # Postfix's tlsmgr keeps sessions for resumption
