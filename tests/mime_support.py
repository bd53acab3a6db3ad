"""Helpers shared by the MIME tests: wire checks, parsing, and a MIME-tree dump that
ignores the random parts (boundaries, Message-ID) so structures can be compared with
golden files."""

from __future__ import annotations

import email.parser
import email.policy
from email.message import EmailMessage
from typing import Any

from fastsmtp import _fastsmtp

DATE = "Thu, 01 Jan 2026 00:00:00 +0000"

# Unicode Default_Ignorable_Code_Point (DerivedCoreProperties.txt): invisible characters that
# addresses refuse besides the categories Cc, Cf, Zs, Zl and Zp (rust/mime/chars.rs).
DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
    (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)  # fmt: skip
# Unicode Bidi_Control: what file names refuse besides header text's controls.
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def default_ignorable(c: str) -> bool:
    return any(lo <= ord(c) <= hi for lo, hi in DEFAULT_IGNORABLE)


def spec(**overrides: Any) -> dict[str, Any]:
    """A complete MessageSpec dict with harmless defaults."""
    base: dict[str, Any] = {
        "sender": "Ann <ann@example.com>",
        "to": ["bob@example.org"],
        "cc": [],
        "bcc": [],
        "reply_to": [],
        "subject": "Hello",
        "text": "Hi Bob",
        "html": None,
        "attachments": [],
        "headers": [],
        "envelope_sender": None,
        "message_id": None,
        "date": DATE,
    }
    base.update(overrides)
    return base


def attachment(
    filename: str = "a.bin",
    content: bytes = b"\x00\x01\xff",
    content_type: str = "application/octet-stream",
    *,
    inline: bool = False,
    content_id: str | None = None,
) -> dict[str, Any]:
    return {
        "filename": filename,
        "content": content,
        "content_type": content_type,
        "inline": inline,
        "content_id": content_id,
    }


def check_wire(raw: bytes, *, utf8: bool = False) -> None:
    """CRLF only, no bare CR or LF, no line over 998 octets, ends with CRLF, ASCII unless
    the message is SMTPUTF8."""
    assert raw.endswith(b"\r\n")
    stripped = raw.replace(b"\r\n", b"")
    assert b"\r" not in stripped, "bare CR"
    assert b"\n" not in stripped, "bare LF"
    assert b"\0" not in raw.split(b"\r\n\r\n", 1)[0], "NUL in headers"
    for line in raw.split(b"\r\n"):
        assert len(line) <= 998, f"line of {len(line)} octets"
    if not utf8:
        assert raw.isascii()


def parse(raw: bytes) -> EmailMessage:
    msg = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    return msg


def build(**overrides: Any) -> _fastsmtp.BuiltMessage:
    return _fastsmtp.build_message(spec(**overrides))


def tree(part: EmailMessage, indent: int = 0) -> list[str]:
    """The MIME tree as lines: content type, transfer encoding, disposition, filename, cid,
    and the start of each text body's decoded content."""
    bits = [part.get_content_type()]
    if part.get_content_maintype() != "multipart":
        bits.append(f"cte={part.get('Content-Transfer-Encoding', '7bit')}")
        charset = part.get_param("charset")
        if charset:
            bits.append(f"charset={charset}")
    disposition = part.get_content_disposition()
    if disposition:
        bits.append(f"disposition={disposition}")
    filename = part.get_filename()
    if filename:
        bits.append(f"filename={filename}")
    if part["Content-ID"]:
        bits.append(f"cid={part['Content-ID']}")
    if part.get_content_maintype() == "text" and not filename:
        # A body's decoded text, exactly (its line breaks and the lack of a final one).
        text = part.get_content()
        assert isinstance(text, str)
        text = text.replace("\r\n", "\n")
        bits.append(f"content={text[:60]!r}")
    lines = ["  " * indent + "; ".join(bits)]
    if part.is_multipart():
        for child in part.iter_parts():
            assert isinstance(child, EmailMessage)
            lines.extend(tree(child, indent + 1))
    return lines


def header_names(msg: EmailMessage) -> list[str]:
    return list(msg.keys())


def normalize_text(text: str, *, single_part: bool = False) -> str:
    """What a reader gets back for a text body: newlines as \\n, and otherwise exactly the
    text (RFC 2046 5.1.1: the CRLF before a boundary belongs to the boundary). The body of a
    single-part message also ends with a newline, since DATA needs its last line ended (as
    with smtplib and Django's SMTP backend)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if single_part and text and not text.endswith("\n"):
        text += "\n"
    return text


def body_text(msg: EmailMessage, subtype: str) -> str | None:
    part = msg.get_body((subtype,))
    if part is None:
        return None
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")
