"""Bounce parsing benchmark: ``fastsmtp.bounces.parse_bounce`` on a real Postfix DSN,
against a pure-Python parser built on the standard library's ``email`` package doing the
same job (walk the MIME parts, read the delivery-status fields, the returned message's
headers, and check the VERP token with ``hmac``).

* Fixture: ``tests/bounces/postfix-unknown-user-full.eml``, a 4.1 KB DSN written by real
  Postfix 3.7 (unknown user, full original returned), parsed with the VERP secret.
* ``mix``: every sample of ``tests/bounces`` once per round (DSNs, ARF, non-standard
  bounces, auto-replies), for the cost of the heuristics too.
* Correctness beside the timing: both parsers find the same recipient, status, Message-ID
  and VERP job.

The target (issue 17) is at least 20,000 DSNs/s on one core: one thread, GIL held by the
caller between calls.

Run ``python benches/bench_bounce.py`` for a table (``--rounds N``), or
``python -m pytest benches/bench_bounce.py --benchmark-enable``. Build with
``maturin develop --release`` first.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import hashlib
import hmac
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fastsmtp.bounces import parse_bounce

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "bounces"
DSN = (CORPUS / "postfix-unknown-user-full.eml").read_bytes()
SECRET = b"fastsmtp-postfix-bounce-test"
MIX = [p.read_bytes() for p in sorted(CORPUS.glob("*.eml"))]


def fastsmtp_parse(raw: bytes) -> tuple[str | None, str | None, str | None, int | None]:
    r = parse_bounce(raw, SECRET)
    first = r.recipients[0] if r.recipients else None
    return (
        first.address if first else None,
        first.status if first else None,
        r.original_message_id,
        r.verp_job,
    )


# ---------------------------------------------------------------- the stdlib baseline

_B32 = "abcdefghijklmnopqrstuvwxyz234567"


def _b32decode(token: str) -> bytes:
    bits = 0
    nbits = 0
    out = bytearray()
    for c in token.lower():
        bits = (bits << 5) | _B32.index(c)
        nbits += 5
        if nbits >= 8:
            nbits -= 8
            out.append((bits >> nbits) & 0xFF)
    return bytes(out)


def _leb128(b: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        byte = b[i]
        n |= (byte & 0x7F) << shift
        i += 1
        if not byte & 0x80:
            return n, i
        shift += 7


def _verp_job(address: str) -> int | None:
    local = address.strip("<>").split("@")[0]
    token = local.rsplit("+", 1)[-1]
    try:
        raw = _b32decode(token)
    except ValueError:
        return None
    payload, tag = raw[:-10], raw[-10:]
    want = hmac.new(SECRET, b"fastsmtp-verp-v1\0" + payload, hashlib.sha256).digest()[:10]
    if not hmac.compare_digest(want, tag):
        return None
    job, _ = _leb128(payload, 1)
    return job


def _fields(text: str) -> list[dict[str, str]]:
    groups: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if current:
                groups.append(current)
                current = {}
            continue
        if line[0] in " \t" and last:
            current[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if sep:
            last = name.strip().lower()
            current.setdefault(last, value.strip())
    if current:
        groups.append(current)
    return groups


def stdlib_parse(raw: bytes) -> tuple[str | None, str | None, str | None, int | None]:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    address = status = message_id = None
    job = None
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            # compat32 parses the groups as a list of Message objects; read the raw text
            payload = part.get_payload()
            text = (
                "\n\n".join(p.as_string() for p in payload)
                if isinstance(payload, list)
                else str(payload)
            )
            for group in _fields(text):
                if "reporting-mta" in group and "x-postfix-sender" in group:
                    job = _verp_job(group["x-postfix-sender"].split(";")[-1].strip())
                if "final-recipient" in group and address is None:
                    address = group["final-recipient"].split(";")[-1].strip()
                    status = group.get("status", "").split()[0]
        elif ctype == "message/rfc822" and message_id is None:
            inner = part.get_payload()[0]
            message_id = (inner.get("Message-ID") or "").strip().strip("<>") or None
    return address, status, message_id, job


# ------------------------------------------------------------------------ running

PARSERS: dict[str, Callable[[bytes], Any]] = {
    "fastsmtp": fastsmtp_parse,
    "stdlib email": stdlib_parse,
}


def check() -> None:
    a = fastsmtp_parse(DSN)
    b = stdlib_parse(DSN)
    assert a == b, (a, b)
    assert a[0] == "nobody@example.org" and a[1] == "5.1.1" and a[3] == 9001, a


def per_second(
    fn: Callable[[bytes], Any], data: list[bytes], seconds: float = 0.5
) -> tuple[float, float]:
    """Messages per second of wall time and per second of this thread's CPU time, parsing
    ``data`` over and over for about ``seconds``. On a shared machine the CPU-time rate is
    the one-core figure: time the scheduler gave to others is not counted."""
    n = 0
    start, cpu_start = time.perf_counter(), time.thread_time()
    while True:
        for raw in data:
            fn(raw)
        n += len(data)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed, n / (time.thread_time() - cpu_start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    check()
    fixtures = {"postfix DSN 4.1 KB": [DSN] * 100, f"mix ({len(MIX)} samples)": MIX}
    print(
        f"{'fixture':<22} {'parser':<14} {'msgs/s wall':>12} {'msgs/s CPU':>12} "
        f"{'CPU µs/msg':>11}   (medians of {args.rounds} rounds, interleaved)"
    )
    for fixture, data in fixtures.items():
        rates: dict[str, list[tuple[float, float]]] = {p: [] for p in PARSERS}
        # Interleaved rounds: a burst of load elsewhere hits both parsers alike.
        for _ in range(args.rounds):
            for parser, fn in PARSERS.items():
                rates[parser].append(per_second(fn, data))
        cpu_medians = {}
        for parser, got in rates.items():
            wall = statistics.median(r[0] for r in got)
            cpu = cpu_medians[parser] = statistics.median(r[1] for r in got)
            print(f"{fixture:<22} {parser:<14} {wall:>12,.0f} {cpu:>12,.0f} {1e6 / cpu:>11.1f}")
        ratio = cpu_medians["fastsmtp"] / cpu_medians["stdlib email"]
        print(f"{fixture:<22} {'ratio (CPU)':<14} {ratio:>24.1f}x")


# ----------------------------------------------------------------- pytest-benchmark


def test_same_answers() -> None:
    check()


@pytest.mark.parametrize("parser", list(PARSERS))
def test_parse_postfix_dsn(benchmark: Any, parser: str) -> None:
    fn = PARSERS[parser]
    result = benchmark(fn, DSN)
    assert result[0] == "nobody@example.org"


def test_parse_mix(benchmark: Any) -> None:
    def run() -> int:
        return sum(len(parse_bounce(raw, SECRET).recipients) for raw in MIX)

    assert benchmark(run) > 0


if __name__ == "__main__":
    main()
