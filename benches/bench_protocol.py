"""Protocol core benchmarks: the per-transaction cost of the sans-IO ClientConnection, with
no socket, and its codecs against straightforward pure-Python equivalents.

* ``transactions[chunking|pipelining]``: 1000 transactions of a 3 KB message to one
  recipient: a ``RawMessage`` made and ``submit``-ted each, ``data_to_send``, then the
  server's replies fed in 16 KB reads (BDAT path: 3 replies per transaction, all pipelined,
  i.e. ``data_window=1000``; DATA path: MAIL/RCPT/354 then the end-of-data reply, with the
  body written after each 354), and every result's codes read.
  Time per transaction = time per call / 1000. Correctness: 1000 results, all 250.
* ``parse_replies``: 10,000 replies (a mix of one-line and multi-line) in one buffer,
  against a Python parser with the same rules (``re`` per line).
* ``dot_stuff``: a 100 KB body of 80-octet lines, a tenth starting with a dot, against
  ``re.sub`` normalization + stuffing.

Run with ``python -m pytest benches/bench_protocol.py --benchmark-enable`` or
``python benches/bench_protocol.py`` for a table. Build with ``maturin develop --release``.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest

from fastsmtp import _fastsmtp as core

TXNS = 1000
BODY = (b"Subject: hello\r\n\r\n" + b"x" * 76 + b"\r\n") * 39
EHLO = {
    "chunking": b"250-mx\r\n250-PIPELINING\r\n250-SIZE 0\r\n250-8BITMIME\r\n250 CHUNKING\r\n",
    "pipelining": b"250-mx\r\n250-PIPELINING\r\n250-SIZE 0\r\n250 8BITMIME\r\n",
}
MAIL_OK = b"250 2.1.0 Ok\r\n"
RCPT_OK = b"250 2.1.5 Ok\r\n"
GO = b"354 End data with <CR><LF>.<CR><LF>\r\n"
QUEUED = b"250 2.0.0 Ok: queued as 4ABCDEF0123\r\n"
READ = 16 * 1024


def ready(mode: str) -> core.ClientConnection:
    conn = core.ClientConnection("client.example", data_window=TXNS)
    conn.receive_data(b"220 mx ESMTP\r\n")
    conn.data_to_send()
    conn.receive_data(EHLO[mode])
    return conn


def reads(data: bytes) -> list[bytes]:
    return [data[i : i + READ] for i in range(0, len(data), READ)]


CHUNKING_REPLIES = reads((MAIL_OK + RCPT_OK + QUEUED) * TXNS)


def run_chunking() -> list[int]:
    conn = ready("chunking")
    for i in range(TXNS):
        conn.submit("lot", i, core.RawMessage("bulk@example.com", ["user@example.org"], BODY))
    sent = len(conn.data_to_send())
    assert sent > TXNS * len(BODY)
    codes = []
    for chunk in CHUNKING_REPLIES:
        for event in conn.receive_data(chunk):
            assert isinstance(event, core.TransactionResult)
            codes.append(event.data_reply.code if event.all_accepted else 0)  # type: ignore[union-attr]
    return codes


def run_pipelining() -> list[int]:
    conn = ready("pipelining")
    for i in range(TXNS):
        conn.submit("lot", i, core.RawMessage("bulk@example.com", ["user@example.org"], BODY))
    codes = []
    conn.data_to_send()
    # Server side of RFC 2920 3.1: each 354 releases the body and the next group.
    events = conn.receive_data(MAIL_OK + RCPT_OK + GO)
    for _ in range(TXNS - 1):
        conn.data_to_send()
        events += conn.receive_data(QUEUED + MAIL_OK + RCPT_OK + GO)
    conn.data_to_send()
    events += conn.receive_data(QUEUED)
    for event in events:
        assert isinstance(event, core.TransactionResult)
        codes.append(event.data_reply.code if event.all_accepted else 0)  # type: ignore[union-attr]
    return codes


# --- reply parsing ----------------------------------------------------------------------

REPLIES = (
    MAIL_OK
    + RCPT_OK
    + b"550-5.1.1 <nobody@example.org>: Recipient address rejected:\r\n"
    + b"550 5.1.1 User unknown in virtual mailbox table\r\n"
    + QUEUED
    + b"250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 CHUNKING\r\n"
) * 2000  # 10,000 replies

LINE = re.compile(rb"([2-5][0-9][0-9])([ -]|$)(.*)")
ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?: |$)")


def python_parse(data: bytes) -> list[tuple[int, str | None, str]]:
    """The same rules as the Rust parser, in Python (the aiosmtplib way: line by line)."""
    replies = []
    code = None
    lines: list[str] = []
    enhanced = None
    for raw in data.split(b"\r\n")[:-1]:
        m = LINE.fullmatch(raw)
        if m is None or (code is not None and m.group(1) != code):
            raise ValueError(raw)
        text = m.group(3).decode("utf-8", "replace")
        e = ENHANCED.match(text)
        if e and e.group(1) == chr(m.group(1)[0]):
            if code is None:
                enhanced = e.group(0).strip()
            text = text[e.end() :]
        code = m.group(1)
        lines.append(text)
        if m.group(2) != b"-":
            replies.append((int(code), enhanced, "\n".join(lines)))
            code, lines, enhanced = None, [], None
    return replies


def rust_parse(data: bytes) -> list[tuple[int, str | None, str]]:
    return [(r.code, r.enhanced_code, r.text) for r in core.parse_replies(data)]


# --- dot-stuffing -----------------------------------------------------------------------

LINES = [(b"." if i % 10 == 0 else b"") + b"y" * 78 for i in range(1280)]
DOT_BODY = b"\n".join(LINES) + b"\n"  # bare LFs: normalization has work to do too


def python_dot_stuff(body: bytes) -> bytes:
    body = re.sub(rb"\r\n|\r|\n", b"\r\n", body)
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return re.sub(rb"(?m)^\.", b"..", body)


# --- pytest-benchmark ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["chunking", "pipelining"])
def test_transactions(benchmark: Any, mode: str) -> None:
    run = run_chunking if mode == "chunking" else run_pipelining
    codes = benchmark(run)
    assert codes == [250] * TXNS


@pytest.mark.parametrize("impl", ["fastsmtp", "python"])
def test_parse_replies(benchmark: Any, impl: str) -> None:
    parse = rust_parse if impl == "fastsmtp" else python_parse
    replies = benchmark(parse, REPLIES)
    assert len(replies) == 10_000
    assert replies == rust_parse(REPLIES)


@pytest.mark.parametrize("impl", ["fastsmtp", "python"])
def test_dot_stuff(benchmark: Any, impl: str) -> None:
    stuff = core.dot_stuff if impl == "fastsmtp" else python_dot_stuff
    out = benchmark(stuff, DOT_BODY)
    assert out == python_dot_stuff(DOT_BODY)


# --- table ----------------------------------------------------------------------------------


def best(fn: Callable[[], object], rounds: int = 15) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) if rounds < 5 else statistics.median(sorted(times)[: rounds // 2 + 1])


def main() -> None:
    assert run_chunking() == [250] * TXNS and run_pipelining() == [250] * TXNS
    print(f"{'benchmark':<34}{'fastsmtp':>14}{'python':>14}{'ratio':>8}")
    for mode, run in (("chunking", run_chunking), ("pipelining", run_pipelining)):
        per = best(run) / TXNS * 1e6
        print(f"{'transaction (' + mode + ')':<34}{per:>11.2f} us{'':>14}{'':>8}")
    assert rust_parse(REPLIES) == python_parse(REPLIES)
    r, p = best(lambda: rust_parse(REPLIES)), best(lambda: python_parse(REPLIES))
    label = "parse reply (10k, per reply)"
    print(f"{label:<34}{r / 1e4 * 1e6:>11.3f} us{p / 1e4 * 1e6:>11.3f} us{p / r:>7.1f}x")
    r, p = best(lambda: core.dot_stuff(DOT_BODY)), best(lambda: python_dot_stuff(DOT_BODY))
    mb = len(DOT_BODY) / 1e6
    print(f"{'dot_stuff (100 KB, MB/s)':<34}{mb / r:>11.0f} MB/s{mb / p:>9.0f} MB/s{p / r:>6.1f}x")


if __name__ == "__main__":
    main()
