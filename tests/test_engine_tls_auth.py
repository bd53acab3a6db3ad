"""TLS modes and AUTH against aiosmtpd with a test CA: secure by default, and every
failure mode ends in a clear result with nothing sent."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

import fastsmtp
from fastsmtp.testing import CaptureServer
from tests.peers.certs import TestPKI, make_self_signed

USERS = {"ann": "s3cret"}


def authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    if isinstance(data, LoginPassword):
        ok = USERS.get(data.login.decode()) == data.password.decode()
        return AuthResult(success=ok, handled=False)
    return AuthResult(success=False, handled=False)


def message() -> fastsmtp.Message:
    return fastsmtp.Message(sender="ann@example.com", to="bob@example.org", subject="s", text="t")


@pytest.fixture
def starttls_server(pki: TestPKI) -> Iterator[CaptureServer]:
    with CaptureServer(
        tls_context=pki.server_context(),
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    ) as server:
        yield server


async def test_starttls_required_verifies_and_authenticates(
    starttls_server: CaptureServer, pki: TestPKI
) -> None:
    async with fastsmtp.Engine(
        "127.0.0.1",
        starttls_server.port,
        tls="starttls",
        ssl_context=pki.client_context(),
        username="ann",
        password="s3cret",
    ) as engine:
        (result,) = await engine.send(message())
    assert result.status == "accepted"
    assert len(starttls_server.wait_for(1)) == 1


async def test_wrong_password_fails_with_the_reply_and_no_retry_loop(
    starttls_server: CaptureServer, pki: TestPKI
) -> None:
    async with fastsmtp.Engine(
        "127.0.0.1",
        starttls_server.port,
        ssl_context=pki.client_context(),
        username="ann",
        password="wrong",
        max_attempts=5,
    ) as engine:
        results = await engine.send(message())
    assert [(r.status, r.code) for r in results] == [("failed", 535)]
    assert engine.stats.connections_opened == 0
    assert engine.stats.connection_failures == 1  # refused credentials are not retried
    assert starttls_server.messages == []


async def test_certificate_that_fails_verification_is_an_error(
    starttls_server: CaptureServer,
) -> None:
    # Default context: the test CA is not trusted, so verification must fail.
    for mode in ("starttls", "opportunistic"):
        async with fastsmtp.Engine(
            "127.0.0.1",
            starttls_server.port,
            tls=mode,  # type: ignore[arg-type]
        ) as engine:
            (result,) = await engine.send(message())
        assert result.status == "failed", mode
        assert "certificate" in result.text.lower()
    assert starttls_server.messages == []


async def test_required_starttls_not_offered_fails_everything_and_sends_nothing() -> None:
    with CaptureServer() as server:  # no TLS at all
        async with fastsmtp.Engine("127.0.0.1", server.port, tls="starttls") as engine:
            results = await engine.send(message())
        assert [r.status for r in results] == ["failed"]
        assert "STARTTLS" in results[0].text
        assert server.messages == []


async def test_opportunistic_without_starttls_sends_in_plaintext() -> None:
    with CaptureServer() as server:
        async with fastsmtp.Engine("127.0.0.1", server.port, tls="opportunistic") as engine:
            (result,) = await engine.send(message())
        assert result.status == "accepted"


async def test_credentials_never_sent_over_plaintext_unless_allowed() -> None:
    with CaptureServer(authenticator=authenticator, auth_require_tls=False) as server:
        async with fastsmtp.Engine(
            "127.0.0.1", server.port, tls="none", username="ann", password="s3cret"
        ) as engine:
            (result,) = await engine.send(message())
        assert result.status == "failed"
        assert "plaintext" in result.text
        assert server.messages == []
        async with fastsmtp.Engine(
            "127.0.0.1",
            server.port,
            tls="none",
            username="ann",
            password="s3cret",
            allow_plaintext_auth=True,
        ) as engine:
            (result,) = await engine.send(message())
        assert result.status == "accepted"


async def test_implicit_tls(pki: TestPKI) -> None:
    with CaptureServer(ssl_context=pki.server_context()) as server:
        async with fastsmtp.Engine(
            "127.0.0.1", server.port, tls="implicit", ssl_context=pki.client_context()
        ) as engine:
            (result,) = await engine.send(message())
        assert result.status == "accepted"


async def test_implicit_tls_untrusted_certificate(tmp_path: Path) -> None:
    untrusted = make_self_signed(tmp_path)
    with CaptureServer(ssl_context=untrusted.server_context()) as server:
        async with fastsmtp.Engine("127.0.0.1", server.port, tls="implicit") as engine:
            (result,) = await engine.send(message())
        assert result.status == "failed"
        assert server.messages == []


def test_default_context_verifies() -> None:
    engine = fastsmtp.Engine("127.0.0.1", 25)
    ctx = engine.config.make_ssl_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert engine.config.tls == "starttls"
