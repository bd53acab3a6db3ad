"""The engine with TLS in the core (rustls under the sans-IO connection), against real TLS
peers: aiosmtpd STARTTLS, Postfix STARTTLS with CHUNKING, stunnel4 in front of smtp-sink
(implicit TLS), the fault server over implicit TLS, and hostile TLS servers. The security
semantics are those of the ``ssl`` path: verified certificates and names, typed errors,
nothing sent when TLS fails; a caller's ``SSLContext`` is mapped onto the core's TLS when
it can be and kept on Python's ``ssl`` otherwise.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import fastsmtp
from fastsmtp.testing import CaptureServer
from tests.faultserver import Faults, FaultServer
from tests.peers.certs import TestPKI, make_self_signed
from tests.peers.postfix import PostfixInstance
from tests.peers.stunnel import Stunnel
from tests.tls_support import Behaviour, MiniCA, raw_tls_server, seal, server_context


def message(to: str = "bob@example.org") -> fastsmtp.Message:
    return fastsmtp.Message(sender="ann@example.com", to=[to], subject="s", text="t\n")


@pytest.fixture
def starttls_server(pki: TestPKI) -> Iterator[CaptureServer]:
    with CaptureServer(tls_context=pki.server_context(), require_starttls=True) as server:
        yield server


async def test_starttls_runs_in_the_core_and_new_connections_resume(
    starttls_server: CaptureServer, pki: TestPKI
) -> None:
    """A caller's context (the test CA) maps onto the core's TLS; every connection after
    the first resumes the TLS session instead of a full handshake."""
    async with fastsmtp.Engine(
        "127.0.0.1",
        starttls_server.port,
        ssl_context=pki.client_context(),
        max_messages_per_connection=1,
        connections=1,
    ) as engine:
        for i in range(4):
            (result,) = await engine.send(message(f"r{i}@example.org"))
            assert result.status == "accepted"
    assert len(starttls_server.wait_for(4)) == 4
    stats = engine.stats
    assert stats.tls_connections == stats.connections_opened == 4
    assert stats.tls_resumed == 3


async def test_implicit_tls_through_stunnel_to_smtp_sink(
    stunnel_sink: Stunnel, pki: TestPKI
) -> None:
    template = fastsmtp.Message(sender="bulk@example.com", subject="Hi {{ name }}", text="x\n")
    recipients = [{"address": f"u{i}@example.org", "name": f"U{i}"} for i in range(2000)]
    async with fastsmtp.Engine(
        *stunnel_sink.address,
        tls="implicit",
        ssl_context=pki.client_context(),
        connections=4,
    ) as engine:
        report = await engine.send_batch(template, recipients)
    assert report.accepted == 2000
    assert engine.stats.tls_connections == engine.stats.connections_opened >= 1


async def test_postfix_starttls_with_chunking_in_the_core(
    postfix: PostfixInstance, pki: TestPKI
) -> None:
    tag = uuid.uuid4().hex[:10]
    template = fastsmtp.Message(sender="bulk@example.com", subject="Hi", text="Body {{ n }}\n")
    recipients = [{"address": f"r-{tag}-{i}@example.org", "n": i} for i in range(60)]
    async with fastsmtp.Engine(
        *postfix.address, ssl_context=pki.client_context(), connections=2
    ) as engine:
        report = await engine.send_batch(template, recipients)
    assert report.accepted == 60
    assert engine.stats.tls_connections >= 1
    delivered = postfix.messages_for(f"r-{tag}-0@example.org")
    assert len(delivered) == 1


async def test_a_context_that_does_not_map_keeps_pythons_ssl(tmp_path: Path) -> None:
    """A pinned self-signed server certificate (not a CA) cannot be expressed to rustls:
    the engine keeps the ssl path for it, and it still verifies and sends."""
    pinned = make_self_signed(tmp_path, name="pinned")
    context = ssl.create_default_context(cafile=str(pinned.cert_file))
    with CaptureServer(tls_context=pinned.server_context(), require_starttls=True) as server:
        async with fastsmtp.Engine("127.0.0.1", server.port, ssl_context=context) as engine:
            (result,) = await engine.send(message())
    assert result.status == "accepted"
    assert engine.stats.tls_connections == 0  # Python's ssl carried it


async def test_a_certificate_for_another_name_is_a_typed_error_and_nothing_is_sent(
    starttls_server: CaptureServer, pki: TestPKI
) -> None:
    engine = fastsmtp.Engine(
        "127.0.0.1",
        starttls_server.port,
        ssl_context=pki.client_context(),
        server_hostname="mail.example.net",
    )
    with pytest.raises(fastsmtp.TLSCertificateError) as info:
        await engine.connect()
    assert info.value.kind == "certificate_wrong_name"
    assert isinstance(info.value, ssl.SSLCertVerificationError)
    async with engine:
        (result,) = await engine.send(message())
    assert result.status == "failed" and result.text.startswith("TLS:")
    assert starttls_server.messages == []


async def test_an_expired_certificate_is_refused(tmp_path: Path) -> None:
    ca = MiniCA()
    cert, key = ca.issue(tmp_path, "expired", days=(-30, -1))
    with CaptureServer(tls_context=server_context(cert, key), require_starttls=True) as server:
        context = ssl.create_default_context(cafile=str(ca.write(tmp_path)))
        async with fastsmtp.Engine(
            "127.0.0.1", server.port, ssl_context=context, max_attempts=1
        ) as engine:
            (result,) = await engine.send(message())
    assert result.status == "failed"
    assert "expired" in result.text.lower()
    assert server.messages == []


def garbage_after_greeting(data: bytes) -> Behaviour:
    async def behaviour(
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        obj: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
    ) -> None:
        writer.write(seal(obj, outgoing, b"220 hostile ESMTP\r\n") + data)
        await writer.drain()
        await reader.read(65536)

    return behaviour


@pytest.mark.parametrize(
    "injected",
    [
        pytest.param(b"250 plaintext after the handshake\r\n", id="plaintext"),
        pytest.param(b"\x17\x03\x03\x00\x20" + b"g" * 32, id="undecryptable-record"),
        pytest.param(b"\x16\x03\x03\x00\x04\x00\x00\x00\x00", id="cleartext-hello-request"),
    ],
)
async def test_garbage_after_the_handshake_fails_typed_and_does_not_hang(
    pki: TestPKI, injected: bytes
) -> None:
    ctx = server_context(pki.cert_file, pki.key_file)
    async with raw_tls_server(ctx, garbage_after_greeting(injected)) as port:
        engine = fastsmtp.Engine(
            "127.0.0.1",
            port,
            tls="implicit",
            ssl_context=pki.client_context(),
            max_attempts=2,
            retry_base_delay=0.01,
            timeout=3,
        )
        async with asyncio.timeout(15):
            with pytest.raises(fastsmtp.TLSError) as info:
                await engine.connect()
            async with engine:
                (result,) = await engine.send(message())
    assert info.value.kind == "peer_misbehaved"
    assert result.status == "failed" and "TLS" in result.text


async def test_fault_storm_over_implicit_tls(pki: TestPKI) -> None:
    """The storm of tests/test_engine_faults.py over TLS in the core: exactly one result
    per recipient, nothing stored twice, every acceptance stored."""
    storm = Faults(
        mail_451=0.01,
        rcpt_451=0.02,
        rcpt_550=0.02,
        data_451=0.02,
        data_554=0.01,
        disconnect_before_end=0.002,
        disconnect_after_end=0.002,
    )
    template = fastsmtp.Message(sender="bulk@example.com", subject="Hi", text="Body {{ name }}")
    recipients = [{"address": f"u{i}@example.org", "name": f"U{i}"} for i in range(2000)]
    results: list[fastsmtp.Result] = []
    for chunking in (True, False):
        results.clear()
        server = FaultServer(storm, seed=5, chunking=chunking, ssl=pki.server_context())
        async with server:
            async with fastsmtp.Engine(
                "127.0.0.1",
                server.port,
                tls="implicit",
                ssl_context=pki.client_context(),
                connections=4,
                max_attempts=4,
                retry_base_delay=0.005,
                retry_max_delay=0.05,
                timeout=5,
            ) as engine:
                await engine.send_batch(template, recipients, on_result=results.append)
        assert Counter(r.index for r in results) == Counter(range(2000))
        stored = server.stored_pairs()
        assert all(n == 1 for n in stored.values())
        for r in results:
            if r.status == "accepted":
                assert stored[(r.message_id, r.recipient)] == 1
            elif not r.in_doubt:
                assert stored[(r.message_id, r.recipient)] == 0
        assert engine.stats.tls_connections >= 1
        assert server.events["disconnect_after_end"] > 0
