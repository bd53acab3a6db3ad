"""Interop with aiosmtplib, the reference Python client.

- The same raw bytes sent by aiosmtplib and by fastsmtp reach the server identical (line
  endings and dot-stuffing undone the same way), over aiosmtpd (DATA) and over Postfix.
- A message fastsmtp assembles goes through aiosmtplib unchanged, so it is a plain RFC 5322
  message any client can carry.
- aiosmtplib can use fastsmtp's own capture server (``fastsmtp.testing``, ``fastsmtp sink``).
"""

from __future__ import annotations

import uuid

import aiosmtplib
import pytest

import fastsmtp
from fastsmtp.testing import CaptureServer as ProductCaptureServer
from tests.peers.aiosmtpd_server import CaptureServer
from tests.peers.postfix import PostfixInstance

BODIES = {
    "plain": b"Subject: plain\r\n\r\nHello\r\n",
    "dots": b"Subject: dots\r\n\r\n.\r\n..\r\n.leading\r\nmiddle . dot\r\n.",
    "bare LF": b"Subject: lf\n\nline one\nline two\n",
    "mixed endings": b"Subject: mixed\r\n\r\na\nb\r\nc\r\n\r\n",
    "long line": b"Subject: long\r\n\r\n" + b"x" * 990 + b"\r\n",
    "8-bit": "Subject: 8bit\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGrüße\r\n".encode(),
}


def normalized(body: bytes) -> bytes:
    """What both clients put in DATA for ``body``: CRLF line endings, a final CRLF."""
    text = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return text.replace(b"\n", b"\r\n") + (b"" if text.endswith(b"\n") else b"\r\n")


@pytest.mark.parametrize("name", list(BODIES))
async def test_same_bytes_arrive_from_both_clients(name: str) -> None:
    body = BODIES[name]
    with CaptureServer() as server:
        await aiosmtplib.send(
            body, sender="a@example.com", recipients=["ref@example.org"], hostname="127.0.0.1",
            port=server.port, start_tls=False,
        )  # fmt: skip
        async with fastsmtp.Engine("127.0.0.1", server.port, tls="none") as engine:
            (result,) = await engine.send_raw("a@example.com", ["us@example.org"], body)
        assert result.status == "accepted"
        theirs, ours = server.wait_for(2)
    assert theirs.rcpt_tos == ["ref@example.org"] and ours.rcpt_tos == ["us@example.org"]
    assert ours.content == theirs.content
    assert ours.content.replace(b"\r\n", b"\n") == normalized(body).replace(b"\r\n", b"\n")


async def test_same_bytes_arrive_through_postfix_with_bdat_and_data(
    postfix: PostfixInstance,
) -> None:
    """Postfix takes fastsmtp's copy with BDAT (CHUNKING) and aiosmtplib's with DATA: the
    Maildir copies must still be the same message."""
    assert postfix.pki is not None
    tag = uuid.uuid4().hex[:8]
    # Complete headers, so that Postfix adds none of its own (Message-ID, Date) to either.
    body = (
        b"From: a@example.com\r\nTo: x@example.org\r\nDate: Sat, 28 Nov 2026 12:00:00 +0000\r\n"
        b"Message-ID: <interop-" + tag.encode() + b"@example.com>\r\n"
        + BODIES["dots"] + b"\r\n" + BODIES["8-bit"].split(b"\r\n\r\n", 1)[1]
    )  # fmt: skip
    ref, us = f"ref-{tag}@example.org", f"us-{tag}@example.org"
    await aiosmtplib.send(
        body, sender="a@example.com", recipients=[ref], hostname=postfix.host, port=postfix.port,
        start_tls=True, tls_context=postfix.pki.client_context(),
    )  # fmt: skip
    async with fastsmtp.Engine(
        postfix.host, postfix.port, tls="starttls", ssl_context=postfix.pki.client_context()
    ) as engine:
        (result,) = await engine.send_raw("a@example.com", [us], body)
    assert result.status == "accepted"
    (theirs,) = postfix.messages_for(ref, expected=1)
    (ours,) = postfix.messages_for(us, expected=1)

    def content(raw: bytes) -> bytes:
        # Postfix's own trace headers (Return-Path, Delivered-To, Received) differ per copy.
        return raw[raw.index(b"From: a@example.com") :]

    assert content(ours) == content(theirs) != b""


async def test_a_fastsmtp_message_travels_through_aiosmtplib(tmp_path: object) -> None:
    message = fastsmtp.Message(
        sender="Ann <ann@example.com>",
        to=["bob@example.org"],
        subject="Grüße",
        text=".dot first\n" + "long " * 300,
        html="<p>hi</p>",
    )
    raw = message.as_bytes()
    with CaptureServer() as server:
        await aiosmtplib.send(
            raw, sender="ann@example.com", recipients=["bob@example.org"], hostname="127.0.0.1",
            port=server.port, start_tls=False,
        )  # fmt: skip
        (got,) = server.wait_for(1)
    assert got.content == raw


async def test_aiosmtplib_can_use_fastsmtps_capture_server() -> None:
    with ProductCaptureServer() as server:
        errors, reply = await aiosmtplib.send(
            b"Subject: to the sink\r\n\r\nbody\r\n",
            sender="a@example.com",
            recipients=["x@example.org", "y@example.org"],
            hostname="127.0.0.1",
            port=server.port,
            start_tls=False,
        )
        assert errors == {} and reply.startswith("2")
        (got,) = server.wait_for(1)
    assert got.rcpt_tos == ["x@example.org", "y@example.org"]
    assert got.subject == "to the sink"
