"""TCP port helpers for the real-peer test servers.

Every test server listens on 127.0.0.1 only; these helpers pick a free port there and wait
until a freshly started server accepts connections.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from pathlib import Path

__all__ = [
    "LOCALHOST",
    "free_port",
    "port_is_listening",
    "port_is_open",
    "wait_for_listen",
    "wait_for_port",
]

LOCALHOST = "127.0.0.1"


def free_port(host: str = LOCALHOST) -> int:
    """Return a TCP port on ``host`` that was free a moment ago.

    The port is found by binding port 0 and closing the socket again, so another process could
    grab it before the caller binds; servers started with it should fail loudly if that happens.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def port_is_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Return True if a TCP connection to ``host:port`` succeeds right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float = 20.0, interval: float = 0.05) -> None:
    """Block until ``host:port`` accepts TCP connections.

    Raises:
        TimeoutError: the port did not open within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        if port_is_open(host, port, timeout=min(1.0, timeout)):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.1f}s")
        time.sleep(interval)


def port_is_listening(host: str, port: int) -> bool:
    """Return True if some socket is in LISTEN state on ``host:port`` (IPv4, Linux).

    Reads ``/proc/net/tcp`` instead of connecting, so servers that fork a process per
    connection (Postfix) are not disturbed and do not log a spurious probe session.
    Falls back to a connection attempt where ``/proc`` is not available.
    """
    table = Path("/proc/net/tcp")
    if not table.exists():
        return port_is_open(host, port)
    # /proc/net/tcp prints the address as little-endian hex and the port as big-endian hex.
    addr = ipaddress.IPv4Address(host).packed[::-1].hex().upper()
    wanted = {f"{addr}:{port:04X}", f"00000000:{port:04X}"}
    listen_state = "0A"
    for line in table.read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[1] in wanted and fields[3] == listen_state:
            return True
    return False


def wait_for_listen(host: str, port: int, timeout: float = 20.0, interval: float = 0.05) -> None:
    """Block until a socket listens on ``host:port``, without connecting to it.

    Raises:
        TimeoutError: nothing listened within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while not port_is_listening(host, port):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.1f}s")
        time.sleep(interval)
