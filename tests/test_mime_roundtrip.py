"""Round-trip property tests: every generated message, parsed back by Python's ``email``
(policy.default), yields the same subject, addresses, text, html, attachment bytes and
filenames; over unicode, long lines, lines that are only ".", CR/LF mixes, empty bodies
and large attachments. The raw bytes are checked for CRLF-only and the 998-octet limit."""

from __future__ import annotations

import email
import email.header
import email.parser
import email.policy
import email.utils
import random
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from fastsmtp import _fastsmtp
from tests import hypothesis_profiles
from tests.mime_support import (
    BIDI_CONTROLS,
    attachment,
    body_text,
    check_wire,
    default_ignorable,
    normalize_text,
    parse,
    spec,
)

hypothesis_profiles.load()

# Header text: no surrogates (which cannot be encoded), and none of what header values
# refuse (controls but TAB, U+2028/U+2029: see test_mime_validation); format characters
# such as zero-width joiners are allowed there.
HEADER_TEXT = st.text(
    st.characters(exclude_categories=("Cs", "Cc", "Zl", "Zp"), include_characters="\t"),
    max_size=120,
)
ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
ATOM = st.text(st.sampled_from(ATEXT), min_size=1, max_size=10)
LOCAL = st.lists(ATOM, min_size=1, max_size=3).map(".".join)
# IDNA labels for which IDNA 2003 (Python's codec) and IDNA 2008 agree.
UNICODE_LABELS = ["bücher", "münchen", "пример", "例え", "δοκιμή", "mañana", "ÆØÅ".lower()]
LABEL = st.one_of(
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True),
    st.sampled_from(UNICODE_LABELS),
)
DOMAIN = st.tuples(st.lists(LABEL, min_size=1, max_size=2), st.sampled_from(["com", "org", "de"]))
DOMAIN = DOMAIN.map(lambda t: ".".join([*t[0], t[1]]))
NAME = st.one_of(
    st.none(),
    HEADER_TEXT.map(lambda s: s[:40]),
    st.sampled_from(["Lee, Ann", 'J. "Bob" Dobbs', "back\\slash", "Jörg Müller", "李小龍"]),
)


def ascii_domain(domain: str) -> str:
    return ".".join(
        label if label.isascii() else label.encode("idna").decode() for label in domain.split(".")
    )


@st.composite
def mailboxes(draw: st.DrawFn) -> tuple[str, str | None, str, str]:
    """(input string, display name, local, domain)."""
    name = draw(NAME)
    local = draw(LOCAL)
    domain = draw(DOMAIN)
    if name is None or name == "":
        return f"{local}@{domain}", None, local, domain
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{local}@{domain}>', name, local, domain


# Bodies: unicode with every kind of newline, lines that are only ".", long lines.
BODY_PIECES = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=80),
    st.sampled_from(["\n", "\r\n", "\r", ".", "\n.\n", "\r\n.\r\n", "From the start\n", "=", " "]),
    st.integers(70, 1200).map(lambda n: "x" * n),
    st.integers(70, 300).map(lambda n: "ü" * n),
)
BODY = st.one_of(st.none(), st.just(""), st.lists(BODY_PIECES, max_size=12).map("".join))


class Blob(bytes):
    """Attachment content with a short repr (hypothesis prints drawn arguments)."""

    def __repr__(self) -> str:
        return f"Blob(<{len(self)} random octets>)"


CONTENT_TYPES = ["application/pdf", "image/png", "application/octet-stream", "text/csv"]


@st.composite
def attachments(draw: st.DrawFn) -> dict[str, Any]:
    filename = draw(
        st.one_of(
            st.text(
                st.characters(
                    exclude_categories=("Cs", "Cc", "Zl", "Zp"), exclude_characters=BIDI_CONTROLS
                ),
                min_size=1,
                max_size=90,
            ).filter(lambda s: s.strip() == s and s.strip()),
            st.sampled_from(["report.pdf", "résumé.pdf", "数据.csv", "a b.txt", 'q"uote.bin']),
        )
    )
    size = draw(st.sampled_from([0, 1, 57, 100, 5000, 200_000]))
    content = Blob(random.Random(draw(st.integers(0, 2**32))).randbytes(size))
    inline = draw(st.booleans())
    return attachment(
        filename,
        content,
        draw(st.sampled_from(CONTENT_TYPES)),
        inline=inline,
        content_id=f"part{draw(st.integers(0, 999))}@example.com" if inline else None,
    )


def fold_ws(s: str) -> str:
    """Drop whitespace (in Python's broad sense, which its header parser uses)."""
    return "".join(c for c in s if not c.isspace())


def check_mailbox(parsed: Any, name: str | None, local: str, domain: str) -> None:
    assert parsed.username == local
    assert parsed.domain == ascii_domain(domain)
    want = name or ""
    if want.isascii() and want.isprintable():
        # printable ASCII goes as atoms or a quoted-string: exact
        assert parsed.display_name == want
    else:
        # Other names go as RFC 2047 encoded-words. Python's phrase parser treats whitespace
        # in decoded words as folding whitespace (collapsing runs, tab -> space) and
        # keeps the folding whitespace between adjacent encoded-words (RFC 2047 6.2 says to
        # drop it), so compare without them here; rfc2047_names checks exactly.
        assert fold_ws(parsed.display_name) == fold_ws(want)


def rfc2047_names(raw: bytes, header: str) -> list[str]:
    """Display names of an address header, decoded per RFC 2047 (compat32 parsing and
    email.header, which drop the whitespace between adjacent encoded-words)."""
    msg = email.message_from_bytes(raw)
    values = msg.get_all(header) or []
    names = []
    for name, _addr in email.utils.getaddresses([str(v) for v in values]):
        names.append(str(email.header.make_header(email.header.decode_header(name))))
    return names


@given(
    sender=mailboxes(),
    to=st.lists(mailboxes(), min_size=1, max_size=4),
    cc=st.lists(mailboxes(), max_size=2),
    bcc=st.lists(mailboxes(), max_size=2),
    subject=HEADER_TEXT,
    text=BODY,
    html=BODY,
    atts=st.lists(attachments(), max_size=3),
    extra=st.lists(
        st.tuples(st.sampled_from(["X-Tag", "X-Campaign", "List-Id"]), HEADER_TEXT),
        max_size=2,
        unique_by=lambda t: t[0],
    ),
)
@example(
    sender=("ann@example.com", None, "ann", "example.com"),
    to=[("bob@bücher.de", None, "bob", "bücher.de")],
    cc=[],
    bcc=[],
    subject="",
    text="",
    html=None,
    atts=[],
    extra=[],
)
def test_round_trip(
    sender: tuple[str, str | None, str, str],
    to: list[tuple[str, str | None, str, str]],
    cc: list[tuple[str, str | None, str, str]],
    bcc: list[tuple[str, str | None, str, str]],
    subject: str,
    text: str | None,
    html: str | None,
    atts: list[dict[str, Any]],
    extra: list[tuple[str, str]],
) -> None:
    built = _fastsmtp.build_message(
        spec(
            sender=sender[0],
            to=[m[0] for m in to],
            cc=[m[0] for m in cc],
            bcc=[m[0] for m in bcc],
            subject=subject,
            text=text,
            html=html,
            attachments=atts,
            headers=extra,
        )
    )
    raw = built.as_bytes()
    assert len(raw) == len(built)
    check_wire(raw)
    assert not built.smtputf8 and not built.eight_bit
    msg = parse(raw)
    assert not msg.defects, msg.defects

    assert (msg["subject"] or "") == subject
    check_mailbox(msg["from"].addresses[0], *sender[1:])
    assert len(msg["to"].addresses) == len(to)
    for parsed, want in zip(msg["to"].addresses, to, strict=True):
        check_mailbox(parsed, *want[1:])
    if cc:
        for parsed, want in zip(msg["cc"].addresses, cc, strict=True):
            check_mailbox(parsed, *want[1:])
    assert msg["bcc"] is None
    assert rfc2047_names(raw, "To") == [m[1] or "" for m in to]
    assert rfc2047_names(raw, "Cc") == [m[1] or "" for m in cc]
    assert built.recipients == [f"{m[2]}@{ascii_domain(m[3])}" for m in (*to, *cc, *bcc)]
    assert built.envelope_sender == f"{sender[2]}@{ascii_domain(sender[3])}"
    for name, value in extra:
        assert msg[name] == value

    has_html = html is not None
    single = not msg.is_multipart()
    if text is not None or not (has_html or atts):
        assert body_text(msg, "plain") == normalize_text(text or "", single_part=single)
    if has_html:
        assert body_text(msg, "html") == normalize_text(html or "", single_part=single)

    got = sorted(
        (p.get_filename(), p.get_content_type(), p.get_payload(decode=True))
        for p in msg.walk()
        if p.get_filename() is not None
    )
    want = sorted((a["filename"], a["content_type"], a["content"]) for a in atts)
    assert got == want


@given(
    name=st.one_of(st.none(), HEADER_TEXT.map(lambda s: s[:30])),
    local=st.text(
        st.characters(
            exclude_categories=("Cs", "Cc", "Cf", "Zs", "Zl", "Zp"),
            exclude_characters='@<>()[]\\,;:". ',
        ).filter(lambda c: not default_ignorable(c)),
        min_size=1,
        max_size=12,
    ).filter(lambda s: not s.isascii() and len(s.encode()) <= 64),
    subject=HEADER_TEXT,
)
def test_smtputf8_round_trip(name: str | None, local: str, subject: str) -> None:
    """A non-ASCII local part: the message needs SMTPUTF8 and carries UTF-8 (RFC 6532) in
    the address; everything else is still encoded."""
    to = f"{local}@例え.jp"
    if name:
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        to = f'"{quoted}" <{to}>'
    built = _fastsmtp.build_message(spec(to=[to], subject=subject))
    raw = built.as_bytes()
    assert built.smtputf8 and built.eight_bit
    check_wire(raw, utf8=True)
    assert built.recipients == [f"{local}@xn--r8jz45g.jp"]
    # Python's BytesParser reads header octets as ASCII (surrogate-escaped); an RFC 6532
    # message is read by decoding it as UTF-8 first.
    msg = email.parser.Parser(policy=email.policy.default).parsestr(raw.decode("utf-8"))
    address = msg["to"].addresses[0]
    assert address.username == local
    assert address.domain == "xn--r8jz45g.jp"
    check_mailbox(address, name, local, "例え.jp")
    assert (msg["subject"] or "") == subject
