"""One benchmark sender run in its own process: ``python benches/_senders.py KIND ...``.

KIND is ``fastsmtp`` (``Engine.send_batch``), ``aiosmtplib`` (one client per concurrency
slot, each sending its share one message after another over a persistent connection), or
``ceiling`` (pre-framed session bytes written as fast as the server answers, with no
per-message work: what the server can take at that connection count). Each run is its own
process so that its CPU time (``time.process_time``: every thread of this process) and
peak RSS belong to that sender alone. The last line printed is a JSON object.

All runs use uvloop and talk to 127.0.0.1 only; every wait has a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import email.policy
import email.utils
import json
import resource
import ssl
import sys
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any, cast

import uvloop

HOST = "127.0.0.1"
SENDER_NAME = "Bench"
SENDER_ADDRESS = "bench@example.com"
RUN_TIMEOUT = 600.0
"""No single run may take longer than this (seconds)."""


@dataclasses.dataclass
class TlsSetting:
    """How every sender of this run reaches the server (``--tls``, ``--cafile``)."""

    mode: str = "none"  # "none", "implicit" (TLS from the first byte) or "starttls"
    cafile: str | None = None

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cafile)


TLS = TlsSetting()

GREETING = "Dear {name},\n\nyour code is {code}.\n\n"
FILLER_LINE = "The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs."
"""76 characters: a CRLF line of 78 octets on the wire, plain 7-bit (no transfer encoding)."""


def filler(octets: int) -> str:
    """Text lines that take about ``octets`` octets on the wire (CRLF line ends)."""
    if octets <= 0:
        return ""
    full, rest = divmod(octets, len(FILLER_LINE) + 2)
    text = (FILLER_LINE + "\n") * full
    if rest > 2:
        text += FILLER_LINE[: rest - 2] + "\n"
    return text


def recipient(i: int) -> dict[str, str]:
    return {"address": f"user{i}@example.org", "name": f"User {i}", "code": f"{i:08d}"}


def python_message(i: int, body_filler: str) -> bytes:
    """A personalized message built with plain string formatting (what the aiosmtplib and
    ceiling runs send): the same headers and body shape fastsmtp makes."""
    r = recipient(i)
    text = GREETING.format(**r) + body_filler
    headers = (
        f"From: {SENDER_NAME} <{SENDER_ADDRESS}>\r\n"
        f"To: {r['name']} <{r['address']}>\r\n"
        f"Subject: Hello {r['name']}\r\n"
        "Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n"
        f"Message-ID: <{i}.bench@example.com>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 7bit\r\n"
        "\r\n"
    )
    return (headers + text.replace("\n", "\r\n")).encode()


def python_filler_for(size: int) -> str:
    """Filler that makes ``python_message`` about ``size`` octets long."""
    return filler(size - len(python_message(0, "")))


def usage_report(started: float, cpu_started: float, **extra: Any) -> dict[str, Any]:
    elapsed = time.perf_counter() - started
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "elapsed": elapsed,
        "cpu": time.process_time() - cpu_started,
        "maxrss_kb": ru.ru_maxrss,
        **extra,
    }


# --------------------------------------------------------------------------------------------
# fastsmtp
# --------------------------------------------------------------------------------------------


def fastsmtp_template(size: int) -> tuple[Any, int]:
    """The batch template and the size of one rendered message (about ``size`` octets)."""
    from fastsmtp import Message
    from fastsmtp import _fastsmtp as core

    def make(body_filler: str) -> Message:
        return Message(
            sender=f"{SENDER_NAME} <{SENDER_ADDRESS}>",
            subject="Hello {{ name }}",
            text="Dear {{ name }},\n\nyour code is {{ code }}.\n\n" + body_filler,
        )

    def rendered_size(message: Message) -> int:
        r = recipient(0)
        (built,) = core.Template(message.to_spec()).render(
            [(r["address"], r["name"], {"code": r["code"]})]
        )
        assert not isinstance(built, Exception), built
        return len(built)

    template = make(filler(size - rendered_size(make(""))))
    return template, rendered_size(template)


async def run_fastsmtp(
    port: int, connections: int, messages: int, size: int, options: dict[str, int] | None = None
) -> dict[str, Any]:
    """``options``: ``chunk_size`` goes to send_batch, anything else to Engine (e.g.
    ``window``); for sweeps of the defaults (``--option window=256``)."""
    from fastsmtp import Engine

    engine_options = dict(options or {})
    chunk_size = engine_options.pop("chunk_size", None)
    batch_options = {} if chunk_size is None else {"chunk_size": chunk_size}

    template, message_size = fastsmtp_template(size)
    recipients = (recipient(i) for i in range(messages))
    started, cpu_started = time.perf_counter(), time.process_time()
    tls_options: dict[str, Any] = {"tls": TLS.mode}
    if TLS.mode != "none":
        tls_options["ssl_context"] = TLS.context()
    async with Engine(
        HOST,
        port,
        **tls_options,
        connections=connections,
        # Like smtp-source -d: one session per connection for the whole run.
        max_messages_per_connection=10**9,
        timeout=60.0,
        **engine_options,
    ) as engine:
        report = await asyncio.wait_for(
            engine.send_batch(template, recipients, **batch_options), RUN_TIMEOUT
        )
    return usage_report(
        started,
        cpu_started,
        messages=messages,
        accepted=report.accepted,
        message_size=message_size,
    )


# --------------------------------------------------------------------------------------------
# aiosmtplib
# --------------------------------------------------------------------------------------------


def email_message(i: int, body_filler: str) -> EmailMessage:
    """The same message built the way the standard library documents it."""
    r = recipient(i)
    message = EmailMessage()
    message["From"] = f"{SENDER_NAME} <{SENDER_ADDRESS}>"
    message["To"] = f"{r['name']} <{r['address']}>"
    message["Subject"] = f"Hello {r['name']}"
    message["Date"] = email.utils.formatdate()
    message["Message-ID"] = email.utils.make_msgid(domain="example.com")
    message.set_content(GREETING.format(**r) + body_filler, cte="7bit")
    return message


async def run_aiosmtplib(
    port: int, connections: int, messages: int, size: int, build: str = "bytes"
) -> dict[str, Any]:
    """``build="bytes"``: personalized bytes by string formatting, ``sendmail`` (the fastest
    way aiosmtplib can go); ``build="email"``: an ``email.message.EmailMessage`` per
    recipient and ``send_message`` (the way its documentation shows)."""
    import aiosmtplib

    body_filler = python_filler_for(size)
    accepted = 0

    tls_options: dict[str, Any] = {"start_tls": False}
    if TLS.mode == "implicit":
        tls_options = {"use_tls": True, "tls_context": TLS.context()}
    elif TLS.mode == "starttls":
        tls_options = {"start_tls": True, "tls_context": TLS.context()}

    async def client(slot: int) -> None:
        nonlocal accepted
        smtp = aiosmtplib.SMTP(hostname=HOST, port=port, timeout=60, **tls_options)
        await smtp.connect()
        try:
            for i in range(slot, messages, connections):
                if build == "email":
                    errors, _ = await smtp.send_message(email_message(i, body_filler))
                else:
                    message = python_message(i, body_filler)
                    rcpt = f"user{i}@example.org"
                    errors, _ = await smtp.sendmail(SENDER_ADDRESS, [rcpt], message)
                accepted += not errors
        finally:
            await smtp.quit()

    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.wait_for(
        asyncio.gather(*(client(slot) for slot in range(connections))), RUN_TIMEOUT
    )
    if build == "email":
        message_size = len(email_message(0, body_filler).as_bytes(policy=email.policy.SMTP))
    else:
        message_size = len(python_message(0, body_filler))
    return usage_report(
        started, cpu_started, messages=messages, accepted=accepted, message_size=message_size
    )


# --------------------------------------------------------------------------------------------
# ceiling: pre-framed session bytes
# --------------------------------------------------------------------------------------------


class PreFramed(asyncio.Protocol):
    """Writes a pre-framed session and counts replies, doing no per-message work.

    ``data`` mode is the RFC 2920 pattern a pipelining client must follow with DATA:
    MAIL + RCPT + DATA in one write; on each 354, the body, the final "." and the next
    MAIL + RCPT + DATA in one write (one round trip per message). ``bdat`` mode
    (CHUNKING, RFC 3030) needs no round trip: MAIL + RCPT + BDAT n LAST + body,
    transaction after transaction, with at most ``window`` unanswered.
    """

    def __init__(
        self, mode: str, messages: int, body: bytes, window: int = 256, *, greeted: bool = False
    ) -> None:
        self.mode = mode
        self.greeted = greeted
        """The greeting (and STARTTLS) already happened: start with EHLO."""
        self.messages = messages
        self.window = window
        envelope = f"MAIL FROM:<{SENDER_ADDRESS}>\r\nRCPT TO:<user@example.org>\r\n".encode()
        if mode == "data":
            self.first = envelope + b"DATA\r\n"
            self.unit = body + b".\r\n" + envelope + b"DATA\r\n"
            self.last = body + b".\r\nQUIT\r\n"
        else:
            self.unit = envelope + f"BDAT {len(body)} LAST\r\n".encode() + body
            self.last = b"QUIT\r\n"
        self.transport: asyncio.Transport | None = None
        self.handshake = b""
        self.ready = False
        self.tail = b""
        self.count_354 = 0
        self.count_250 = 0
        self.lines = 0
        self.written = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check.
        self.transport = cast(asyncio.Transport, transport)
        if self.greeted:
            self.transport.write(b"EHLO bench.example.com\r\n")

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if not self.ready:
            self._handshake(data)
            return
        # Count whole reply lines across reads; "\n250 " and "\n354 " cannot hide in the
        # 4-byte tail kept from the previous read, so nothing is counted twice.
        stream = self.tail + data
        self.tail = stream[-4:]
        self.count_250 += stream.count(b"\n250 ")
        if self.mode == "data":
            new = stream.count(b"\n354 ")
            self.count_354 += new
            for _ in range(new):
                self.written += 1
                self.transport.write(self.unit if self.written < self.messages else self.last)
            return
        # Every reply in a BDAT session is one line: MAIL, RCPT, BDAT: three per message.
        self.lines += data.count(b"\n")
        answered = self.lines // 3
        more = min(self.messages - self.written, self.window - (self.written - answered))
        if more > 0:
            self.written += more
            self.transport.write(self.unit * more)
            if self.written == self.messages:
                self.transport.write(self.last)

    def _handshake(self, data: bytes) -> None:
        assert self.transport is not None
        self.handshake += data
        if not self.handshake.endswith(b"\r\n"):
            return
        lines = self.handshake.split(b"\r\n")[:-1]
        if len(lines) == 1 and lines[0].startswith(b"220 "):
            self.transport.write(b"EHLO bench.example.com\r\n")
            return
        if not lines[-1].startswith(b"250 "):
            if any(line[:1] in b"45" for line in lines):
                self.done.set_exception(RuntimeError(f"refused: {self.handshake!r}"))
            return
        self.ready = True
        self.tail = b"\r\n"
        if self.mode == "data":
            self.transport.write(self.first)
        else:
            self.written = min(self.window, self.messages)
            self.transport.write(self.unit * self.written)
            if self.written == self.messages:
                self.transport.write(self.last)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def starttls_session(protocol: PreFramed) -> None:
    """Greeting, EHLO and STARTTLS over a stream, then the TLS session handed to
    ``protocol`` (which starts with EHLO)."""
    reader, writer = await asyncio.open_connection(HOST, PORT_FOR_STARTTLS[0])

    async def reply() -> bytes:
        while True:
            line = await reader.readline()
            if line[3:4] != b"-":
                return line

    await reply()
    writer.write(b"EHLO bench.example.com\r\nSTARTTLS\r\n")
    await reply()
    if not (await reply()).startswith(b"220"):
        raise RuntimeError("STARTTLS refused")
    await writer.start_tls(TLS.context(), server_hostname=HOST)
    transport = writer.transport
    transport.set_protocol(protocol)
    protocol.connection_made(transport)


PORT_FOR_STARTTLS = [0]


async def run_ceiling(
    port: int, connections: int, messages: int, size: int, mode: str
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    body = python_message(0, python_filler_for(size))
    shares = [len(range(slot, messages, connections)) for slot in range(connections)]
    started, cpu_started = time.perf_counter(), time.process_time()
    protocols: list[PreFramed] = []
    for share in shares:
        if TLS.mode == "starttls":
            PORT_FOR_STARTTLS[0] = port
            protocol = PreFramed(mode, share, body, greeted=True)
            await starttls_session(protocol)
        else:
            context = TLS.context() if TLS.mode == "implicit" else None
            _, protocol = await loop.create_connection(
                lambda n=share: PreFramed(mode, n, body),  # type: ignore[misc]
                HOST,
                port,
                ssl=context,
                server_hostname=HOST if context else None,
            )
        protocols.append(protocol)
    await asyncio.wait_for(asyncio.gather(*(p.done for p in protocols)), RUN_TIMEOUT)
    # Every message got its 250 after the end of data (plus MAIL, RCPT and QUIT... 221).
    accepted = sum(min(p.count_250 // 3, share) for p, share in zip(protocols, shares, strict=True))
    return usage_report(
        started, cpu_started, messages=messages, accepted=accepted, message_size=len(body)
    )


# --------------------------------------------------------------------------------------------


RUNNERS: dict[str, Callable[..., Any]] = {
    "fastsmtp": run_fastsmtp,
    "aiosmtplib": run_aiosmtplib,
    "aiosmtplib-email": lambda *a: run_aiosmtplib(*a, build="email"),
    "ceiling": lambda *a: run_ceiling(*a, mode="data"),
    "ceiling-bdat": lambda *a: run_ceiling(*a, mode="bdat"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(RUNNERS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--size", type=int, default=1130, help="message size in octets")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=INT",
        help="fastsmtp only: an Engine option, or chunk_size for send_batch (repeatable)",
    )
    parser.add_argument(
        "--tls", choices=("none", "implicit", "starttls"), default="none", help="TLS mode"
    )
    parser.add_argument("--cafile", help="the CA that signed the server's certificate")
    args = parser.parse_args(argv)
    TLS.mode, TLS.cafile = args.tls, args.cafile
    runner = RUNNERS[args.kind]
    work = (args.port, args.connections, args.messages, args.size)
    if args.option:
        if args.kind != "fastsmtp":
            parser.error("--option is for the fastsmtp sender")
        options = {k: int(v) for k, _, v in (o.partition("=") for o in args.option)}
        result = uvloop.run(run_fastsmtp(*work, options=options))
    else:
        result = uvloop.run(runner(*work))
    print(json.dumps({"kind": args.kind, "connections": args.connections, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
