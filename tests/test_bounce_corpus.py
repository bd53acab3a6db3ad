"""The bounce corpus (``tests/bounces/*.eml``) as a table test: each sample is parsed and
compared with its ``.json`` twin, which names the expected classification.

A ``.json`` file holds only the keys it wants checked (see ``tests/bounces/README.md``):
top-level report fields, ``feedback`` fields, and ``recipients`` (the count always, each
listed key per recipient). Every sample is parsed twice, with LF and with CRLF line ends
(Maildir files have LF, SMTP and LMTP deliver CRLF); both must give the same report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fastsmtp.bounces import CATEGORIES, BounceReport, parse_bounce

CORPUS = Path(__file__).parent / "bounces"
SAMPLES = sorted(p.stem for p in CORPUS.glob("*.eml"))

REPORT_KEYS = {
    "kind",
    "subject",
    "report_from",
    "reporting_mta",
    "envelope_id",
    "arrival_date",
    "original_sender",
    "original_message_id",
    "original_from",
    "original_to",
    "original_subject",
    "original_return_path",
    "feedback_type",
    "verp_status",
    "verp_address",
    "verp_job",
    "verp_recipient",
}
RECIPIENT_KEYS = {
    "address",
    "original_recipient",
    "action",
    "status",
    "reply_code",
    "diagnostic",
    "diagnostic_type",
    "remote_mta",
    "last_attempt_date",
    "will_retry_until",
    "category",
    "permanent",
}
FEEDBACK_KEYS = {
    "feedback_type",
    "user_agent",
    "version",
    "original_mail_from",
    "original_rcpt_to",
    "arrival_date",
    "reporting_mta",
    "source_ip",
    "reported_domain",
    "reported_uri",
    "authentication_results",
    "original_envelope_id",
    "incidents",
}


def _expected(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CORPUS / f"{name}.json").read_text(encoding="utf-8"))
    return data


def _value(v: object) -> object:
    return list(v) if isinstance(v, tuple) else v


def _parse(raw: bytes, expected: dict[str, Any]) -> BounceReport:
    secret = expected.get("verp_secret")
    return parse_bounce(raw, secret.encode() if secret is not None else None)


def _check(report: BounceReport, expected: dict[str, Any]) -> None:
    unknown = set(expected) - REPORT_KEYS - {"source", "verp_secret", "recipients", "feedback"}
    assert not unknown, f"unknown keys in the .json: {unknown}"
    for key in REPORT_KEYS & set(expected):
        assert _value(getattr(report, key)) == expected[key], key
    if "feedback" in expected:
        assert report.feedback is not None
        assert set(expected["feedback"]) <= FEEDBACK_KEYS
        for key, want in expected["feedback"].items():
            assert _value(getattr(report.feedback, key)) == want, f"feedback.{key}"
    want_rcpts = expected.get("recipients", [])
    assert len(report.recipients) == len(want_rcpts), report.recipients
    for i, (got, want) in enumerate(zip(report.recipients, want_rcpts, strict=True)):
        assert set(want) <= RECIPIENT_KEYS, set(want) - RECIPIENT_KEYS
        for key, value in want.items():
            assert getattr(got, key) == value, f"recipients[{i}].{key}"
        assert got.category in CATEGORIES


def test_every_sample_has_its_expectation() -> None:
    jsons = {p.stem for p in CORPUS.glob("*.json")}
    assert set(SAMPLES) == jsons
    assert len(SAMPLES) >= 25
    kinds = {_expected(name)["kind"] for name in SAMPLES}
    assert kinds == {"dsn", "arf", "bounce", "auto_reply", "unknown"}


@pytest.mark.parametrize("name", SAMPLES)
def test_sample(name: str) -> None:
    expected = _expected(name)
    raw = (CORPUS / f"{name}.eml").read_bytes()
    lf = raw.replace(b"\r\n", b"\n")
    crlf = lf.replace(b"\n", b"\r\n")
    for variant in (lf, crlf):
        _check(_parse(variant, expected), expected)


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_without_secret_checks_no_verp(name: str) -> None:
    report = parse_bounce((CORPUS / f"{name}.eml").read_bytes())
    assert report.verp_status is None
    assert report.verp_job is None
    assert report.verp_recipient is None
