"""The engine under the caller's control, against real servers: callbacks that raise,
cancelled batches, credentials that must never leak, and the rate limit's worst window.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

import fastsmtp
from tests.faultserver import Faults, FaultServer
from tests.peers.aiosmtpd_server import CaptureServer
from tests.timed_server import TimedServer

TEMPLATE = fastsmtp.Message(sender="bulk@example.com", subject="Hi", text="Body {{ address }}")


class Stop(BaseException):
    """Not an Exception: what a callback's KeyboardInterrupt or SystemExit looks like."""


@pytest.mark.parametrize("raising", [Stop, KeyboardInterrupt])
async def test_a_callback_raising_a_base_exception_stops_the_batch(
    raising: type[BaseException],
) -> None:
    """The batch stops taking work, what is on the wire finishes, the books balance and
    the exception reaches the caller: no hang."""
    seen: list[fastsmtp.Result] = []

    def on_result(result: fastsmtp.Result) -> None:
        seen.append(result)
        if len(seen) == 10:
            raise raising("stop")

    recipients = [f"user{i}@example.org" for i in range(2000)]
    async with FaultServer() as server:
        engine = fastsmtp.Engine("127.0.0.1", server.port, tls="none", connections=2)
        async with engine:
            with pytest.raises(raising):
                async with asyncio.timeout(30):
                    await engine.send_batch(TEMPLATE, recipients, on_result=on_result)
            assert engine.stats.callback_errors == 1
        # The engine closed: every recipient it took has exactly one result.
    assert Counter(r.index for r in seen) == Counter({r.index: 1 for r in seen})
    assert len(seen) < len(recipients)
    stored = {rcpt for _, rcpt in server.stored_pairs()}
    for result in seen:
        assert (result.recipient in stored) == (result.status == "accepted"), result
    assert any(r.status == "failed" and "on_result raised" in r.text for r in seen)


async def test_cancelling_send_batch_stops_what_is_not_written() -> None:
    """Cancelled mid-batch: nothing more goes out after the cancellation settles, what was
    queued gets a failed "cancelled" result, what was on the wire finishes, and
    CancelledError reaches the caller."""
    pulled = 0

    def recipients() -> Iterator[str]:
        nonlocal pulled
        for i in range(5000):
            pulled += 1
            yield f"user{i}@example.org"

    seen: list[fastsmtp.Result] = []
    fifty = asyncio.Event()

    def on_result(result: fastsmtp.Result) -> None:
        seen.append(result)
        if len(seen) == 50:
            fifty.set()

    faults = Faults(slow_reply=1.0, slow_delay=0.002)
    async with FaultServer(faults) as server:
        async with fastsmtp.Engine("127.0.0.1", server.port, tls="none", connections=2) as engine:
            task = asyncio.create_task(
                engine.send_batch(TEMPLATE, recipients(), on_result=on_result)
            )
            await fifty.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            settled = len(server.stored)
            results_then = len(seen)
            await asyncio.sleep(0.3)
            assert len(server.stored) == settled  # nothing sent after the cancellation
            assert len(seen) == results_then  # and no callback
    assert pulled < 5000
    assert Counter(r.index for r in seen) == Counter(range(len(seen)))  # one each, in order
    cancelled = [r for r in seen if r.status == "failed"]
    assert cancelled and all("cancelled" in r.text for r in cancelled)
    stored = {rcpt for _, rcpt in server.stored_pairs()}
    assert {r.recipient for r in seen if r.status == "accepted"} == stored


SENTINEL = "s3ntinel-pa55word"


def leaks(text: str) -> bool:
    return SENTINEL in text


def engine_with_secret(port: int, kind: str) -> fastsmtp.Engine:
    options = {kind: SENTINEL}
    return fastsmtp.Engine("127.0.0.1", port, tls="none", username="ann", max_attempts=1, **options)


def exception_texts(error: BaseException) -> list[str]:
    with_locals = traceback.TracebackException.from_exception(error, capture_locals=True)
    return [str(error), repr(error), "".join(with_locals.format())]


async def test_credentials_never_leak(
    capture_server: Callable[..., CaptureServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = capture_server(auth_users={"ann": "other"}, auth_require_tls=False)
    for kind in ("password", "oauth2_token"):
        # Made in a helper: this frame's locals (shown in the tracebacks) never hold it.
        engine = engine_with_secret(server.port, kind)
        assert not leaks(repr(engine)) and not leaks(repr(engine.config))
        assert not leaks(str(engine.config)) and not leaks(repr(engine.config.password))
        # Refused before anything is sent: credentials over plaintext.
        with pytest.raises(fastsmtp.TLSRequiredError) as refused:
            await engine.connect()
        assert not any(leaks(t) for t in exception_texts(refused.value))
        message = fastsmtp.Message(sender="ann@example.com", to=["b@example.org"], text="t")
        async with engine:
            results = await engine.send(message)
        assert results[0].status == "failed" and not leaks(repr(results))
    # Sent (allowed over plaintext here) and refused by the server.
    engine = fastsmtp.Engine(
        "127.0.0.1",
        server.port,
        tls="none",
        username="ann",
        password=SENTINEL,  # a global: this frame's locals hold the engine only
        allow_plaintext_auth=True,
    )
    with pytest.raises(fastsmtp.AuthenticationError) as failed:
        await engine.connect()
    assert not any(leaks(t) for t in exception_texts(failed.value))
    await engine.close()
    # A bad setting raised from inside Engine(): the frame's locals hold no credential.
    with pytest.raises(ValueError) as bad:
        fastsmtp.Engine(password=SENTINEL)  # a password needs a username
    assert not any(leaks(t) for t in exception_texts(bad.value))
    assert not any(leaks(record.getMessage()) for record in caplog.records)
    assert not any(leaks(str(record.__dict__)) for record in caplog.records)


def worst_window(times: list[float], window: float) -> int:
    """The most events in any ``window`` seconds."""
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.mark.parametrize("burst", [None, 10])
async def test_rate_limit_holds_over_every_window(burst: int | None) -> None:
    """rate_limit=40: over any window of w >= 1 s, at most 40 * w + burst messages reach
    the server (burst defaults to a twentieth of a second's worth, at least 1)."""
    rate = 40
    with TimedServer() as timed:
        async with fastsmtp.Engine(
            "127.0.0.1",
            timed.port,
            tls="none",
            connections=4,
            rate_limit=rate,
            rate_burst=burst,
        ) as engine:
            report = await engine.send_batch(TEMPLATE, [f"u{i}@example.org" for i in range(160)])
    assert report.accepted == 160
    times = sorted(timed.arrivals)
    allowed_burst = burst if burst is not None else max(1, rate // 20)
    for window in (1.0, 2.0):
        assert worst_window(times, window) <= rate * window + allowed_burst, window
    assert times[-1] - times[0] >= (160 - allowed_burst) / rate - 0.05
