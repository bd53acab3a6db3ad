"""MIME assembly benchmarks: fastsmtp's Rust core against Python's ``email`` package
building the same personalized messages.

Two fixtures, each a personalized ``multipart/alternative`` message of about 3.5 KB
(subject, text and html rendered per recipient):

* ``alternative``: text + html;
* ``attachment``: the same plus a 100 KB PDF shared by the whole batch.

fastsmtp compiles one ``Template`` per batch and renders chunks of 1000 recipients
(``Template.render``); the time per message is the chunk's time / 1000, compile included.
The baseline builds each message with ``email.message.EmailMessage`` (``set_content`` +
``add_alternative`` [+ ``add_attachment``]) and ``as_bytes()``, personalizing with
``str.format``. Each benchmark checks its output parses back to the same content.

Run with ``python -m pytest benches/bench_mime.py --benchmark-enable`` (pytest-benchmark),
or ``python benches/bench_mime.py`` for a per-message table with the speed-up ratios.
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import email.utils
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fastsmtp import _fastsmtp

CHUNK = 1000
BASELINE_BATCH = 20
DATE = "Thu, 01 Jan 2026 00:00:00 +0000"

BATCH_DATA = {
    "company": "Example Shop",
    "support": "support@shop.example.com",
    "unsubscribe": "https://shop.example.com/unsubscribe",
}

# The message templates, in str.format syntax (shared with the criterion bench mime.rs).
DATA_DIR = Path(__file__).parent / "mime_data"
TEXT = (DATA_DIR / "order.txt").read_text()
HTML = (DATA_DIR / "order.html").read_text()
SUBJECT = (DATA_DIR / "order.subject").read_text()


def jinja(template: str) -> str:
    """The str.format template as a Jinja template ({x} -> {{ x }})."""
    return template.replace("{", "{{ ").replace("}", " }}")


def make_pdf(size: int = 100 * 1024) -> bytes:
    rng = random.Random(1)
    return b"%PDF-1.4\n" + rng.randbytes(size - 9)


PDF = make_pdf()


def recipients(n: int) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for i in range(n):
        data = {
            "first_name": f"Anna{i}",
            "last_name": "Müller" if i % 3 == 0 else "Smith",
            "order_id": f"A-{100000 + i}",
            "amount": f"{10 + i % 90}.99",
            "street": f"{i} Long Street",
            "city": "Berlin",
        }
        out.append((f"customer{i}@example.org", f"Anna{i} Smith", data))
    return out


def spec(with_attachment: bool) -> dict[str, Any]:
    return {
        "sender": "Example Shop <orders@shop.example.com>",
        "to": [],
        "cc": [],
        "bcc": [],
        "reply_to": [],
        "subject": jinja(SUBJECT),
        "text": jinja(TEXT),
        "html": jinja(HTML),
        "attachments": [
            {
                "filename": "invoice.pdf",
                "content": PDF,
                "content_type": "application/pdf",
                "inline": False,
                "content_id": None,
            }
        ]
        if with_attachment
        else [],
        "headers": [("List-Unsubscribe", "<{{ unsubscribe }}>")],
        "envelope_sender": None,
        "message_id": None,
        "date": DATE,
    }


def fastsmtp_batch(
    with_attachment: bool, rcpts: list[tuple[str, str, dict[str, Any]]]
) -> list[Any]:
    template = _fastsmtp.Template(spec(with_attachment), BATCH_DATA)
    return template.render(rcpts)


def python_message(with_attachment: bool, rcpt: tuple[str, str, dict[str, Any]]) -> bytes:
    address, name, data = rcpt
    values = {**BATCH_DATA, **data}
    msg = email.message.EmailMessage()
    msg["From"] = "Example Shop <orders@shop.example.com>"
    msg["To"] = email.utils.formataddr((name, address))
    msg["Subject"] = SUBJECT.format(**values)
    msg["Date"] = DATE
    msg["Message-ID"] = email.utils.make_msgid(domain="shop.example.com")
    msg["List-Unsubscribe"] = f"<{values['unsubscribe']}>"
    msg.set_content(TEXT.format(**values))
    msg.add_alternative(HTML.format(**values), subtype="html")
    if with_attachment:
        msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="invoice.pdf")
    return msg.as_bytes()


def python_batch(
    with_attachment: bool, rcpts: list[tuple[str, str, dict[str, Any]]]
) -> list[bytes]:
    return [python_message(with_attachment, r) for r in rcpts]


def check(raw: bytes, rcpt: tuple[str, str, dict[str, Any]], with_attachment: bool) -> None:
    """Both implementations must produce the same content."""
    msg = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
    values = {**BATCH_DATA, **rcpt[2]}
    assert msg["subject"] == SUBJECT.format(**values)
    assert msg["to"].addresses[0].addr_spec == rcpt[0]
    text = msg.get_body(("plain",))
    assert text is not None
    assert text.get_content().replace("\r\n", "\n") == TEXT.format(**values)
    html = msg.get_body(("html",))
    assert html is not None
    assert html.get_content().replace("\r\n", "\n") == HTML.format(**values)
    attachments = list(msg.iter_attachments())
    if with_attachment:
        assert [a.get_payload(decode=True) for a in attachments] == [PDF]
    else:
        assert attachments == []


FIXTURES = {"alternative": False, "attachment": True}


@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_fastsmtp(benchmark: Any, fixture: str) -> None:
    with_attachment = FIXTURES[fixture]
    rcpts = recipients(CHUNK)
    out = benchmark.pedantic(
        fastsmtp_batch, args=(with_attachment, rcpts), rounds=10, warmup_rounds=1
    )
    assert len(out) == CHUNK
    for i in (0, CHUNK - 1):
        check(out[i].as_bytes(), rcpts[i], with_attachment)
    benchmark.extra_info["messages_per_call"] = CHUNK
    benchmark.extra_info["message_octets"] = len(out[0])


@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_python_email(benchmark: Any, fixture: str) -> None:
    with_attachment = FIXTURES[fixture]
    rcpts = recipients(BASELINE_BATCH)
    out = benchmark.pedantic(python_batch, args=(with_attachment, rcpts), rounds=5, warmup_rounds=1)
    for i in (0, BASELINE_BATCH - 1):
        check(out[i], rcpts[i], with_attachment)
    benchmark.extra_info["messages_per_call"] = BASELINE_BATCH
    benchmark.extra_info["message_octets"] = len(out[0])


def per_message(fn: Callable[[], object], messages: int, repeat: int) -> tuple[float, float]:
    """(best, median) time per message over ``repeat`` runs after one warm-up, seconds."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) / messages)
    return min(times), statistics.median(times)


def main() -> None:
    rcpts = recipients(CHUNK)
    base_rcpts = recipients(BASELINE_BATCH)
    print(
        f"{'fixture':<12} {'octets':>7} {'email min/med (us)':>19}"
        f" {'fastsmtp min/med (us)':>22} {'speed-up (min, med)':>20}"
    )
    for fixture, with_attachment in FIXTURES.items():
        fast = fastsmtp_batch(with_attachment, rcpts)
        check(fast[0].as_bytes(), rcpts[0], with_attachment)
        check(python_message(with_attachment, rcpts[0]), rcpts[0], with_attachment)
        del fast
        f_min, f_med = per_message(lambda w=with_attachment: fastsmtp_batch(w, rcpts), CHUNK, 30)
        p_min, p_med = per_message(
            lambda w=with_attachment: python_batch(w, base_rcpts), len(base_rcpts), 10
        )
        octets = len(fastsmtp_batch(with_attachment, rcpts[:1])[0])
        print(
            f"{fixture:<12} {octets:>7} {p_min * 1e6:>9.0f}/{p_med * 1e6:<9.0f}"
            f" {f_min * 1e6:>10.2f}/{f_med * 1e6:<11.2f}"
            f" {p_min / f_min:>8.0f}x, {p_med / f_med:>5.0f}x"
        )


if __name__ == "__main__":
    main()
