"""Every rejection path of the MIME core: each raises InvalidMessage (a ValueError) naming
the field, before any byte could be sent."""

from __future__ import annotations

from typing import Any

import pytest

from fastsmtp import _fastsmtp
from fastsmtp._errors import InvalidMessage, TemplateError
from tests.mime_support import attachment, spec

BAD_ADDRESSES = [
    pytest.param("", id="empty"),
    pytest.param("bob", id="no-domain"),
    pytest.param("bob@", id="empty-domain"),
    pytest.param("@example.org", id="empty-local"),
    pytest.param("bob smith@example.org", id="space-in-local"),
    pytest.param("bob@exa mple.org", id="space-in-domain"),
    pytest.param("Bob bob@example.org", id="name-without-brackets"),
    pytest.param("bob@example.org> NOTIFY=NEVER", id="angle-injection"),
    pytest.param("Bob <bob@example.org> <eve@example.org>", id="two-addresses"),
    pytest.param("Bob <bob@example.org", id="unclosed-angle"),
    pytest.param("bob@example.org\r\nRCPT TO:<eve@example.org>", id="crlf-injection"),
    pytest.param("Bob\n <bob@example.org>", id="lf-in-name"),
    pytest.param("bob\0@example.org", id="nul"),
    pytest.param("bob..smith@example.org", id="double-dot"),
    pytest.param("bob@example..org", id="empty-label"),
    pytest.param("bob@-example.org", id="leading-hyphen"),
    pytest.param("bob@exam_ple.org", id="underscore-domain"),
    pytest.param("b(ob)@example.org", id="comment-chars"),
    pytest.param("a" * 65 + "@example.org", id="long-local"),
    pytest.param("bob@[999.1.1.1]", id="bad-literal"),
    pytest.param('"unterminated@example.org', id="bad-quote"),
]


def build(**overrides: Any) -> _fastsmtp.BuiltMessage:
    return _fastsmtp.build_message(spec(**overrides))


def expect_invalid(field: str, **overrides: Any) -> InvalidMessage:
    with pytest.raises(InvalidMessage) as info:
        build(**overrides)
    assert info.value.field == field, info.value
    assert isinstance(info.value, ValueError)
    assert not isinstance(info.value, TemplateError)
    return info.value


@pytest.mark.parametrize("address", BAD_ADDRESSES)
@pytest.mark.parametrize("field", ["to", "cc", "bcc", "reply_to"])
def test_bad_recipient_address(field: str, address: str) -> None:
    overrides: dict[str, Any] = {field: ["ok@example.org", address]}
    if field == "to":
        overrides["to"] = ["ok@example.org", address]
    expect_invalid(f"{field}[1]", **overrides)


@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_bad_sender(address: str) -> None:
    expect_invalid("sender", sender=address)


@pytest.mark.parametrize("address", ["a b@c.org", "x@", "<x@y.org", "x@y.org\n"])
def test_bad_envelope_sender(address: str) -> None:
    expect_invalid("envelope_sender", envelope_sender=address)


def test_missing_sender() -> None:
    expect_invalid("sender", sender=None)
    s = spec()
    del s["sender"]
    with pytest.raises(InvalidMessage) as info:
        _fastsmtp.build_message(s)
    assert info.value.field == "sender"


@pytest.mark.parametrize("bad", ["a\rb", "a\nb", "a\r\nBcc: eve@example.org", "nul\0"])
def test_ctl_in_subject(bad: str) -> None:
    error = expect_invalid("subject", subject=bad)
    assert "not allowed" in str(error)


@pytest.mark.parametrize("bad", ["a\rb", "a\nb", "x\r\nBcc: eve@example.org", "\0"])
def test_ctl_in_header_value(bad: str) -> None:
    expect_invalid("headers[X-Tag]", headers=[("X-Tag", bad)])


@pytest.mark.parametrize(
    "name", ["X Tag", "X:Tag", "X-Tägg", "", "X-\r\nBcc", "X\0", "X" * 77], ids=repr
)
def test_bad_header_name(name: str) -> None:
    expect_invalid(f"headers[{name}]", headers=[(name, "v")])


@pytest.mark.parametrize(
    "name",
    [
        "Content-Type",
        "content-type",
        "Content-Transfer-Encoding",
        "Content-Disposition",
        "MIME-Version",
        "Bcc",
        "BCC",
        "From",
        "To",
        "Cc",
        "Reply-To",
        "Subject",
        "Date",
        "Message-ID",
        "Return-Path",
    ],
)
def test_structural_headers_refused(name: str) -> None:
    error = expect_invalid(f"headers[{name}]", headers=[(name, "x")])
    assert "cannot be given in headers" in str(error)


@pytest.mark.parametrize("name", ["Sender", "In-Reply-To", "References", "List-Unsubscribe"])
def test_other_headers_allowed(name: str) -> None:
    raw = build(headers=[(name, "<a@b.c>")]).as_bytes()
    assert f"\r\n{name}: <a@b.c>\r\n".encode() in raw


@pytest.mark.parametrize(
    "message_id", ["<a b@c>", "no-at-sign", "<a@b>\r\n", "<a<b@c>", "@c", "<>", "a@b@c"]
)
def test_bad_message_id(message_id: str) -> None:
    expect_invalid("message_id", message_id=message_id)


def test_given_message_id_is_used() -> None:
    built = build(message_id="abc.123@example.com")
    assert built.message_id == "<abc.123@example.com>"
    assert b"\r\nMessage-ID: <abc.123@example.com>\r\n" in built.as_bytes()


@pytest.mark.parametrize("date", ["Mon\r\n", "Mo\0n", "Montag, 1. März", "  "])
def test_bad_date(date: str) -> None:
    expect_invalid("date", date=date)


@pytest.mark.parametrize("filename", ["a\rb.pdf", "a\nb.pdf", "a\0.pdf"])
def test_bad_attachment_filename(filename: str) -> None:
    expect_invalid("attachments[0].filename", attachments=[attachment(filename)])


@pytest.mark.parametrize(
    "content_type", ["pdf", "application/", "/pdf", "text/plain\r\nX: y", "multipart/mixed"]
)
def test_bad_attachment_content_type(content_type: str) -> None:
    att = attachment(content_type=content_type)
    expect_invalid("attachments[0].content_type", attachments=[att])
    # the index names the right attachment
    expect_invalid("attachments[1].content_type", attachments=[attachment(), att])


@pytest.mark.parametrize("cid", ["a b", "a\r\nb", "<a<b>", "x" * 251])
def test_bad_content_id(cid: str) -> None:
    att = attachment(inline=True, content_id=cid)
    expect_invalid("attachments[0].content_id", html="<p>", attachments=[att])


def test_wrong_types_are_type_errors() -> None:
    with pytest.raises(TypeError):
        build(subject=3)
    with pytest.raises(TypeError):
        build(to=[1])
    with pytest.raises(TypeError):
        build(attachments=[attachment(content="not bytes")])  # type: ignore[arg-type]


def test_template_spec_errors() -> None:
    with pytest.raises(InvalidMessage) as info:
        _fastsmtp.Template(spec(to=["x@example.org"]))
    assert info.value.field == "to"
    with pytest.raises(InvalidMessage) as info:
        _fastsmtp.Template(spec(to=[], message_id="<a@b>"))
    assert info.value.field == "message_id"
    with pytest.raises(InvalidMessage) as info:
        _fastsmtp.Template(spec(to=[], sender="nobody"))
    assert info.value.field == "sender"


@pytest.mark.parametrize("field", ["subject", "text", "html"])
def test_template_syntax_error_names_field(field: str) -> None:
    with pytest.raises(TemplateError) as info:
        _fastsmtp.Template(spec(to=[], **{field: "{{ broken"}))
    assert info.value.field == field
    assert info.value.variable is None


def test_template_header_syntax_error() -> None:
    with pytest.raises(TemplateError) as info:
        _fastsmtp.Template(spec(to=[], headers=[("X-Tag", "{% if %}")]))
    assert info.value.field == "headers[X-Tag]"


@pytest.mark.parametrize(
    ("envelope_sender", "want"),
    [
        (None, "ann@example.com"),
        ("", ""),
        ("<>", ""),
        ("bounces@example.com", "bounces@example.com"),
        ("Bounces <b@bücher.de>", "b@xn--bcher-kva.de"),
    ],
)
def test_envelope_sender(envelope_sender: str | None, want: str) -> None:
    built = build(envelope_sender=envelope_sender, bcc=["hidden@münchen.de"])
    assert built.envelope_sender == want
    assert built.recipients == ["bob@example.org", "hidden@xn--mnchen-3ya.de"]
    raw = built.as_bytes()
    assert b"hidden" not in raw
    assert b"Return-Path" not in raw
