"""A fault-injecting SMTP server for engine tests.

A small asyncio server that speaks enough SMTP for fastsmtp (EHLO with PIPELINING and,
optionally, CHUNKING; MAIL, RCPT, DATA, BDAT, RSET, NOOP, QUIT) and misbehaves on purpose,
from a seeded random generator: 421 (then closes), 451/452/550 on RCPT, 451/554 on the end
of data, disconnects before the end of data and after it (message stored, no reply), and
slow replies. It stores every message it accepts, keyed by Message-ID and recipient, so a
test can check the engine's claims against what the server really took.

It keeps a refused transaction open after "554 no valid recipients" to DATA, as Postfix
does, so a client that pipelines the next MAIL without RSET gets "503 nested MAIL".
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import re
import ssl as ssl_module
from collections import Counter

MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


@dataclasses.dataclass
class Faults:
    """Probabilities, each per command (or per end of data)."""

    greeting_421: float = 0.0
    mail_421: float = 0.0
    mail_451: float = 0.0
    rcpt_451: float = 0.0
    rcpt_452: float = 0.0
    rcpt_550: float = 0.0
    data_451: float = 0.0
    data_554: float = 0.0
    disconnect_before_end: float = 0.0
    """Close the socket while the client is sending the message body."""
    disconnect_after_end: float = 0.0
    """Store the message, then close without replying."""
    slow_reply: float = 0.0
    slow_delay: float = 0.05


@dataclasses.dataclass
class Stored:
    mail_from: str
    rcpt: str
    message_id: str
    content: bytes
    connection: int
    """Which connection it came over (1 for the first accepted)."""


class FaultServer:
    def __init__(
        self,
        faults: Faults | None = None,
        *,
        seed: int = 1,
        chunking: bool = True,
        pipelining: bool = True,
        greet: bool = True,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        self.faults = faults or Faults()
        self.random = random.Random(seed)
        self.chunking = chunking
        self.pipelining = pipelining
        self.greet = greet
        self.ssl = ssl
        """A server context: implicit TLS from the first byte (the storm over TLS)."""
        """False: accept connections and never say anything (timeout tests)."""
        self.connections = 0
        self.commands: Counter[str] = Counter()
        """Commands received, by verb."""
        self._live: set[int] = set()
        self._muted: set[int] = set()
        self.stored: list[Stored] = []
        self.events: Counter[str] = Counter()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> FaultServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

    async def __aenter__(self) -> FaultServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def mute_open_connections(self) -> None:
        """The connections open now keep reading but never answer again (a peer that
        vanished without closing); new connections behave."""
        self._muted |= self._live

    def stored_pairs(self) -> Counter[tuple[str, str]]:
        """How many times each (message_id, recipient) was stored."""
        return Counter((s.message_id, s.rcpt) for s in self.stored)

    # -- the conversation ----------------------------------------------------------------

    def _roll(self, name: str) -> bool:
        hit = self.random.random() < getattr(self.faults, name)
        if hit:
            self.events[name] += 1
        return hit

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._converse(reader, writer)
        except (
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ssl_module.SSLError,
        ):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _reply(self, writer: asyncio.StreamWriter, line: str) -> None:
        if self._roll("slow_reply"):
            await writer.drain()
            await asyncio.sleep(self.faults.slow_delay)
        writer.write(line.encode() + b"\r\n")

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self._live.add(number)
        try:
            await self._converse_as(number, reader, writer)
        finally:
            self._live.discard(number)

    async def _converse_as(
        self, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if not self.greet:
            await reader.read()  # wait for the client to give up
            return
        if self._roll("greeting_421"):
            writer.write(b"421 4.3.2 busy, try later\r\n")
            await writer.drain()
            return
        writer.write(b"220 fault.test ESMTP ready\r\n")
        mail_from: str | None = None
        rcpts: list[str] = []
        chunks: list[bytes] = []
        bdat_failed = False
        while True:
            if reader._buffer == b"":  # type: ignore[attr-defined]  # flush before waiting
                await writer.drain()
            line = await reader.readuntil(b"\r\n")
            verb, _, arg = line[:-2].decode("utf-8", "replace").partition(" ")
            verb = verb.upper()
            self.commands[verb] += 1
            if number in self._muted:
                continue
            if verb in ("EHLO", "HELO"):
                caps = ["250-fault.test", "250-SIZE 0", "250-8BITMIME", "250-ENHANCEDSTATUSCODES"]
                if self.pipelining:
                    caps.append("250-PIPELINING")
                if self.chunking:
                    caps.append("250-CHUNKING")
                caps.append("250 SMTPUTF8")
                writer.write("\r\n".join(caps).encode() + b"\r\n")
            elif verb == "MAIL":
                if mail_from is not None:
                    await self._reply(writer, "503 5.5.1 Error: nested MAIL command")
                elif self._roll("mail_421"):
                    writer.write(b"421 4.3.0 closing\r\n")
                    await writer.drain()
                    return
                elif self._roll("mail_451"):
                    await self._reply(writer, "451 4.3.0 try MAIL later")
                else:
                    mail_from = arg.split(":", 1)[1].split(">")[0].lstrip("<")
                    rcpts, chunks, bdat_failed = [], [], False
                    await self._reply(writer, "250 2.1.0 Ok")
            elif verb == "RCPT":
                rcpt = arg.split(":", 1)[1].split(">")[0].lstrip("<")
                if mail_from is None:
                    await self._reply(writer, "503 5.5.1 Error: need MAIL command")
                elif self._roll("rcpt_451"):
                    await self._reply(writer, "451 4.2.0 greylisted")
                elif self._roll("rcpt_452"):
                    await self._reply(writer, "452 4.5.3 too many recipients")
                elif self._roll("rcpt_550"):
                    await self._reply(writer, "550 5.1.1 no such user")
                else:
                    rcpts.append(rcpt)
                    await self._reply(writer, "250 2.1.5 Ok")
            elif verb == "DATA":
                if mail_from is None:
                    await self._reply(writer, "503 5.5.1 Error: need MAIL command")
                    continue
                if not rcpts:
                    # Postfix keeps the transaction open here: the client must RSET.
                    await self._reply(writer, "554 5.5.1 Error: no valid recipients")
                    continue
                writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                await writer.drain()
                body = await self._read_data(reader)
                if body is None:
                    return
                if not await self._finish(writer, number, mail_from, rcpts, body):
                    return
                mail_from, rcpts = None, []
            elif verb == "BDAT":
                size_text, _, last = arg.partition(" ")
                if self._roll("disconnect_before_end"):
                    return
                chunk = await reader.readexactly(int(size_text))
                is_last = last.strip().upper() == "LAST"
                if mail_from is None or not rcpts or bdat_failed:
                    bdat_failed = True
                    if is_last:
                        await self._reply(writer, "554 5.5.1 Error: no valid recipients")
                        mail_from, rcpts, chunks, bdat_failed = None, [], [], False
                    else:
                        await self._reply(writer, "503 5.5.1 Error: BDAT failed")
                    continue
                chunks.append(chunk)
                if not is_last:
                    await self._reply(writer, f"250 2.0.0 {len(chunk)} octets received")
                    continue
                if not await self._finish(writer, number, mail_from, rcpts, b"".join(chunks)):
                    return
                mail_from, rcpts, chunks = None, [], []
            elif verb == "RSET":
                mail_from, rcpts, chunks, bdat_failed = None, [], [], False
                await self._reply(writer, "250 2.0.0 Ok")
            elif verb == "NOOP":
                await self._reply(writer, "250 2.0.0 Ok")
            elif verb == "QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                await writer.drain()
                return
            else:
                await self._reply(writer, "502 5.5.2 Error: command not recognized")

    async def _read_data(self, reader: asyncio.StreamReader) -> bytes | None:
        lines = []
        while True:
            if self._roll("disconnect_before_end"):
                return None
            line = await reader.readuntil(b"\r\n")
            if line == b".\r\n":
                return b"".join(lines)
            lines.append(line[1:] if line.startswith(b".") else line)

    async def _finish(
        self,
        writer: asyncio.StreamWriter,
        number: int,
        mail_from: str,
        rcpts: list[str],
        body: bytes,
    ) -> bool:
        """Reply to the end of data; False when the connection is to be dropped."""
        if self._roll("data_451"):
            await self._reply(writer, "451 4.3.0 temporary failure, try again")
            return True
        if self._roll("data_554"):
            await self._reply(writer, "554 5.7.1 message refused")
            return True
        match = MESSAGE_ID.search(body)
        message_id = match.group(1).decode() if match else ""
        for rcpt in rcpts:
            self.stored.append(Stored(mail_from, rcpt, message_id, body, number))
        if self._roll("disconnect_after_end"):
            return False
        await self._reply(writer, "250 2.0.0 Ok: queued")
        return True
