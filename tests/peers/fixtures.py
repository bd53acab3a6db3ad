"""Pytest fixtures for the real peers; ``tests/conftest.py`` does
``from tests.peers.fixtures import *``. All fixtures are plain (sync) pytest fixtures, so
they work with any async plugin and event loop.

* ``pki`` (session): test CA + server cert for 127.0.0.1/localhost.
* ``untrusted_pki`` (session): a self-signed cert no ``pki`` client trusts.
* ``postfix`` (session): Postfix with STARTTLS offered (``tls="may"``, ``pki``'s cert), no
  AUTH. Shared by many tests: use unique recipient addresses and ``log_offset()``.
* ``postfix_factory`` (function): ``postfix_factory(**PostfixInstance kwargs)`` starts a
  dedicated instance (TLS certs default to ``pki``); all are stopped at teardown.
* ``smtp_sink`` (session): smtp-sink without dumping. ``smtp_sink_factory`` (function) for
  ``dump=True`` or reply options.
* ``stunnel_sink`` (session): ``stunnel4`` (implicit TLS, ``pki``'s cert) in front of
  ``smtp_sink``. ``stunnel_factory`` (function): ``stunnel_factory(backend, **Stunnel kwargs)``.
* ``capture_server`` (function): ``capture_server(**CaptureServer kwargs)`` starts aiosmtpd
  capture servers; all are stopped at teardown.
* ``dns_server`` (function): ``dns_server(zones, dead_zones=...)`` starts unbound serving
  those zones (``tests.peers.dns``); all are stopped at teardown.
* ``policy_server`` (function): ``policy_server(hosts, policies)`` starts an HTTPS server
  for MTA-STS policies with its own test CA (``tests.peers.https``).

Postfix needs root and the Debian ``postfix``/``dovecot-core`` packages
(``.ci/install-peers.sh``); without them the Postfix/sink fixtures skip the test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .aiosmtpd_server import CaptureServer
from .certs import TestPKI, make_self_signed, make_test_ca
from .dns import UNBOUND, DnsServer
from .https import PolicyServer
from .postfix import POSTFIX, PostfixInstance, claim_dir, scratch_root
from .sink import SMTP_SINK, SmtpSink
from .stunnel import STUNNEL, Stunnel

__all__ = [
    "capture_server",
    "dns_server",
    "pki",
    "policy_server",
    "postfix",
    "postfix_factory",
    "smtp_sink",
    "smtp_sink_factory",
    "stunnel_factory",
    "stunnel_sink",
    "untrusted_pki",
]


def _require_postfix() -> None:
    if not os.path.exists(POSTFIX) or shutil.which("postconf") is None:
        pytest.skip("Postfix is not installed (run .ci/install-peers.sh as root)")
    if os.geteuid() != 0:
        pytest.skip("a private Postfix instance needs root")


def _require_sink() -> None:
    if not os.path.exists(SMTP_SINK):
        pytest.skip("smtp-sink is not installed (Debian package postfix)")
    if os.geteuid() != 0:
        pytest.skip("smtp-sink -u nobody needs root")


@contextlib.contextmanager
def _scratch(prefix: str) -> Iterator[Path]:
    # Own temp dir (not tmp_path_factory, which keeps the last runs' dirs around).
    path = Path(tempfile.mkdtemp(prefix=f"fastsmtp-{prefix}-", dir=scratch_root()))
    claim_dir(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pki() -> Iterator[TestPKI]:
    with _scratch("pki") as path:
        yield make_test_ca(path)


@pytest.fixture(scope="session")
def untrusted_pki() -> Iterator[TestPKI]:
    with _scratch("untrusted") as path:
        yield make_self_signed(path)


@pytest.fixture(scope="session")
def postfix(pki: TestPKI) -> Iterator[PostfixInstance]:
    _require_postfix()
    with PostfixInstance(tls="may", pki=pki) as instance:
        yield instance


@pytest.fixture
def postfix_factory(pki: TestPKI) -> Iterator[Callable[..., PostfixInstance]]:
    _require_postfix()
    started: list[PostfixInstance] = []

    def make(**kwargs: Any) -> PostfixInstance:
        if kwargs.get("tls", "none") != "none":
            kwargs.setdefault("pki", pki)
        instance = PostfixInstance(**kwargs)
        started.append(instance)  # before start(): stop() also cleans a failed start
        return instance.start()

    try:
        yield make
    finally:
        for instance in started:
            instance.stop()


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    _require_sink()
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def smtp_sink_factory() -> Iterator[Callable[..., SmtpSink]]:
    _require_sink()
    started: list[SmtpSink] = []

    def make(**kwargs: Any) -> SmtpSink:
        sink = SmtpSink(**kwargs)
        started.append(sink)
        return sink.start()

    try:
        yield make
    finally:
        for sink in started:
            sink.stop()


def _require_stunnel() -> None:
    if not os.path.exists(STUNNEL):
        pytest.skip("stunnel4 is not installed (run .ci/install-peers.sh as root)")


@pytest.fixture(scope="session")
def stunnel_sink(smtp_sink: SmtpSink, pki: TestPKI) -> Iterator[Stunnel]:
    _require_stunnel()
    with Stunnel(smtp_sink.address, pki) as tunnel:
        yield tunnel


@pytest.fixture
def stunnel_factory(pki: TestPKI) -> Iterator[Callable[..., Stunnel]]:
    _require_stunnel()
    started: list[Stunnel] = []

    def make(backend: tuple[str, int], **kwargs: Any) -> Stunnel:
        kwargs.setdefault("pki", pki)
        tunnel = Stunnel(backend, **kwargs)
        started.append(tunnel)
        return tunnel.start()

    try:
        yield make
    finally:
        for tunnel in started:
            tunnel.stop()


@pytest.fixture
def capture_server() -> Iterator[Callable[..., CaptureServer]]:
    started: list[CaptureServer] = []

    def make(*args: Any, **kwargs: Any) -> CaptureServer:
        server = CaptureServer(*args, **kwargs)
        started.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def dns_server() -> Iterator[Callable[..., DnsServer]]:
    if not os.path.exists(UNBOUND):
        pytest.skip("unbound is not installed (run .ci/install-peers.sh as root)")
    started: list[DnsServer] = []

    def make(*args: Any, **kwargs: Any) -> DnsServer:
        server = DnsServer(*args, **kwargs)
        started.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def policy_server() -> Iterator[Callable[..., PolicyServer]]:
    started: list[PolicyServer] = []
    with _scratch("mta-sts") as path:

        def make(*args: Any, **kwargs: Any) -> PolicyServer:
            server = PolicyServer(path / str(len(started)), *args, **kwargs)
            started.append(server)
            return server.start()

        try:
            yield make
        finally:
            for server in started:
                server.stop()
