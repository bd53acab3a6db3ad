"""Template rendering: variables and their precedence, HTML escaping (html part only),
undefined variables named per recipient, header injection through data refused, shared
parts encoded once per batch, and rendered messages that round-trip through Python's
``email``."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastsmtp import _fastsmtp
from fastsmtp._engine import _split_signed
from fastsmtp._errors import InvalidMessage, TemplateError
from fastsmtp._models import Attachment, Message
from tests import hypothesis_profiles
from tests.mime_support import attachment, body_text, check_wire, normalize_text, parse, spec

hypothesis_profiles.load()


def template(data: dict[str, Any] | None = None, **overrides: Any) -> _fastsmtp.Template:
    base = {
        "to": [],
        "subject": "Hello {{ name }}",
        "text": "Hi {{ first }},\nyour code is {{ code }}.\n",
        "html": "<p>Hi {{ first }}, your code is <b>{{ code }}</b>.</p>\n",
    }
    base.update(overrides)
    return _fastsmtp.Template(spec(**base), data)


def one(t: _fastsmtp.Template, address: str, name: str | None, data: Any) -> Any:
    (result,) = t.render([(address, name, data)])
    return result


def test_renders_each_recipient() -> None:
    t = template({"code": "BATCH"})
    out = t.render(
        [
            ("ann@example.org", "Ann", {"first": "Ann"}),
            ("Bob <bob@example.org>", None, {"first": "Bob", "code": "B-1"}),
        ]
    )
    assert len(out) == 2
    for built in out:
        assert isinstance(built, _fastsmtp.BuiltMessage)
        check_wire(built.as_bytes())
    ann, bob = (parse(b.as_bytes()) for b in out)
    assert ann["subject"] == "Hello Ann"
    assert str(ann["to"]) == "Ann <ann@example.org>"
    assert body_text(ann, "plain") == "Hi Ann,\nyour code is BATCH.\n"
    assert bob["subject"] == "Hello Bob"
    assert body_text(bob, "plain") == "Hi Bob,\nyour code is B-1.\n"
    assert out[0].recipients == ["ann@example.org"]
    assert out[0].message_id != out[1].message_id


def test_variable_precedence() -> None:
    """Recipient data, then address/email/name, then batch data."""
    t = template(
        {"who": "batch", "name": "batch-name"},
        subject="{{ who }}|{{ name }}|{{ address }}|{{ email }}",
        text=None,
        html=None,
    )
    msg = parse(one(t, "a@x.org", "Ann", {}).as_bytes())
    assert msg["subject"] == "batch|Ann|a@x.org|a@x.org"
    msg = parse(one(t, "a@x.org", None, {"who": "me", "address": "override"}).as_bytes())
    assert msg["subject"] == "me||override|a@x.org"


def test_html_escaped_text_and_subject_not() -> None:
    t = template(subject="{{ first }}")
    data = {"first": '<Tom & "Jerry">', "code": "<script>"}
    msg = parse(one(t, "a@x.org", None, data).as_bytes())
    assert msg["subject"] == '<Tom & "Jerry">'
    assert body_text(msg, "plain") == 'Hi <Tom & "Jerry">,\nyour code is <script>.\n'
    html = body_text(msg, "html")
    assert html is not None
    assert "&lt;Tom &amp; &#34;Jerry&#34;&gt;" in html
    assert "<b>&lt;script&gt;</b>" in html
    assert "<p>" in html  # the template's own markup is not escaped


def test_safe_filter_opts_out_of_escaping() -> None:
    t = template(html="{{ snippet|safe }}")
    msg = parse(
        one(t, "a@x.org", None, {"first": "", "code": "", "snippet": "<i>x</i>"}).as_bytes()
    )
    assert body_text(msg, "html") == "<i>x</i>"


def test_undefined_variable_is_named_per_recipient() -> None:
    t = template({"code": "c"})
    out = t.render([("a@x.org", None, {"first": "A"}), ("b@x.org", None, {})])
    assert isinstance(out[0], _fastsmtp.BuiltMessage)
    error = out[1]
    assert isinstance(error, TemplateError)
    assert isinstance(error, InvalidMessage)
    assert error.variable == "first"
    assert error.field in {"text", "html"}
    assert "first" in str(error)


def test_undefined_nested_attribute() -> None:
    t = template(text="{{ user.first_name }}", html=None, subject="x")
    error = one(t, "a@x.org", None, {"user": {"last_name": "L"}})
    assert isinstance(error, TemplateError)
    assert error.variable == "user.first_name"
    assert error.field == "text"


def test_conditional_use_of_missing_variable_is_fine() -> None:
    t = template(text="{% if nick is defined %}{{ nick }}{% else %}friend{% endif %}", html=None)
    msg = parse(one(t, "a@x.org", None, {}).as_bytes())
    assert body_text(msg, "plain") == "friend\n"


def test_variables_and_recipient_variables() -> None:
    t = template({"code": "c"}, headers=[("X-Ref", "{{ ref }}")])
    assert t.variables == frozenset({"name", "first", "code", "ref"})
    assert t.recipient_variables == frozenset({"first", "ref"})
    # the engine's "missing for every recipient" check is a set difference
    assert t.recipient_variables - {"first"} == {"ref"}


def test_bad_recipients_fail_in_their_slot() -> None:
    t = template({"code": "c", "first": "f"})
    out = t.render(
        [
            ("not an address", None, None),
            ("a@x.org", "Evil\r\nBcc: eve@x.org", None),
            ("", None, None),
            ("ok@x.org", None, None),
        ]
    )
    assert [type(r).__name__ for r in out] == [
        "InvalidMessage",
        "InvalidMessage",
        "InvalidMessage",
        "BuiltMessage",
    ]
    assert [getattr(r, "field", None) for r in out[:3]] == ["address", "name", "address"]


def test_render_split_keeps_messages_and_failures_apart() -> None:
    t = template({"code": "c", "first": "f"})
    items = [("a@x.org", None, None), ("bad", None, None), "b@x.org", ("c@x.org", "E\rvil", None)]
    messages, failures = t.render_split(items)
    together = t.render(items)
    assert [m.recipients for m in messages] == [["a@x.org"], ["b@x.org"]]
    assert [m.as_bytes().split(b"Message-ID")[0] for m in messages] == [
        r.as_bytes().split(b"Message-ID")[0] for r in together if not isinstance(r, Exception)
    ]
    assert [(p, type(e), e.field) for p, e in failures] == [
        (1, InvalidMessage, "address"),
        (3, InvalidMessage, "name"),
    ]
    assert t.render_split([]) == ([], [])


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"subject": "{{ first }}"}, "subject"),
        ({"headers": [("X-Tag", "{{ first }}")]}, "headers[X-Tag]"),
    ],
)
def test_header_injection_through_data_is_refused(overrides: dict[str, Any], field: str) -> None:
    t = template({"code": "c"}, **overrides)
    error = one(t, "a@x.org", None, {"first": "x\r\nBcc: eve@x.org"})
    assert isinstance(error, InvalidMessage)
    assert not isinstance(error, TemplateError)
    assert error.field == field


def test_recipient_name_is_encoded() -> None:
    t = template({"code": "c", "first": "f"})
    built = one(t, "jorg@bücher.de", "Jörg Müller, Jr.", None)
    raw = built.as_bytes()
    check_wire(raw)
    address = parse(raw)["to"].addresses[0]
    assert address.display_name == "Jörg Müller, Jr."
    assert address.domain == "xn--bcher-kva.de"
    assert built.recipients == ["jorg@xn--bcher-kva.de"]


def test_data_value_types() -> None:
    t = template(
        text="{{ n + 1 }} {{ f }} {{ b }} {{ items|join(',') }} {{ d.k }} {{ t[1] }} {{ o }}",
        html=None,
    )
    data = {
        "n": 41,
        "f": 1.5,
        "b": True,
        "items": ["a", "b"],
        "d": {"k": "v"},
        "t": (1, 2),
        "o": frozenset(),
        "first": "",
        "code": "",
    }
    msg = parse(one(t, "a@x.org", None, data).as_bytes())
    assert body_text(msg, "plain") == "42 1.5 True a,b v 2 frozenset()\n"


def test_shared_parts_are_encoded_once() -> None:
    """Attachments and unpersonalized bodies are encoded once per Template and every
    message refers to the same bytes."""
    pdf = bytes(range(256)) * 400
    t = template(
        {"code": "c"},
        html="<p>" + "static " * 2000 + "</p>",
        attachments=[attachment("report.pdf", pdf, "application/pdf")],
    )
    shared = t._shared_parts()
    assert len(shared) == 2  # the attachment and the static html
    out = t.render([(f"r{i}@x.org", None, {"first": str(i)}) for i in range(20)])
    for built in out:
        assert sorted(built._shared_chunks()) == sorted(shared)
        msg = parse(built.as_bytes())
        (att,) = msg.iter_attachments()
        assert att.get_payload(decode=True) == pdf


def test_render_releases_gil_and_is_thread_safe() -> None:
    t = template({"code": "c"})
    results: list[list[Any]] = []

    def work() -> None:
        results.append(t.render([(f"r{i}@x.org", None, {"first": str(i)}) for i in range(300)]))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    ids = {b.message_id for batch in results for b in batch}
    assert len(ids) == 1200


def test_message_model_as_bytes() -> None:
    msg = Message(
        sender="Ann <ann@example.com>",
        to="bob@example.org",
        subject="Report",
        text="See attached",
        attachments=[Attachment(filename="r.pdf", content=b"%PDF")],
    )
    parsed = parse(msg.as_bytes())
    assert parsed["subject"] == "Report"
    (att,) = parsed.iter_attachments()
    assert att.get_content_type() == "application/pdf"


WORDS = st.text(
    st.characters(exclude_categories=("Cs", "Cc", "Zl", "Zp"), exclude_characters="{}%#"),
    max_size=60,
)


@given(first=WORDS, code=WORDS, body=WORDS)
def test_rendered_round_trip(first: str, code: str, body: str) -> None:
    t = template(
        {"code": code},
        subject="Hi {{ first }}",
        text=body + "\n{{ first }}\r\n.\n{{ code }}",
        html="<p>{{ first }}</p>",
    )
    built = one(t, "a@x.org", None, {"first": first})
    raw = built.as_bytes()
    check_wire(raw)
    msg = parse(raw)
    assert msg["subject"] == f"Hi {first}"
    assert body_text(msg, "plain") == normalize_text(f"{body}\n{first}\r\n.\n{code}")
    escaped = (
        first.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("'", "&#39;")
    )
    assert body_text(msg, "html") == f"<p>{escaped}</p>"


def _without_random_headers(message: bytes) -> bytes:
    return b"\r\n".join(
        line for line in message.split(b"\r\n") if not line.startswith((b"Message-ID:", b"Date:"))
    )


def test_recipients_given_as_addresses_and_dicts_render_like_their_tuples() -> None:
    """render() reads plain addresses and the usual dicts itself; any other shape goes
    through ``normalize`` (the engine's _recipient_tuple). Both must give the same
    messages and the same failures as the normalized tuples."""
    from fastsmtp._engine import _recipient_tuple
    from fastsmtp._models import Recipient

    t = template({"first": "F", "code": "C"}, html=None)
    items: list[Any] = [
        "ann@example.org",
        "Ann Example <ann@example.org>",
        {"address": "bob@example.org", "name": "Bob", "first": "Bobby"},
        {"address": "bob@example.org", "name": None, "code": 7},
        {"address": "bob@example.org"},
        {"email": "eve@example.org", "name": "Eve"},  # the "email" alias
        {"address": "eve@example.org", "name": 5},  # a name that is not a str
        {"address": 5},  # an address that is not a str: a failed result
        {"name": "nobody"},
        Recipient(address="zed@example.org", name="Zed", data={"first": "Z"}),
        "not an address",
    ]
    direct = t.render(items, _recipient_tuple)
    via_tuples = t.render([_recipient_tuple(item) for item in items])
    assert len(direct) == len(via_tuples) == len(items)
    for item, a, b in zip(items, direct, via_tuples, strict=True):
        assert type(a) is type(b), item
        if isinstance(a, Exception):
            assert str(a) == str(b)
        else:
            assert a.recipients == b.recipients
            assert _without_random_headers(a.as_bytes()) == _without_random_headers(b.as_bytes())
    assert isinstance(direct[-1], InvalidMessage) and isinstance(direct[7], InvalidMessage)
    assert b"Hi Bobby," in direct[2].as_bytes()
    with pytest.raises(TypeError):
        t.render([Recipient(address="zed@example.org")])  # no normalize for other shapes
    with pytest.raises(TypeError):
        t.render([("a@b.org", None, {})], _recipient_tuple)  # not a recipient of a batch
    with pytest.raises(TypeError):
        t.render([("a@b.org", None)])
    with pytest.raises(TypeError):
        t.render([object()], lambda item: "not a tuple")


def test_messages_whose_signing_failed_join_the_failures() -> None:
    """Engine.send_batch signs a chunk's messages in one call; one whose signature could
    not be made is failed alone, at its position in the chunk."""
    t = template({"code": "c", "first": "f"})
    messages, failures = t.render_split(["a@x.org", "bad", "b@x.org", "c@x.org"])
    broken = InvalidMessage("cannot sign", field="dkim")
    signed = [messages[0], broken, messages[2]]
    kept, all_failures = _split_signed(signed, failures, 4)
    assert kept == [messages[0], messages[2]]
    assert [(p, e.field) for p, e in all_failures] == [(1, "address"), (2, "dkim")]
    assert _split_signed(messages, failures, 4) == (messages, failures)
