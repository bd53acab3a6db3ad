"""A minimal I/O driver for the sans-IO ``ClientConnection``, for protocol tests against
real servers.

``Wire`` is an ``asyncio.Protocol``: server bytes go to ``receive_data``, and whatever
``data_to_send`` returns is written at once, as one ``transport.write`` per call, so
``writes`` records exactly how the core batched its commands (the pipelining tests count
them). Events are collected in ``events`` and awaited with ``wait_for``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastsmtp import _fastsmtp as core

E = TypeVar("E")


class Wire(asyncio.Protocol):
    def __init__(self, conn: core.ClientConnection) -> None:
        self.conn = conn
        self.events: list[Any] = []
        self.writes: list[bytes] = []
        self.transport: asyncio.BaseTransport | None = None
        self._changed = asyncio.Event()
        self.lost = asyncio.get_running_loop().create_future()

    # asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._feed(data)

    def eof_received(self) -> bool:
        self._record(self.conn.eof())
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.conn.is_closed:
            self._record(self.conn.eof())
        self._changed.set()
        if not self.lost.done():
            self.lost.set_result(None)

    # driving -----------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        self._record(self.conn.receive_data(data))

    def _record(self, events: list[Any]) -> None:
        self.events.extend(events)
        self.flush()
        self._changed.set()

    def flush(self) -> None:
        """Write what the core has queued, as one write (a large body: one per piece)."""
        while self.conn.has_data_to_send:
            out = self.conn.data_to_send()
            if self.transport is not None and not self.transport.is_closing():
                self.writes.append(out)
                self.transport.write(out)  # type: ignore[attr-defined]

    def of_type(self, cls: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, cls)]

    async def wait_until(self, condition: Callable[[], bool], within: float = 15.0) -> None:
        async with asyncio.timeout(within):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def wait_for(self, cls: type[E], count: int = 1, within: float = 15.0) -> list[E]:
        """Wait until ``count`` events of ``cls`` have arrived (in total); return them."""
        await self.wait_until(lambda: len(self.of_type(cls)) >= count, within)
        return self.of_type(cls)

    async def results(self, count: int, within: float = 30.0) -> dict[int, Any]:
        """Wait for ``count`` TransactionResult/TransactionAborted events, by lot."""
        kinds = (core.TransactionResult, core.TransactionAborted)
        await self.wait_until(
            lambda: sum(isinstance(e, kinds) for e in self.events) >= count, within
        )
        return {e.lot: e for e in self.events if isinstance(e, kinds)}

    async def starttls(self, context: ssl.SSLContext, server_hostname: str = "127.0.0.1") -> None:
        """STARTTLS, upgrade the transport, EHLO again; returns once Ready again."""
        readies = len(self.of_type(core.Ready))
        self.conn.starttls()
        self.flush()
        await self.wait_for(core.StartTlsReady)
        loop = asyncio.get_running_loop()
        assert self.transport is not None
        self.transport = await loop.start_tls(
            self.transport,  # type: ignore[arg-type]
            self,
            context,
            server_hostname=server_hostname,
        )
        self.conn.tls_established()
        self.flush()
        await self.wait_for(core.Ready, readies + 1)

    async def quit(self, within: float = 15.0) -> Any:
        self.conn.quit()
        self.flush()
        closed = await self.wait_for(core.Closed, within=within)
        return closed[0]

    async def close(self, within: float = 5.0) -> None:
        """Close the socket and wait until it is gone (a TLS transport shuts down first)."""
        if self.transport is not None:
            self.transport.close()
            try:
                async with asyncio.timeout(within):
                    await asyncio.shield(self.lost)
            except TimeoutError:
                self.transport.abort()  # type: ignore[attr-defined]


@asynccontextmanager
async def connect(
    host: str, port: int, *, local_hostname: str = "client.example", **kwargs: Any
) -> AsyncIterator[Wire]:
    """Connect, wait for Ready, yield the Wire; close the socket at the end."""
    loop = asyncio.get_running_loop()
    conn = core.ClientConnection(local_hostname, **kwargs)
    _, wire = await loop.create_connection(lambda: Wire(conn), host, port)
    try:
        await wire.wait_until(
            lambda: (
                bool(wire.of_type(core.Ready) or wire.of_type(core.CommandFailed)) or conn.is_closed
            )
        )
        yield wire
    finally:
        await wire.close()
