"""CPU of the client's TLS layer per message: a 1.2 KB message encrypted, and the
server's one-line reply decrypted, on one established TLS 1.3 session in memory.

* fastsmtp: ``TlsSession`` (rustls, ring): ``send(msg)`` + ``data_to_send()``, then
  ``feed(reply_record)``: one call per write and one per read, as the engine makes them.
* Python ``ssl`` memory-BIO path (what asyncio's and uvloop's ``SSLProtocol`` do):
  ``SSLObject.write(msg)`` + ``MemoryBIO.read()``, then ``MemoryBIO.write(record)`` +
  ``SSLObject.read()`` until ``SSLWantReadError``.

Only the client's calls are timed, in blocks: the encrypt phase for ``N`` messages, then
(after the server has decrypted them and sealed one reply record each, untimed) the
decrypt phase for the ``N`` replies. Each round checks that the server got the messages
and the client the replies, byte for byte. The server is Python's ``ssl`` in both cases.

Run: ``python benches/bench_tls.py [--rounds 9] [--messages 2000]`` (release build).
"""

from __future__ import annotations

import argparse
import contextlib
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fastsmtp._fastsmtp import TlsConfig, TlsSession

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.peers, the test suite's PKI helper

from tests.peers.certs import TestPKI, make_test_ca  # noqa: E402  (needs the entry above)

MESSAGE = b"X" * 1198 + b"\r\n"  # 1.2 KB of DATA with its end
REPLY = b"250 2.0.0 Ok: queued as 4Xk2Lq0nJjz9vRm\r\n"


class Server:
    """Python ssl, server side, memory BIOs (untimed)."""

    def __init__(self, pki: TestPKI) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = pki.server_context().wrap_bio(self.incoming, self.outgoing, server_side=True)

    def receive(self, data: bytes) -> bytes:
        self.incoming.write(data)
        out = bytearray()
        while True:
            try:
                chunk = self.obj.read(1 << 20)
            except ssl.SSLWantReadError:
                return bytes(out)
            if not chunk:
                return bytes(out)
            out += chunk

    def handshake_step(self, data: bytes) -> bytes:
        self.incoming.write(data)
        with contextlib.suppress(ssl.SSLWantReadError):
            self.obj.do_handshake()
        return self.outgoing.read()

    def seal(self, data: bytes) -> bytes:
        self.obj.write(data)
        return self.outgoing.read()


class Client:
    """The timed side: one implementation's calls per write and per read."""

    name: str
    cipher: str | None = None

    def handshake(self, server: Server) -> None:
        raise NotImplementedError

    def encrypt(self, data: bytes) -> bytes:
        raise NotImplementedError

    def decrypt(self, record: bytes) -> bytes:
        raise NotImplementedError


class RustClient(Client):
    name = "fastsmtp TlsSession (rustls)"

    def __init__(self, config: TlsConfig) -> None:
        self.session = TlsSession(config, "127.0.0.1")

    def handshake(self, server: Server) -> None:
        while not self.session.handshake_done:
            reply = server.handshake_step(self.session.data_to_send())
            self.session.feed(reply)
        server.receive(self.session.data_to_send())  # client Finished
        self.session.feed(server.seal(b""))  # session tickets
        self.cipher = self.session.cipher

    def encrypt(self, data: bytes) -> bytes:
        self.session.send(data)
        return self.session.data_to_send()

    def decrypt(self, record: bytes) -> bytes:
        return self.session.feed(record)


class PythonClient(Client):
    name = "Python ssl SSLObject + MemoryBIO"

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname="127.0.0.1")

    def handshake(self, server: Server) -> None:
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.incoming.write(server.handshake_step(self.outgoing.read()))
        server.receive(self.outgoing.read())
        self.incoming.write(server.seal(b""))
        self.cipher = self.obj.cipher()[0]  # type: ignore[index]

    def encrypt(self, data: bytes) -> bytes:
        self.obj.write(data)
        return self.outgoing.read()

    def decrypt(self, record: bytes) -> bytes:
        self.incoming.write(record)
        out = b""
        while True:
            try:
                chunk = self.obj.read(65536)
            except ssl.SSLWantReadError:
                return out
            out += chunk


def one_round(make: Callable[[], Client], pki: TestPKI, n: int) -> tuple[float, str | None]:
    """Microseconds of client CPU per message (encrypt + decrypt)."""
    server, client = Server(pki), make()
    client.handshake(server)
    messages = [MESSAGE] * n
    t0 = time.process_time_ns()
    wire = [client.encrypt(m) for m in messages]
    t1 = time.process_time_ns()
    received = server.receive(b"".join(wire))
    assert received == MESSAGE * n, "server got something else"
    replies = [server.seal(REPLY) for _ in range(n)]
    t2 = time.process_time_ns()
    plain = [client.decrypt(r) for r in replies]
    t3 = time.process_time_ns()
    assert plain == [REPLY] * n, "client got something else"
    return ((t1 - t0) + (t3 - t2)) / n / 1000, client.cipher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pki = make_test_ca(tmp)
        config = TlsConfig(ca_file=pki.ca_file)
        ctx = pki.client_context()
        makers: list[Callable[[], Client]] = [
            lambda: RustClient(config),
            lambda: PythonClient(ctx),
        ]
        results: dict[str, list[float]] = {}
        ciphers: dict[str, str | None] = {}
        for _ in range(args.rounds):  # interleaved, so drift hits both alike
            for make in makers:
                us, cipher = one_round(make, pki, args.messages)
                name = make().name
                results.setdefault(name, []).append(us)
                ciphers[name] = cipher
    rust, python = (statistics.median(v) for v in results.values())
    for name, values in results.items():
        print(
            f"{name:36} median {statistics.median(values):6.2f} µs/message "
            f"(min {min(values):.2f}, max {max(values):.2f}; {ciphers[name]})"
        )
    print(f"ratio Python ssl / fastsmtp: {python / rust:.2f}x")


if __name__ == "__main__":
    main()
