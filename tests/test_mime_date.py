"""The Date header, made in Rust: ``Message.date`` is a ``datetime`` (naive means local
time), an RFC 5322 date-time string (checked, and written in canonical form), or None:
now, in the local time zone (the ``TZ`` variable or ``/etc/localtime``, as
``email.utils.formatdate(localtime=True)`` showed it). Anything else raises
``InvalidMessage(field="date")`` before a byte is sent."""

from __future__ import annotations

import email.utils
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastsmtp
from fastsmtp import _fastsmtp
from fastsmtp._errors import InvalidMessage
from fastsmtp.testing import CaptureServer
from tests import hypothesis_profiles
from tests.mime_support import parse, spec

hypothesis_profiles.load()


def date_header(date: object) -> str:
    message = fastsmtp.Message(sender="a@example.com", to=["b@example.org"], text="t", date=date)  # type: ignore[arg-type]
    (value,) = [
        line[len(b"Date: ") :].decode()
        for line in message.as_bytes().split(b"\r\n")
        if line.startswith(b"Date: ")
    ]
    return value


def test_default_is_now_in_the_local_zone() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    value = date_header(None)
    after = datetime.now(UTC)
    when = email.utils.parsedate_to_datetime(value)
    assert before <= when <= after
    local = email.utils.formatdate(localtime=True)
    assert value[-5:] == local[-5:]  # the same UTC offset as Python's local time


# POSIX TZ strings (no zone database needed): India, US Eastern and South Australia with
# their daylight saving rules, UTC, and the Chatham Islands' +13:45 / +12:45.
ZONES = [
    "IST-5:30",
    "EST5EDT,M3.2.0,M11.1.0",
    "ACST-9:30ACDT,M10.1.0,M4.1.0/3",
    "UTC0",
    "<+1245>-12:45<+1345>,M9.5.0/2:45,M4.1.0/3:45",
]


@pytest.mark.parametrize("tz", ZONES)
def test_default_honours_the_tz_variable(tz: str) -> None:
    """In a process whose TZ is set, the Date shows that zone's offset now, exactly as
    ``formatdate(localtime=True)`` does there."""
    script = textwrap.dedent(
        """
        import email.utils, fastsmtp
        raw = fastsmtp.Message(sender="a@x.org", to=["b@x.org"], text="t").as_bytes()
        (line,) = [l for l in raw.split(b"\\r\\n") if l.startswith(b"Date: ")]
        print(line[6:].decode())
        print(email.utils.formatdate(localtime=True))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "TZ": tz},
        check=True,
    ).stdout.splitlines()
    ours, python = out
    assert ours[-5:] == python[-5:], out
    delta = email.utils.parsedate_to_datetime(python) - email.utils.parsedate_to_datetime(ours)
    assert timedelta(0) <= delta <= timedelta(seconds=2)


@pytest.mark.parametrize(
    ("given", "written"),
    [
        (
            datetime(2026, 1, 1, 9, 0, tzinfo=timezone(timedelta(hours=1))),
            "Thu, 01 Jan 2026 09:00:00 +0100",
        ),
        (datetime(2026, 1, 1, 9, 0, 5, 999_999, tzinfo=UTC), "Thu, 01 Jan 2026 09:00:05 +0000"),
        (
            datetime(1999, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
            "Fri, 31 Dec 1999 23:59:59 -0530",
        ),
        ("Thu, 01 Jan 2026 09:00:00 +0100", "Thu, 01 Jan 2026 09:00:00 +0100"),
        ("1 Jan 2026 09:00 +0100", "Thu, 01 Jan 2026 09:00:00 +0100"),
        ("  thu, 01 jan 2026 09:00:00 GMT ", "Thu, 01 Jan 2026 09:00:00 +0000"),
        ("Thu, 01 Jan 2026 09:00:00 EST", "Thu, 01 Jan 2026 09:00:00 -0500"),
        ("Thu, 01 Jan 2026 09:00:00 +0100 (CET)", "Thu, 01 Jan 2026 09:00:00 +0100"),
    ],
)
def test_given_dates_are_written_canonically(given: datetime | str, written: str) -> None:
    assert date_header(given) == written


def test_naive_datetime_is_local_time() -> None:
    naive = datetime(2026, 7, 1, 12, 0, 0)
    assert email.utils.parsedate_to_datetime(date_header(naive)) == naive.astimezone()


@pytest.mark.parametrize(
    "bad",
    [
        "yesterday",
        "",
        "2026-01-01T09:00:00Z",
        "Fri, 01 Jan 2026 09:00:00 +0100",  # 1 Jan 2026 is a Thursday
        "Thu, 31 Feb 2026 09:00:00 +0100",
        "Thu, 01 Jan 2026 25:00:00 +0100",
        "Thu, 01 Jan 2026 09:00:00",
        "Thu, 01 Jan 2026 09:00:00 +0100 and more",
        "Thu, 01 Jan 2026 09:00:00 +0100\r\nBcc: eve@example.org",
        "Thu, 01 Jan 2026 09:00:00 +0100\u2028",
        "Mon, 01 Jan 1800 09:00:00 +0000",
        datetime(1800, 1, 1, tzinfo=UTC),
        1767258000,
    ],
)
def test_anything_else_is_refused(bad: object) -> None:
    with pytest.raises(InvalidMessage) as info:
        date_header(bad)
    assert info.value.field == "date"


def test_a_template_dates_every_message_alike() -> None:
    template = _fastsmtp.Template(spec(to=[], date="1 Jan 2026 09:00 +0100"))
    for built in template.render(["a@example.org", "b@example.org"]):
        assert isinstance(built, _fastsmtp.BuiltMessage)
        assert parse(built.as_bytes())["Date"] == "Thu, 01 Jan 2026 09:00:00 +0100"


@given(
    when=st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(9999, 12, 30)),
    minutes=st.integers(-(23 * 60 + 59), 23 * 60 + 59),
)
def test_any_datetime_round_trips_to_the_second(when: datetime, minutes: int) -> None:
    aware = when.replace(tzinfo=timezone(timedelta(minutes=minutes)))
    value = date_header(aware)
    back = email.utils.parsedate_to_datetime(value)
    assert back == aware.replace(microsecond=0)
    assert back.utcoffset() == aware.utcoffset()


async def test_delivered_date_is_the_given_one() -> None:
    when = datetime(2026, 3, 29, 2, 30, tzinfo=timezone(timedelta(hours=2)))
    message = fastsmtp.Message(sender="a@example.com", to=["b@example.org"], text="t", date=when)
    with CaptureServer() as server:
        async with fastsmtp.Engine("127.0.0.1", server.port, tls="none") as engine:
            (result,) = await engine.send(message)
        assert result.ok, result
        (captured,) = server.wait_for(1)
    assert parse(captured.content)["Date"].datetime == when
