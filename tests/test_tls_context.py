"""``map_ssl_context``: a caller's ``ssl.SSLContext`` becomes a ``TlsConfig`` that reaches
the same verdict as the context itself against real TLS servers, or the ``ssl`` path is
kept with a reason when the context holds something that cannot be read or mapped."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from fastsmtp import TLSError
from fastsmtp._tls_context import map_ssl_context
from tests.peers.certs import TestPKI
from tests.test_tls_session import (
    MiniCA,
    TlsClient,
    server_context,
    smtp_like_server,
)


def default() -> ssl.SSLContext:
    return ssl.create_default_context()


def no_verification() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def ssl_verdict(ctx: ssl.SSLContext, port: int, name: str) -> str:
    """What Python's ssl says: "ok", "cert" (verification failed) or "tls" (other)."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=name), 5
        )
    except ssl.SSLCertVerificationError:
        return "cert"
    except (ssl.SSLError, ConnectionError):  # asyncio's server may drop without an alert
        return "tls"
    await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return "ok"


async def mapped_verdict(ctx: ssl.SSLContext, port: int, name: str) -> str:
    mapping = map_ssl_context(ctx)
    assert mapping.config is not None, mapping.reason
    client = await TlsClient.connect(mapping.config, port, name)
    try:
        await client.handshake()
        await client.reply()
    except ssl.SSLCertVerificationError:  # TLSCertificateError is one
        return "cert"
    except TLSError:
        return "tls"
    finally:
        await client.close()
    return "ok"


@pytest.fixture(scope="module")
def expired_server(tmp_path_factory: pytest.TempPathFactory) -> tuple[MiniCA, Path, Path]:
    ca = MiniCA()
    directory = tmp_path_factory.mktemp("expired")
    cert, key = ca.issue(directory, "expired", days=(-30, -1))
    ca.write(directory)
    return ca, cert, key


CONTEXTS: dict[str, Callable[[TestPKI], ssl.SSLContext]] = {
    "system store": lambda pki: default(),
    "cafile": lambda pki: pki.client_context(),
    "cafile, no hostname check": lambda pki: pki.client_context(check_hostname=False),
    "cadata DER": lambda pki: ssl.create_default_context(
        cadata=ssl.PEM_cert_to_DER_cert(pki.ca_file.read_text())
    ),
    "CERT_NONE": lambda pki: no_verification(),
    "TLS 1.3 only": lambda pki: _with(pki.client_context(), minimum_version="TLSv1_3"),
    "TLS 1.2 only": lambda pki: _with(pki.client_context(), maximum_version="TLSv1_2"),
    "OP_NO_TLSv1_3": lambda pki: _options(pki.client_context(), ssl.OP_NO_TLSv1_3),
}


def _with(ctx: ssl.SSLContext, **versions: str) -> ssl.SSLContext:
    for attribute, name in versions.items():
        setattr(ctx, attribute, ssl.TLSVersion[name])
    return ctx


def _options(ctx: ssl.SSLContext, option: int) -> ssl.SSLContext:
    # Deprecated since 3.10, still found in callers' code.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.options |= option
    return ctx


@pytest.mark.parametrize("context", list(CONTEXTS))
async def test_a_mapped_context_reaches_the_same_verdicts_as_ssl(
    pki: TestPKI,
    untrusted_pki: TestPKI,
    expired_server: tuple[MiniCA, Path, Path],
    context: str,
) -> None:
    ctx = CONTEXTS[context](pki)
    _, expired_cert, expired_key = expired_server
    servers = {
        "good": server_context(pki.cert_file, pki.key_file),
        "good, TLS 1.2 only": server_context(
            pki.cert_file, pki.key_file, max_version=ssl.TLSVersion.TLSv1_2
        ),
        "untrusted": server_context(untrusted_pki.cert_file, untrusted_pki.key_file),
        "expired": server_context(expired_cert, expired_key),
    }
    verdicts: dict[tuple[str, str], tuple[str, str]] = {}
    for server_name, server_ctx in servers.items():
        async with smtp_like_server(server_ctx) as server:
            for name in ("127.0.0.1", "mx.example.org"):
                expected = await ssl_verdict(ctx, server.port, name)
                got = await mapped_verdict(ctx, server.port, name)
                verdicts[server_name, name] = (expected, got)
    assert all(e == g for e, g in verdicts.values()), verdicts
    # The matrix is not trivial: every context but the system store (no public CA on
    # loopback) accepts something, and all but CERT_NONE refuse something.
    outcomes = {e for e, _ in verdicts.values()}
    assert context == "system store" or "ok" in outcomes
    assert context == "CERT_NONE" or outcomes - {"ok"}


def test_the_default_context_maps_with_verification_on() -> None:
    mapping = map_ssl_context(default())
    assert mapping.reason is None and mapping.config is not None
    assert mapping.config.verify and mapping.config.check_hostname
    lax = map_ssl_context(no_verification()).config
    assert lax is not None and not lax.verify and not lax.check_hostname


def _crl_checks(pki: TestPKI) -> ssl.SSLContext:
    ctx = pki.client_context()
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return ctx


def _ciphers(pki: TestPKI) -> ssl.SSLContext:
    ctx = pki.client_context()
    ctx.set_ciphers("ECDHE+AESGCM")  # no ChaCha20 in TLS 1.2
    return ctx


def _keylog(pki: TestPKI) -> ssl.SSLContext:
    ctx = pki.client_context()
    ctx.keylog_filename = str(pki.ca_file.parent / "keylog.txt")
    return ctx


def _capath(pki: TestPKI) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(capath=str(pki.ca_file.parent))
    return ctx


def _old_tls(pki: TestPKI) -> ssl.SSLContext:
    ctx = pki.client_context()
    with warnings.catch_warnings():  # deprecated, and exactly what this case is about
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
    return ctx


FALLBACKS: dict[str, tuple[Callable[[TestPKI, TestPKI], ssl.SSLContext], str]] = {
    "CRL checks": (lambda pki, _: _crl_checks(pki), "verify_flags"),
    "cipher list": (lambda pki, _: _ciphers(pki), "CHACHA20"),
    "key log": (lambda pki, _: _keylog(pki), "keylog_filename"),
    "CA directory": (lambda pki, _: _capath(pki), "CA directory"),
    "nothing trusted": (lambda *_: ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), "no CA"),
    "TLS 1.1": (lambda pki, _: _old_tls(pki), "below TLS 1.2"),
    "pinned self-signed": (
        lambda _, untrusted: ssl.create_default_context(cafile=untrusted.ca_file),
        "non-CA",
    ),
}


@pytest.mark.parametrize("case", list(FALLBACKS))
def test_what_cannot_be_read_or_mapped_keeps_the_ssl_path(
    pki: TestPKI, untrusted_pki: TestPKI, case: str
) -> None:
    make, reason = FALLBACKS[case]
    mapping = map_ssl_context(make(pki, untrusted_pki))
    assert mapping.config is None
    assert mapping.reason is not None and reason in mapping.reason


async def test_a_client_certificate_is_passed_alongside_the_context(
    tmp_path: Path, pki: TestPKI
) -> None:
    ca = MiniCA()
    cert, key = ca.issue(tmp_path, "client.example", ("client.example",), client=True)
    ctx = pki.client_context()
    ctx.load_cert_chain(cert, key)
    server_ctx = server_context(pki.cert_file, pki.key_file)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_verify_locations(ca.write(tmp_path))
    async with smtp_like_server(server_ctx) as server:
        # The certificate inside ctx is invisible; given again, it is presented.
        mapping = map_ssl_context(ctx, client_cert=cert, client_key=key)
        assert mapping.config is not None
        client = await TlsClient.connect(mapping.config, server.port)
        await client.handshake()
        assert await client.reply() == b"220 ready\r\n"
        await client.close()
    assert server.client_certs[0] is not None
