"""Golden tests of the MIME structure of each message shape.

Each shape's tree (content types, nesting, transfer encodings, dispositions, filenames,
content ids, the decoded text of each body: exact inside a multipart, with its last line
ended in a single-part message) and its header names, in order, are compared with
``tests/golden/<shape>.txt``; boundaries and Message-IDs are random and are not part of the
comparison. Set ``FASTSMTP_UPDATE_GOLDEN=1`` to rewrite the files after an intended change
(and review the diff)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.mime_support import attachment, build, check_wire, header_names, parse, tree

GOLDEN = Path(__file__).parent / "golden"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 300

SHAPES: dict[str, dict[str, Any]] = {
    "text_only": {"text": "Hello\nworld"},
    "html_only": {"text": None, "html": "<p>Hello</p>"},
    "text_html": {"text": "Hello", "html": "<p>Hello</p>\n"},
    "html_inline": {
        "text": None,
        "html": '<img src="cid:logo@x">',
        "attachments": [attachment("logo.png", PNG, "image/png", inline=True, content_id="logo@x")],
    },
    "text_html_inline": {
        "text": "Hello",
        "html": '<img src="cid:logo@x">',
        "attachments": [attachment("logo.png", PNG, "image/png", inline=True, content_id="logo@x")],
    },
    "text_attachment": {
        "text": "See attached",
        "attachments": [attachment("report.pdf", PDF, "application/pdf")],
    },
    "attachments_only": {
        "text": None,
        "attachments": [
            attachment("report.pdf", PDF, "application/pdf"),
            attachment("data.csv", b"a,b\n1,2\n", "text/csv"),
        ],
    },
    "inline_without_html": {
        "text": "No html here",
        "attachments": [attachment("logo.png", PNG, "image/png", inline=True, content_id="logo")],
    },
    "empty": {"text": None},
    "full": {
        "cc": ["Carl <carl@example.net>"],
        "bcc": ["hidden@example.net"],
        "reply_to": ["replies@example.com"],
        "headers": [("X-Campaign", "spring"), ("List-Unsubscribe", "<https://example.com/u>")],
        "text": "Grüße\n",
        "html": '<p>Grüße</p><img src="cid:logo@x">',
        "attachments": [
            attachment("résumé.pdf", PDF, "application/pdf"),
            attachment("logo.png", PNG, "image/png", inline=True, content_id="logo@x"),
        ],
    },
    "encodings": {
        "subject": "Привет",
        "text": "plain ascii but a very long line " * 5,
        "html": "<p>Привет, как дела? Всё хорошо, спасибо!</p>",
    },
}


def describe(shape: dict[str, Any]) -> str:
    built = build(**shape)
    raw = built.as_bytes()
    check_wire(raw)
    msg = parse(raw)
    assert not msg.defects
    lines = ["headers: " + ", ".join(header_names(msg)), *tree(msg)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_golden_structure(name: str) -> None:
    got = describe(SHAPES[name])
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("FASTSMTP_UPDATE_GOLDEN") == "1":
        path.write_text(got)
    assert got == path.read_text(), f"structure of {name!r} changed; see {path}"


def test_boundaries_unique_and_absent_from_content() -> None:
    built = build(**SHAPES["full"])
    raw = built.as_bytes()
    boundaries = re.findall(rb'boundary="([^"]+)"', raw)
    assert len(boundaries) == 3
    assert len(set(boundaries)) == 3
    for b in boundaries:
        # "--boundary" only ever starts a line (a delimiter), never sits inside content.
        at = raw.find(b"--" + b)
        while at != -1:
            assert raw[at - 2 : at] == b"\r\n"
            at = raw.find(b"--" + b, at + 1)
    again = build(**SHAPES["full"]).as_bytes()
    assert set(re.findall(rb'boundary="([^"]+)"', again)).isdisjoint(boundaries)


def test_related_names_its_root_type() -> None:
    """RFC 2387 3.1: multipart/related carries the type of its root part."""
    msg = parse(build(**SHAPES["html_inline"]).as_bytes())
    assert msg.get_param("type") == "text/html"


def test_boundary_like_text_is_safe() -> None:
    """7bit text full of things that look like our boundaries still parses as written."""
    text = "".join(f"--=_{d}\n--=_{d}0123456789abcdef--\n" for d in range(3))
    built = build(text=text, html="<p>x</p>")
    msg = parse(built.as_bytes())
    body = msg.get_body(("plain",))
    assert body is not None
    assert body.get_content().replace("\r\n", "\n") == text


def test_wire_limits_under_pathological_input() -> None:
    """No line over 998 octets, header lines folded at 78 where there is whitespace, CRLF
    only, whatever the input: huge unbroken words, mixed newlines, NULs in bodies."""
    url = "<https://example.com/u?" + "t" * 1500 + ">"
    built = build(
        subject="word " * 60 + "x" * 1200,
        to=[f"Person {i} <p{i}@example.org>" for i in range(30)],
        text="a" * 5000 + "\r" + "b\n" * 3 + ".\r\n" + "\0 nul\r\r\n",
        html="<p>" + "é" * 3000 + "</p>",
        headers=[("List-Unsubscribe", url), ("X-Words", "w " * 200)],
        attachments=[attachment("n" * 300 + ".bin", b"\r\n" * 5000)],
    )
    raw = built.as_bytes()
    check_wire(raw)
    head = raw.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        if len(line) > 78:
            # only a header that has no whitespace to fold at may be longer: none here
            # but the (encoded-word) subject tail and the URL
            assert b" " not in line.strip() or line.startswith(b"List-Unsubscribe"), line[:80]
    msg = parse(raw)
    assert msg["List-Unsubscribe"] == url
    assert msg["X-Words"] == "w " * 200  # trailing space kept (sent as encoded-words)
    assert msg["subject"] == "word " * 60 + "x" * 1200
