"""A text or HTML part decodes to exactly the text it was given.

RFC 2046 5.1.1: "The CRLF preceding the boundary delimiter line is conceptually attached to
the boundary", so a part inside a multipart must not gain a line break of its own: "Text
part ✓" is read back as "Text part ✓", not "Text part ✓\\n". Line breaks are normalised to
CRLF on the wire (so a reader sees "\\n" for each "\\r\\n", "\\r" or "\\n" given), and a
message that is a single text part ends with one line break, because DATA needs its last
line ended; smtplib (and so Django's SMTP backend) adds the same one.

Checked for ``fastsmtp.Message`` and for templates (a static part, a part that is one
variable, a part with literals around a variable), in every MIME shape and with every
transfer encoding fastsmtp chooses (7bit, quoted-printable, base64), parsed back by
Python's ``email`` and, end to end, from a real Postfix Maildir.
"""

from __future__ import annotations

import uuid
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import fastsmtp
from fastsmtp import _fastsmtp
from tests import hypothesis_profiles
from tests.mime_support import DATE, check_wire, parse, spec
from tests.peers.postfix import PostfixInstance

hypothesis_profiles.load()

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
INLINE = {
    "filename": "logo.png",
    "content": PNG,
    "content_type": "image/png",
    "inline": True,
    "content_id": "logo@x",
}
ATTACHED = {
    "filename": "a.pdf",
    "content": b"%PDF" * 50,
    "content_type": "application/pdf",
    "inline": False,
    "content_id": None,
}
# (has text, has html, attachments): every shape of builder::layout.
SHAPES: dict[str, tuple[bool, bool, list[dict[str, Any]]]] = {
    "text": (True, False, []),
    "html": (False, True, []),
    "alternative": (True, True, []),
    "related": (False, True, [INLINE]),
    "alternative_related": (True, True, [INLINE]),
    "mixed_text": (True, False, [ATTACHED]),
    "mixed_html": (False, True, [ATTACHED]),
    "mixed_everything": (True, True, [ATTACHED, INLINE]),
}

# Texts with what tends to break exactness: line breaks of every kind (also at the very
# end, or missing there), lines that are only dots, trailing spaces and tabs, "From " lines,
# "=", long lines, non-ASCII (Latin for quoted-printable, Cyrillic/CJK for base64).
PIECES = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="{}"), max_size=30),
    st.sampled_from(
        ["\n", "\r\n", "\r", ".", "..", "\n.\n", " ", "\t", "  \n", "From me", "=", "ü", "✓"]
    ),
    st.sampled_from(["Привет, как дела? ", "日本語のテキスト"]),
    st.integers(70, 200).map(lambda n: "x" * n),
)
TEXT = st.lists(PIECES, max_size=10).map("".join)


def expected(text: str, *, single_part: bool) -> str:
    """What a reader must get back: line breaks as "\\n", else exactly ``text``."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if single_part and text and not text.endswith("\n"):
        text += "\n"  # DATA needs the last line ended (see the module docs)
    return text


def escape_html(s: str) -> str:
    """The template engine's HTML escaping (MarkupSafe's: & < > " ')."""
    for a, b in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&#34;"), ("'", "&#39;")):
        s = s.replace(a, b)
    return s


def content(msg: EmailMessage, subtype: str) -> tuple[str, str]:
    """The decoded text of the ``text/<subtype>`` body and its transfer encoding."""
    part = msg.get_body((subtype,))
    assert part is not None, subtype
    text = part.get_content()
    assert isinstance(text, str)
    return text.replace("\r\n", "\n"), part.get("Content-Transfer-Encoding", "7bit")


def check(raw: bytes, text: str | None, html: str | None) -> set[str]:
    """Both bodies exact; returns the transfer encodings seen."""
    check_wire(raw)
    msg = parse(raw)
    assert not msg.defects, msg.defects
    single = not msg.is_multipart()
    seen = set()
    for subtype, want in (("plain", text), ("html", html)):
        if want is None:
            continue
        got, cte = content(msg, subtype)
        assert got == expected(want, single_part=single), (subtype, cte)
        seen.add(cte)
    return seen


def message_bytes(shape: str, text: str, html: str) -> tuple[bytes, str | None, str | None]:
    has_text, has_html, atts = SHAPES[shape]
    t, h = (text if has_text else None), (html if has_html else None)
    message = fastsmtp.Message(
        sender="Ann <ann@example.com>",
        to=["bob@example.org"],
        subject="exact",
        text=t,
        html=h,
        attachments=[fastsmtp.Attachment(**a) for a in atts],
        date=DATE,
    )
    return message.as_bytes(), t, h


@given(shape=st.sampled_from(sorted(SHAPES)), text=TEXT, html=TEXT)
@example(shape="alternative", text="Text part ✓", html="<p>HTML ✓</p>")
@example(shape="mixed_text", text="ends with a space ", html="")
@example(shape="alternative", text="a\r\n.\r\n", html=".")
@example(shape="text", text="no final break", html="")
def test_message_parts_decode_exactly(shape: str, text: str, html: str) -> None:
    raw, t, h = message_bytes(shape, text, html)
    check(raw, t, h)


# How the template's text and html are written (the data holds the user's text as "t"/"h").
FORMS = {
    "static": lambda s, var: s,  # no variable: encoded once per batch
    "variable": lambda s, var: f"{{{{ {var} }}}}",  # the whole part is one value
    "literals": lambda s, var: f"<{var}>{{{{ {var} }}}}{s}",  # literals around a value
}


def template_expectations(form: str, text: str, html: str) -> tuple[str, str]:
    if form == "static":
        return text, html
    if form == "variable":
        return text, escape_html(html)
    return f"<t>{text}{text}", f"<h>{escape_html(html)}{html}"


@given(
    shape=st.sampled_from(sorted(SHAPES)),
    form=st.sampled_from(sorted(FORMS)),
    text=TEXT,
    html=TEXT,
)
@example(shape="alternative", form="variable", text="Text part ✓", html="HTML ✓")
@example(shape="alternative", form="literals", text="clean 7bit", html="clean")
@example(shape="related", form="static", text="", html="<img src=cid:logo@x>")
def test_template_parts_decode_exactly(shape: str, form: str, text: str, html: str) -> None:
    has_text, has_html, atts = SHAPES[shape]
    make = FORMS[form]
    template = _fastsmtp.Template(
        spec(
            to=[],
            text=make(text, "t") if has_text else None,
            html=make(html, "h") if has_html else None,
            attachments=atts,
        )
    )
    (built,) = template.render([("bob@example.org", None, {"t": text, "h": html})])
    assert isinstance(built, _fastsmtp.BuiltMessage), built
    want_text, want_html = template_expectations(form, text, html)
    check(built.as_bytes(), want_text if has_text else None, want_html if has_html else None)


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize(
    ("text", "cte"),
    [
        ("Plain 7bit, no final break", "7bit"),
        ("Text part ✓ and a trailing space ", "quoted-printable"),
        ("Привет, как дела? Всё хорошо", "base64"),
    ],
)
def test_every_transfer_encoding_in_every_shape(shape: str, text: str, cte: str) -> None:
    raw, t, h = message_bytes(shape, text, text)
    assert check(raw, t, h) == {cte}


async def test_postfix_delivers_parts_exactly(postfix: PostfixInstance) -> None:
    """End to end: through a real Postfix into its Maildir, both alternatives exact."""
    assert postfix.pki is not None
    rcpt = f"exact-{uuid.uuid4().hex[:8]}@example.org"
    texts = {"plain": "Text part ✓", "html": "<p>HTML part ✓</p>"}
    message = fastsmtp.Message(
        sender="ann@example.com",
        to=[rcpt],
        subject="exact parts",
        text=texts["plain"],
        html=texts["html"],
    )
    async with fastsmtp.Engine(
        postfix.host, postfix.port, tls="starttls", ssl_context=postfix.pki.client_context()
    ) as engine:
        (result,) = await engine.send(message)
    assert result.ok, result
    (raw,) = postfix.messages_for(rcpt)
    msg = parse(raw)
    for subtype, want in texts.items():
        assert content(msg, subtype)[0] == want
