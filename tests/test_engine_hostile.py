"""Never a false "accepted": the engine against a server that answers wrongly.

Each case runs every way into the engine (``send``, ``send_raw``, ``send_batch`` with and
without ``on_result``) in DATA and CHUNKING mode against ``tests/hostile.py``, and checks
the one promise that matters: a recipient is ``accepted`` only when the server answered
2xx to that message's own end of data, which the server's store confirms. Wrong-class
replies, surplus replies and trickled replies end the connection; what they cut off is
retried when its end of data never went out, and reported in doubt (never re-sent) when
it did.
"""

from __future__ import annotations

import time

import pytest

import fastsmtp
from tests.hostile import HostileServer, Script, always, first

PATHS = ["send", "send_raw", "send_batch", "send_batch_counting"]
MODES = pytest.mark.parametrize("chunking", [False, True], ids=["data", "chunking"])


def engine(server: HostileServer, **options: object) -> fastsmtp.Engine:
    settings: dict[str, object] = {
        "tls": "none",
        "connections": 1,
        "max_attempts": 2,
        "retry_base_delay": 0.01,
        "retry_max_delay": 0.02,
        "timeout": 5,
    }
    settings.update(options)
    return fastsmtp.Engine("127.0.0.1", server.port, **settings)  # type: ignore[arg-type]


MESSAGE = fastsmtp.Message(
    sender="ann@example.com", to=["bob@example.org"], subject="Hi", text="Hello\n"
)
RAW = b"From: ann@example.com\r\nTo: bob@example.org\r\nMessage-ID: <raw@x>\r\n\r\nHello\r\n"


async def send_by(path: str, eng: fastsmtp.Engine) -> tuple[list[fastsmtp.Result], int]:
    """One message to one recipient by ``path``: its results (none when only counted) and
    how many were counted accepted."""
    if path == "send":
        results = await eng.send(MESSAGE)
        return results, sum(r.status == "accepted" for r in results)
    if path == "send_raw":
        results = await eng.send_raw("ann@example.com", ["bob@example.org"], RAW)
        return results, sum(r.status == "accepted" for r in results)
    template = fastsmtp.Message(sender="ann@example.com", subject="Hi", text="Hello\n")
    collected: list[fastsmtp.Result] = []
    on_result = collected.append if path == "send_batch" else None
    report = await eng.send_batch(template, ["bob@example.org"], on_result=on_result)
    assert report.total == 1
    return collected, report.accepted


async def run_case(
    path: str, chunking: bool, script: Script, **options: object
) -> tuple[HostileServer, list[fastsmtp.Result], int]:
    async with HostileServer(script, chunking=chunking) as server:
        async with engine(server, **options) as eng:
            results, accepted = await send_by(path, eng)
    return server, results, accepted


CASES: dict[str, tuple[Script, tuple[bool, ...]]] = {
    # DATA answered 250 (DATA mode only): no body was sent, nothing can have been accepted.
    "250-to-DATA": ({"DATA": always("250 2.0.0 Ok")}, (False,)),
    # 3xx to RCPT or MAIL.
    "354-to-RCPT": ({"RCPT": always("354 go ahead")}, (False, True)),
    "334-to-MAIL": ({"MAIL": always("334 VXNlcm5hbWU6")}, (False, True)),
    # One reply too many after MAIL (its enhanced code says it is MAIL's), while the
    # message's end of data is really refused: the shift must never turn into a 250.
    "surplus-after-MAIL": (
        {"MAIL": always("250 2.1.0 Ok", "250 2.1.0 Ok"), "EOD": always("554 5.7.1 refused")},
        (False, True),
    ),
    # The same without enhanced codes: DATA mode catches it at DATA (a 250 where 354 must
    # be). With CHUNKING the shifted "250 Ok" can only be told from a real answer when it
    # arrives with the others (see the README, "What the engine can detect").
    "surplus-after-MAIL-plain-codes": (
        {
            "MAIL": always("250 Ok", "250 Ok"),
            "RCPT": always("250 Ok"),
            "EOD": always("554 refused"),
        },
        (False,),
    ),
}
HOSTILE = [
    pytest.param(case, chunking, id=f"{case}-{'chunking' if chunking else 'data'}")
    for case, (_, modes) in CASES.items()
    for chunking in modes
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("case", "chunking"), HOSTILE)
async def test_misplaced_replies_are_never_acceptances(
    path: str, case: str, chunking: bool
) -> None:
    server, results, accepted = await run_case(path, chunking, CASES[case][0])
    assert accepted == 0
    assert not server.stored
    for result in results:
        assert result.status == "deferred", result
        assert not result.in_doubt  # the end of data never went out
        assert "protocol error" in result.text, result.text
        assert result.attempts == 2  # retried on a fresh connection, then given up
    assert server.connections == 2


@MODES
@pytest.mark.parametrize("path", PATHS)
async def test_a_3xx_to_the_end_of_data_is_in_doubt(path: str, chunking: bool) -> None:
    """The end of data went out and its answer makes no sense: the server may have the
    message, so it is reported in doubt and not sent again."""
    server, results, accepted = await run_case(path, chunking, {"EOD": always("354 what?")})
    assert accepted == 0
    assert server.connections == 1  # not retried
    for result in results:
        assert (result.status, result.in_doubt) == ("deferred", True)
        assert "protocol error" in result.text and "may have accepted" in result.text


@MODES
@pytest.mark.parametrize("path", PATHS)
async def test_a_refused_end_of_data_after_a_surplus_on_retry(path: str, chunking: bool) -> None:
    """The first connection's surplus reply is caught; on the retry the server behaves and
    takes the message: accepted exactly once."""
    script: Script = {"MAIL": first(1, "250 2.1.0 Ok", "250 2.1.0 Ok")}
    server, results, accepted = await run_case(path, chunking, script)
    assert accepted == 1
    assert len(server.stored) == 1
    for result in results:
        assert result.status == "accepted" and result.attempts == 2


@MODES
@pytest.mark.parametrize("verb", ["MAIL", "EOD"])
async def test_a_trickled_reply_meets_its_deadline(chunking: bool, verb: str) -> None:
    """A reply sent one byte every 0.25 s would take ~4 s: with reply_timeout=1 the send
    ends after about a second per attempt, saying what it waited for."""
    async with HostileServer(chunking=chunking, trickle={verb: 0.25}) as server:
        async with engine(server, reply_timeout=1, max_attempts=1) as eng:
            started = time.monotonic()
            (result,) = await eng.send(MESSAGE)
            elapsed = time.monotonic() - started
    assert elapsed < 2.5, elapsed
    assert result.status == "deferred"
    command = {"MAIL": "MAIL FROM", "EOD": "BDAT LAST" if chunking else "the end of data"}[verb]
    assert f"timed out after 1s waiting for the reply to {command}" in result.text
    assert result.in_doubt == (verb == "EOD")
