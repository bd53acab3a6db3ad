"""A minimal HTTPS GET on asyncio streams, for fetching MTA-STS policies.

Why not an HTTP client package: the fetch is one GET of a small text file with rules that
general clients make us switch off (RFC 8461 3.3: "HTTP 3xx redirects MUST NOT be
followed, and HTTP caching ... MUST NOT be used"), a hard size limit and a connect address
chosen by our own resolver (the system resolver is never asked). The standard library's
``asyncio.open_connection`` with an ``ssl.SSLContext`` does the TLS and certificate
checks; what is left is an HTTP/1.1 status line, headers, and a body by Content-Length,
chunked transfer coding or end of stream, which is all written below.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass

__all__ = ["HTTPError", "HTTPResponse", "https_get"]

_MAX_HEAD = 16 * 1024


class HTTPError(Exception):
    """The server's reply was not a usable HTTP response."""


@dataclass(frozen=True, slots=True)
class HTTPResponse:
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes

    @property
    def media_type(self) -> str:
        """The Content-Type without parameters, lower-case (``"text/plain"``)."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def https_get(
    host: str,
    path: str,
    *,
    address: str,
    port: int = 443,
    ssl_context: ssl.SSLContext,
    max_body: int = 64 * 1024,
) -> HTTPResponse:
    """GET ``https://host{path}``, connecting to ``address:port`` and verifying the
    certificate for ``host`` with ``ssl_context``. The caller bounds the time.

    Raises:
        ssl.SSLError: the TLS handshake or certificate verification failed.
        OSError: the connection failed.
        HTTPError: malformed or oversized response.
    """
    reader, writer = await asyncio.open_connection(
        address, port, ssl=ssl_context, server_hostname=host
    )
    try:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: fastsmtp\r\n"
            "Accept: text/plain\r\nConnection: close\r\n\r\n"
        )
        writer.write(request.encode("ascii"))
        await writer.drain()
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError as exc:
            raise HTTPError("response head too long") from exc
        except asyncio.IncompleteReadError as exc:
            raise HTTPError("connection closed before the response head ended") from exc
        if len(head) > _MAX_HEAD:
            raise HTTPError("response head too long")
        status, headers = _parse_head(head)
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = await _read_chunked(reader, max_body)
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError as exc:
                raise HTTPError("bad Content-Length") from exc
            if length < 0 or length > max_body:
                raise HTTPError(f"body of {length} bytes exceeds the {max_body}-byte limit")
            try:
                body = await reader.readexactly(length)
            except asyncio.IncompleteReadError as exc:
                raise HTTPError("connection closed inside the body") from exc
        else:
            body = await reader.read(max_body + 1)
            while len(body) <= max_body:
                more = await reader.read(max_body + 1 - len(body))
                if not more:
                    break
                body += more
            if len(body) > max_body:
                raise HTTPError(f"body exceeds the {max_body}-byte limit")
        return HTTPResponse(status, headers, body)
    finally:
        writer.close()
        # The peer may drop the TLS session without close_notify.
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HTTPError(f"bad status line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HTTPError(f"bad header line {line[:80]!r}")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return int(parts[1]), headers


async def _read_chunked(reader: asyncio.StreamReader, max_body: int) -> bytes:
    body = bytearray()
    try:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise HTTPError("bad chunk size") from exc
            if size == 0:
                # Trailer fields (ignored) up to the empty line.
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return bytes(body)
            if len(body) + size > max_body:
                raise HTTPError(f"body exceeds the {max_body}-byte limit")
            body += await reader.readexactly(size)
            if await reader.readexactly(2) != b"\r\n":
                raise HTTPError("chunk not followed by CRLF")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise HTTPError("connection closed inside a chunked body") from exc
