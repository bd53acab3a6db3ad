"""A scriptable misbehaving SMTP server for the "never a false accepted" tests.

A raw asyncio server that speaks SMTP in order (EHLO with PIPELINING, ENHANCEDSTATUSCODES
and optionally CHUNKING; MAIL, RCPT, DATA, BDAT, RSET, NOOP, QUIT) and lets a test
replace the reply to any command: ``script["DATA"] = ["250 2.0.0 Ok"]`` answers DATA with
250 instead of 354; ``"EOD"`` is the end of data ("." or ``BDAT ... LAST``). A scripted
reply may be several lines (a surplus reply) or be sent a byte at a time with a delay
(``trickle``). It stores a message only when it answers its end of data 2xx, so a test
can hold the engine's claims against what the server really took. Like a real broken
server it keeps going with whatever its own replies imply (after a 250 to DATA it reads
the body as commands).
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable

MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)

Script = dict[str, Callable[[int], list[str] | None]]
"""Verb (or "EOD") -> function of how many times it came before (0 for the first) ->
the reply lines to send instead, or None for the normal reply."""


def always(*lines: str) -> Callable[[int], list[str]]:
    return lambda _: list(lines)


def first(n: int, *lines: str) -> Callable[[int], list[str] | None]:
    """The lines for the first ``n`` times, then the normal reply."""
    return lambda count: list(lines) if count < n else None


class HostileServer:
    def __init__(
        self,
        script: Script | None = None,
        *,
        chunking: bool = False,
        trickle: dict[str, float] | None = None,
    ) -> None:
        self.script = script or {}
        self.chunking = chunking
        self.trickle = trickle or {}
        """Verb -> seconds between the bytes of its (normal or scripted) reply."""
        self.counts: Counter[str] = Counter()
        self.stored: list[tuple[str, bytes]] = []
        """(message id, body) of every message answered 2xx."""
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> HostileServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def stored_ids(self) -> Counter[str]:
        return Counter(message_id for message_id, _ in self.stored)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            await self._converse(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _reply(self, writer: asyncio.StreamWriter, verb: str, default: list[str]) -> str:
        """Send the scripted or default reply to ``verb``; returns its first code."""
        rule = self.script.get(verb)
        lines = rule(self.counts[verb]) if rule is not None else None
        self.counts[verb] += 1
        lines = default if lines is None else lines
        data = "".join(f"{line}\r\n" for line in lines).encode()
        delay = self.trickle.get(verb)
        if delay:
            for i in range(len(data)):
                writer.write(data[i : i + 1])
                await writer.drain()
                await asyncio.sleep(delay)
        else:
            writer.write(data)
        return lines[0][:3] if lines else ""

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hostile.test ESMTP\r\n")
        while True:
            if reader._buffer == b"":  # type: ignore[attr-defined]  # flush before waiting
                await writer.drain()
            line = await reader.readuntil(b"\r\n")
            verb, _, arg = line[:-2].decode("utf-8", "replace").partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                caps = ["250-hostile.test", "250-PIPELINING", "250-ENHANCEDSTATUSCODES"]
                if self.chunking:
                    caps.append("250-CHUNKING")
                caps.append("250 8BITMIME")
                writer.write("\r\n".join(caps).encode() + b"\r\n")
            elif verb == "MAIL":
                await self._reply(writer, "MAIL", ["250 2.1.0 Ok"])
            elif verb == "RCPT":
                await self._reply(writer, "RCPT", ["250 2.1.5 Ok"])
            elif verb == "DATA":
                code = await self._reply(writer, "DATA", ["354 End data with <CR><LF>.<CR><LF>"])
                if code != "354":
                    continue  # what follows is read as commands, as a broken server would
                await writer.drain()
                body = await self._read_data(reader)
                await self._end_of_data(writer, body)
            elif verb == "BDAT":
                size, _, last = arg.partition(" ")
                body = await reader.readexactly(int(size))
                if last.strip().upper() == "LAST":
                    await self._end_of_data(writer, body)
                else:
                    writer.write(b"250 2.0.0 chunk received\r\n")
            elif verb == "RSET":
                await self._reply(writer, "RSET", ["250 2.0.0 Ok"])
            elif verb == "NOOP":
                await self._reply(writer, "NOOP", ["250 2.0.0 Ok"])
            elif verb == "QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"502 5.5.2 Error: command not recognized\r\n")

    async def _read_data(self, reader: asyncio.StreamReader) -> bytes:
        lines = []
        while True:
            line = await reader.readuntil(b"\r\n")
            if line == b".\r\n":
                return b"".join(lines)
            lines.append(line[1:] if line.startswith(b".") else line)

    async def _end_of_data(self, writer: asyncio.StreamWriter, body: bytes) -> None:
        code = await self._reply(writer, "EOD", ["250 2.0.0 Ok: queued"])
        if code.startswith("2"):
            match = MESSAGE_ID.search(body)
            self.stored.append((match.group(1).decode() if match else "", body))
