"""``Attachment.content_type`` with parameters (``text/plain; charset=utf-8; name="x"``):
parsed in Rust (RFC 2045 5.1, RFC 2231 extended values), merged with the ``name`` that the
file name gives (never twice), and written again by fastsmtp's own parameter writer, so a
value cannot close its parameter or the header. A ``name`` that contradicts the file name,
a repeated parameter or an RFC 2231 continuation is refused, naming the field."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastsmtp
from fastsmtp._errors import InvalidMessage
from fastsmtp.testing import CaptureServer
from tests import hypothesis_profiles
from tests.mime_support import DATE, parse

hypothesis_profiles.load()


def message(*attachments: fastsmtp.Attachment) -> fastsmtp.Message:
    return fastsmtp.Message(
        sender="ann@example.com",
        to=["bob@example.org"],
        subject="params",
        text="see attached",
        attachments=list(attachments),
        date=DATE,
    )


def attachment_part_header(raw: bytes) -> str:
    """The attachment's Content-Type field, unfolded."""
    fields = re.findall(rb"^Content-Type:.*(?:\r\n[ \t].*)*", raw, re.MULTILINE)
    return fields[-1].replace(b"\r\n", b"").decode()


@pytest.mark.parametrize(
    ("content_type", "params"),
    [
        ('text/plain; name="notes.txt"', {"name": "notes.txt"}),
        ("text/plain; charset=utf-8", {"charset": "utf-8", "name": "notes.txt"}),
        (
            'Text/Plain; Charset="UTF-8"; NAME=notes.txt; format=flowed',
            {"charset": "UTF-8", "name": "notes.txt", "format": "flowed"},
        ),
        ("text/plain; name*=utf-8''notes.txt", {"name": "notes.txt"}),
    ],
)
def test_parameters_merge_with_the_file_name(content_type: str, params: dict[str, str]) -> None:
    att = fastsmtp.Attachment(filename="notes.txt", content=b"a\nb\n", content_type=content_type)
    raw = message(att).as_bytes()
    header = attachment_part_header(raw)
    assert header.lower().count("name=") == 1, header  # today's bug: name= twice
    (part,) = parse(raw).iter_attachments()
    assert part.get_content_type() == "text/plain"
    assert {k: part.get_param(k) for k in params} == params
    assert part.get_filename() == "notes.txt"
    assert part.get_payload(decode=True) == b"a\nb\n"


@pytest.mark.parametrize(
    ("content_type", "why"),
    [
        ('text/plain; name="other.txt"', "differs from the filename"),
        ("text/plain; charset=utf-8; charset=latin-1", "more than once"),
        ("text/plain; name*0=notes; name*1=.txt", "continuations"),
        ("text/plain; name*=iso-8859-1''notes.txt", "charset"),
        ("text/plain charset=utf-8", "parameters follow"),
        ('text/plain; name="unterminated', "unterminated"),
        ('text/plain; name="notes.txt"\r\nBcc: eve@example.org', "CR"),
        ("text/plain; x=\u2028", "LINE SEPARATOR"),
        ("multipart/mixed; boundary=x", "multipart"),
    ],
)
def test_bad_parameters_are_refused(content_type: str, why: str) -> None:
    att = fastsmtp.Attachment(filename="notes.txt", content=b"x", content_type=content_type)
    with pytest.raises(InvalidMessage, match=why) as info:
        message(att).as_bytes()
    assert info.value.field == "attachments[0].content_type"


# Any value, quoted the way RFC 2045 quotes (backslash before " and \): it comes back whole.
VALUES = st.text(
    st.characters(exclude_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=80
)


@given(value=VALUES, attribute=st.sampled_from(["format", "x-note", "report-type"]))
def test_any_quoted_value_round_trips_and_stays_inside_its_parameter(
    value: str, attribute: str
) -> None:
    quoted = value.replace("\\", "\\\\").replace('"', '\\"')
    att = fastsmtp.Attachment(
        filename="a.bin",
        content=b"\x00\x01",
        content_type=f'application/x-test; {attribute}="{quoted}"',
    )
    raw = message(att).as_bytes()
    msg = parse(raw)
    assert not msg.defects
    (part,) = msg.iter_attachments()
    assert part.get_content_type() == "application/x-test"
    # The header object's params: get_param() re-quotes RFC 2231 values and breaks one
    # that ends in a backslash ("\\" comes back as '"; name="a.bin'), a stdlib quirk.
    params = part["Content-Type"].params
    assert params[attribute] == value
    assert part.get_filename() == "a.bin"
    # Exactly the parameters given and the name: nothing leaked out of the value.
    assert sorted(params) == sorted([attribute, "name"])
    assert list(part.keys()) == [
        "Content-Type",
        "Content-Disposition",
        "Content-Transfer-Encoding",
    ]


async def test_delivered_attachment_keeps_its_parameters() -> None:
    """Through a real SMTP server (aiosmtpd): one name, the caller's charset."""
    att = fastsmtp.Attachment(
        filename="résumé.txt", content="héllo".encode(), content_type="text/plain; charset=utf-8"
    )
    with CaptureServer() as server:
        async with fastsmtp.Engine("127.0.0.1", server.port, tls="none") as engine:
            (result,) = await engine.send(message(att))
        assert result.ok, result
        (captured,) = server.wait_for(1)
    (part,) = parse(captured.content).iter_attachments()
    assert part.get_filename() == "résumé.txt"
    assert part.get_content_charset() == "utf-8"
    assert part.get_content() == "héllo"
