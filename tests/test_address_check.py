"""One address check for every path into the envelope, and one character policy for every
header: control characters (C0, DEL, C1 such as U+0085 NEXT LINE) and U+2028/U+2029 are
refused in addresses, display names, header values and file names; addresses also refuse
invisible characters (format characters such as zero-width joiners, bidi controls and the
BOM, other default-ignorable code points, non-ASCII spaces); file names also refuse bidi
controls. The policy lives in Rust (rust/mime/chars.rs, rust/mime/address.rs
``check_path``), used by ``Message``, templates, every transaction, and ``send_raw``
through ``_fastsmtp.check_address``.

A raw asyncio server records every octet the engine sends: a refused address never
reaches it, on a fresh or an already open connection.
"""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import fastsmtp
from fastsmtp import _fastsmtp
from fastsmtp._errors import InvalidMessage
from tests import hypothesis_profiles
from tests.mime_support import BIDI_CONTROLS, DEFAULT_IGNORABLE, attachment, default_ignorable, spec

hypothesis_profiles.load()

ADDRESS = "bob.smith@bücher.example.org"

# Characters header text refuses: controls but TAB, and the Unicode line separators.
LINE_BREAKING = st.one_of(
    st.characters(categories=["Cc"]).filter(lambda c: c != "\t"),
    st.sampled_from(["\u2028", "\u2029"]),
)
# Characters only addresses refuse (allowed in subjects and display names).
INVISIBLE = st.one_of(
    st.characters(categories=["Cf", "Zs"]).filter(lambda c: c != " "),
    st.sampled_from([chr(lo) for lo, _hi in DEFAULT_IGNORABLE] + ["\u3164", "\ufe0f"]),
)
FORBIDDEN_IN_ADDRESS = st.one_of(LINE_BREAKING, INVISIBLE, st.sampled_from([" ", "\t"]))


def insert(text: str, at: int, c: str) -> str:
    at %= len(text) + 1
    return text[:at] + c + text[at:]


def build(**overrides: Any) -> _fastsmtp.BuiltMessage:
    return _fastsmtp.build_message(spec(**overrides))


def refused(field: str, **overrides: Any) -> None:
    with pytest.raises(InvalidMessage) as info:
        build(**overrides)
    assert info.value.field == field, info.value


def header_only_invisible(c: str) -> bool:
    """Allowed in header text, refused only in addresses."""
    return unicodedata.category(c) not in ("Cc", "Zl", "Zp")


# -- the MIME path and the raw path refuse the same characters, anywhere ---------------------


@given(c=FORBIDDEN_IN_ADDRESS, at=st.integers(0, 64), form=st.integers(0, 2))
def test_every_path_refuses_a_bad_character_anywhere_in_an_address(
    c: str, at: int, form: int
) -> None:
    bad = insert(ADDRESS, at, c)
    # The MIME path trims spaces and tabs around an address (so "x@y.org " is fine, and
    # its envelope is "x@y.org"): only inside the address do they count.
    assume(not (c in " \t" and bad.strip(" \t") == ADDRESS))
    written = [bad, f"<{bad}>", f'"Bob" <{bad}>'][form]
    for field in ("to", "cc", "bcc", "reply_to"):
        refused(f"{field}[0]", **{field: [written]})
    refused("sender", sender=written)
    refused("envelope_sender", envelope_sender=written)
    # Templates: the recipient's address.
    template = _fastsmtp.Template(spec(to=[]))
    (result,) = template.render([(written, None, {})])
    assert isinstance(result, InvalidMessage) and result.field == "address", result
    # The raw path (send_raw), with and without the null sender allowed.
    for allow_empty in (False, True):
        with pytest.raises(InvalidMessage) as info:
            _fastsmtp.check_address(bad, "recipients", allow_empty=allow_empty)
        assert info.value.field == "recipients"


@given(c=LINE_BREAKING, at=st.integers(0, 40))
def test_header_text_refuses_controls_and_line_separators_anywhere(c: str, at: int) -> None:
    refused("subject", subject=insert("Your order has shipped", at, c))
    refused("headers[X-Tag]", headers=[("X-Tag", insert("spring sale", at, c))])
    refused("to[0]", to=[f'"{insert("Bob Smith", at, c)}" <bob@example.org>'])
    refused("sender", sender=f"{insert('Ann', at, c)} <ann@example.com>")
    refused(
        "attachments[0].filename",
        attachments=[attachment(insert("report.pdf", at, c))],
    )
    template = _fastsmtp.Template(spec(to=[], subject="Hi {{ name }}"))
    (result,) = template.render([("bob@example.org", insert("Bob", at, c), {})])
    assert isinstance(result, InvalidMessage) and result.field == "name", result


@given(c=INVISIBLE, at=st.integers(0, 40))
def test_invisible_characters_are_fine_in_free_text(c: str, at: int) -> None:
    """Format characters and other spaces stay allowed where they are text, not addresses:
    emoji sequences need U+200D, right-to-left scripts need U+200E/U+200F."""
    assume(header_only_invisible(c))
    name = insert("Bob Smith", at, c)
    subject = insert("Your order has shipped", at, c)
    raw = build(subject=subject, to=[f'"{name}" <bob@example.org>']).as_bytes()
    assert raw  # built; round trips are checked in test_mime_roundtrip


@pytest.mark.parametrize("c", list(BIDI_CONTROLS))
def test_file_names_refuse_bidi_controls(c: str) -> None:
    """The right-to-left override trick: "invoice\u202efdp.exe" shows as "invoiceexe.pdf"."""
    refused("attachments[0].filename", attachments=[attachment(f"invoice{c}fdp.exe")])
    assert build(subject=f"bidi {c} in a subject is text").as_bytes()


def test_check_address_names_the_field_and_the_character() -> None:
    with pytest.raises(InvalidMessage) as info:
        _fastsmtp.check_address("b@example.org\x85", "recipients")
    assert info.value.field == "recipients"
    assert "U+0085" in str(info.value)
    with pytest.raises(InvalidMessage, match="must be a str, not int"):
        _fastsmtp.check_address(7, "sender")
    with pytest.raises(InvalidMessage, match="surrogate"):
        _fastsmtp.check_address("b\udc80@example.org", "sender")
    with pytest.raises(InvalidMessage, match="empty"):
        _fastsmtp.check_address("", "recipients")
    _fastsmtp.check_address("", "sender", allow_empty=True)
    _fastsmtp.check_address("jörg@bücher.de", "recipients")
    # The raw path leaves RFC 5321 grammar to the caller; framing is all it guards.
    _fastsmtp.check_address("legacy..dots@example.jp", "recipients")
    assert default_ignorable("\u200b") and not default_ignorable("a")


# -- nothing reaches the wire ------------------------------------------------------------------


class Recorder:
    """A raw SMTP server that accepts everything and records every octet it receives."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(b"220 recorder ESMTP\r\n")
        in_data = False
        try:
            while line := await reader.readline():
                self.received += line
                if in_data:
                    if line == b".\r\n":
                        in_data = False
                        writer.write(b"250 2.0.0 stored\r\n")
                    continue
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250-recorder\r\n250-PIPELINING\r\n250 SMTPUTF8\r\n")
                elif verb == b"DATA":
                    in_data = True
                    writer.write(b"354 go ahead\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                else:
                    writer.write(b"250 ok\r\n")
                await writer.drain()
        finally:
            writer.close()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Recorder]:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            self._server.close()
            await self._server.wait_closed()


# One of each kind, at the positions that matter: the local part's start, middle and end,
# the domain's middle, and the very end.
WIRE_CHARS = ["\x85", "\u2028", "\u2029", "\u200b", "\u200d", "\ufeff", "\u202e", "\x00", "\x9b"]
WIRE_POSITIONS = [0, 3, 9, 16, len(ADDRESS)]


@pytest.mark.parametrize("c", WIRE_CHARS, ids=lambda c: f"U+{ord(c):04X}")
async def test_refused_addresses_never_reach_the_wire(c: str) -> None:
    good = fastsmtp.Message(sender="ann@example.com", to=["ok@example.org"], text="fine")
    async with Recorder().running() as server:
        async with fastsmtp.Engine("127.0.0.1", server.port, tls="none") as engine:
            for at in WIRE_POSITIONS:
                bad = insert(ADDRESS, at, c)
                with pytest.raises(InvalidMessage):
                    await engine.send_raw("ann@example.com", [bad], b"Subject: x\r\n\r\nx\r\n")
                with pytest.raises(InvalidMessage):
                    await engine.send_raw(bad, ["ok@example.org"], b"Subject: x\r\n\r\nx\r\n")
                with pytest.raises(InvalidMessage):
                    await engine.send(fastsmtp.Message(sender="ann@example.com", to=[bad]))
            assert server.connections == 0  # refused before any connection was needed
            # Once a connection is open, a refused address still sends nothing.
            (result,) = await engine.send(good)
            assert result.ok
            sent = len(server.received)
            for at in WIRE_POSITIONS:
                with pytest.raises(InvalidMessage):
                    await engine.send_raw("ann@example.com", [insert(ADDRESS, at, c)], b"x\r\n")
            (result,) = await engine.send(good)
            assert result.ok
    later = bytes(server.received[sent:])
    assert later.count(b"RCPT TO:") == 1 and b"RCPT TO:<ok@example.org>" in later
    assert c.encode() not in bytes(server.received)
    assert server.connections == 1
