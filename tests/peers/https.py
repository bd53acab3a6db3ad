"""An HTTPS server on loopback serving MTA-STS policy files, for the routing tests.

``PolicyServer(directory, hosts=[...])`` makes its own test CA (``tests.peers.certs``) with
one server certificate naming every host in ``hosts`` (``mta-sts.DOMAIN`` names), and
serves ``/.well-known/mta-sts.txt`` by the request's Host header from ``policies``:
``{host: body}`` or ``{host: (status, content_type, body)}``. Unknown hosts get 404. Each
request is recorded (``requests``) so tests can count fetches. Clients trust
``server.pki.client_context()``.

It is the standard library's ``ThreadingHTTPServer`` with its socket wrapped in TLS, on
``127.0.0.1:<free port>`` in a thread of the test process.
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

from .certs import TestPKI, make_test_ca
from .lifecycle import Peer
from .ports import LOCALHOST

__all__ = ["PolicyServer", "Reply"]

Reply = str | tuple[int, str, str]


class PolicyServer(Peer):
    """HTTPS on ``127.0.0.1:<free port>`` with a certificate for ``hosts``."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        hosts: Iterable[str],
        policies: Mapping[str, Reply] | None = None,
        *,
        pki: TestPKI | None = None,
    ) -> None:
        self.hosts = list(hosts)
        # ``pki``: present these certificates instead (e.g. an MX host's, for DANE tests).
        self.pki: TestPKI = pki or make_test_ca(directory, hosts=self.hosts)
        self.policies: dict[str, Reply] = dict(policies or {})
        self.requests: list[tuple[str, str]] = []  # (Host header, path)
        self.host = LOCALHOST
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def fetches(self, host: str) -> int:
        return sum(1 for h, _ in self.requests if h == host)

    def start(self) -> Self:
        if self._server is not None:
            return self
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                host = (self.headers.get("Host") or "").split(":")[0].lower()
                owner.requests.append((host, self.path))
                reply = owner.policies.get(host)
                if reply is None or self.path != "/.well-known/mta-sts.txt":
                    status, ctype, body = 404, "text/plain", "not found\n"
                elif isinstance(reply, str):
                    status, ctype, body = 200, "text/plain; charset=utf-8", reply
                else:
                    status, ctype, body = reply
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                if 300 <= status < 400:
                    self.send_header("Location", "https://elsewhere.test/policy.txt")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output clean

        server = ThreadingHTTPServer((self.host, 0), Handler)
        server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.pki.cert_file), str(self.pki.key_file))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
