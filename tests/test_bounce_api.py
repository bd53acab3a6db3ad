"""The public face of bounce parsing (``fastsmtp.bounces``): argument checks, the VERP
codec, the frozen result classes, and hypothesis fuzzing that no input makes
``parse_bounce`` raise."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastsmtp import InvalidMessage
from fastsmtp.bounces import (
    CATEGORIES,
    BounceReport,
    make_verp_address,
    parse_bounce,
    parse_verp_address,
    verp_address_status,
)

SECRET = b"api-test-secret"

DSN = (
    b"From: MAILER-DAEMON@mx.example.org\r\n"
    b"To: bounces+TOKEN@bounces.example.com\r\n"
    b"Subject: Undelivered Mail Returned to Sender\r\n"
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n"
    b"--B\r\nContent-Type: message/delivery-status\r\n\r\n"
    b"Reporting-MTA: dns; mx.example.org\r\n\r\n"
    b"Final-Recipient: rfc822; gone@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    b"Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n--B--\r\n"
)


def test_verp_round_trip_case_and_forgery() -> None:
    address = make_verp_address(SECRET, "bounces", "bounces.example.com", 123456, 789)
    local, domain = address.split("@")
    assert domain == "bounces.example.com"
    assert local.startswith("bounces+") and local == local.lower()
    assert parse_verp_address(SECRET, address) == (123456, 789)
    assert parse_verp_address(SECRET, address.upper()) == (123456, 789)
    assert verp_address_status(SECRET, address) == "valid"
    assert parse_verp_address(b"other", address) is None
    assert verp_address_status(b"other", address) == "forged"
    assert verp_address_status(SECRET, "ann@example.com") == "not_verp"
    assert parse_verp_address(SECRET, "ann@example.com") is None


def test_verp_in_a_report() -> None:
    address = make_verp_address(SECRET, "bounces", "bounces.example.com", 5, 6)
    raw = DSN.replace(b"bounces+TOKEN@bounces.example.com", address.encode())
    report = parse_bounce(raw, SECRET)
    assert (report.verp_status, report.verp_job, report.verp_recipient) == ("valid", 5, 6)
    assert report.verp_address == address
    # the intake's envelope recipient is checked first
    other = make_verp_address(SECRET, "bounces", "bounces.example.com", 8, 9)
    report = parse_bounce(raw, SECRET, envelope_recipient=other)
    assert (report.verp_job, report.verp_recipient) == (8, 9)
    assert parse_bounce(raw).verp_status is None
    assert parse_bounce(raw, b"wrong").verp_status == "forged"


def test_verp_bad_arguments() -> None:
    with pytest.raises(InvalidMessage) as info:
        make_verp_address(b"", "bounces", "example.com", 1, 1)
    assert info.value.field == "verp"
    with pytest.raises(InvalidMessage):
        make_verp_address(SECRET, "bad prefix", "example.com", 1, 1)
    with pytest.raises(InvalidMessage):
        make_verp_address(SECRET, "bounces", "example.com\r\nBcc: x", 1, 1)
    with pytest.raises(InvalidMessage):
        make_verp_address(SECRET, "b" * 60, "example.com", 1, 1)
    with pytest.raises(InvalidMessage):
        make_verp_address(SECRET, "bounces", "example.com", -1, 1)
    with pytest.raises(InvalidMessage):
        make_verp_address(SECRET, "bounces", "example.com", 1, 1 << 64)
    with pytest.raises(TypeError):
        make_verp_address("secret", "bounces", "example.com", 1, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        make_verp_address(SECRET, "bounces", "example.com", True, 1)
    with pytest.raises(TypeError):
        parse_verp_address(SECRET, b"x@y")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        parse_bounce(DSN, "secret")  # type: ignore[arg-type]


def test_non_bytes_raise_invalid_message() -> None:
    for bad in ("a string", 42, None, ["list"]):
        with pytest.raises(InvalidMessage) as info:
            parse_bounce(bad)  # type: ignore[arg-type]
        assert info.value.field == "raw"
    assert parse_bounce(bytearray(DSN)).kind == "dsn"


def test_report_is_frozen_and_typed() -> None:
    report = parse_bounce(DSN)
    assert isinstance(report, BounceReport)
    assert report.kind == "dsn"
    assert report.reporting_mta == "mx.example.org"
    [rcpt] = report.recipients
    assert isinstance(report.recipients, tuple)
    assert (rcpt.address, rcpt.status, rcpt.reply_code) == ("gone@example.org", "5.1.1", 550)
    assert rcpt.category in CATEGORIES
    with pytest.raises(AttributeError):
        report.kind = "arf"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        rcpt.permanent = False  # type: ignore[misc]
    assert "dsn" in repr(report) and "gone@example.org" in repr(rcpt)


@given(st.binary(max_size=4096))
def test_any_bytes_give_a_report(raw: bytes) -> None:
    report = parse_bounce(raw, SECRET)
    assert report.kind in {"dsn", "arf", "bounce", "auto_reply", "unknown"}
    for rcpt in report.recipients:
        assert rcpt.category in CATEGORIES


_PIECES = st.sampled_from(
    [
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n",
        b"Content-Type: message/delivery-status\r\n",
        b"Content-Type: message/feedback-report\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"--B\r\n",
        b"--B--\r\n",
        b"\r\n",
        b"Final-Recipient: rfc822; a@example.org\r\nAction: failed\r\n",
        b"Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 no\r\n",
        b"Feedback-Type: abuse\r\n",
        b"From: MAILER-DAEMON@x.example\r\n",
        b"<b@example.org>: host said: 550 5.1.1 unknown\r\n",
        b"=?utf-8?q?=C3?=",
    ]
)


@given(st.lists(st.one_of(_PIECES, st.binary(max_size=20)), max_size=40))
def test_reportish_bytes_give_a_report(pieces: list[bytes]) -> None:
    report = parse_bounce(b"".join(pieces), SECRET, envelope_recipient="x@y")
    assert report.kind in {"dsn", "arf", "bounce", "auto_reply", "unknown"}
