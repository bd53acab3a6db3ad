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
import time
from collections.abc import Callable
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

TEXT = """Hello {first_name} {last_name},

thank you for your order {order_id} at {company}. We have received your payment of
{amount} EUR and are preparing your parcel. You will receive another message with the
tracking number as soon as the parcel has left our warehouse.

Order summary
-------------
Order number: {order_id}
Customer: {first_name} {last_name}
Amount paid: {amount} EUR
Delivery address: {street}, {city}

If anything about this order looks wrong, reply to this message or write to
{support}; please quote your order number {order_id} so we can find it quickly.

Our opening hours are Monday to Friday, 9:00 to 18:00. Outside these hours your
message waits for us and is answered first thing on the next working day.

Kind regards,
the {company} team

--
You receive this message because you ordered at {company}.
Unsubscribe: {unsubscribe}
"""

HTML = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Your order {order_id}</title></head>
<body style="font-family: Arial, sans-serif; color: #222;">
<h1 style="font-size: 20px;">Hello {first_name} {last_name},</h1>
<p>thank you for your order <strong>{order_id}</strong> at {company}. We have received
your payment of <strong>{amount} EUR</strong> and are preparing your parcel. You will
receive another message with the tracking number as soon as the parcel has left our
warehouse.</p>
<table style="border-collapse: collapse; margin: 16px 0;">
<tr><td style="padding: 4px 12px;">Order number</td><td>{order_id}</td></tr>
<tr><td style="padding: 4px 12px;">Customer</td><td>{first_name} {last_name}</td></tr>
<tr><td style="padding: 4px 12px;">Amount paid</td><td>{amount} EUR</td></tr>
<tr><td style="padding: 4px 12px;">Delivery address</td><td>{street}, {city}</td></tr>
</table>
<p>If anything about this order looks wrong, reply to this message or write to
<a href="mailto:{support}">{support}</a>; please quote your order number {order_id}.</p>
<p>Our opening hours are Monday to Friday, 9:00 to 18:00.</p>
<p>Kind regards,<br>the {company} team</p>
<p style="font-size: 11px; color: #888;">You receive this message because you ordered at
{company}. <a href="{unsubscribe}">Unsubscribe</a>.</p>
</body></html>
"""

SUBJECT = "Your order {order_id} at {company}, {first_name}"


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


def per_message(fn: Callable[[], object], messages: int, repeat: int) -> float:
    """Best time per message over ``repeat`` runs, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best / messages


def main() -> None:
    rcpts = recipients(CHUNK)
    base_rcpts = recipients(BASELINE_BATCH * 5)
    print(f"{'fixture':<12} {'octets':>7} {'email (us)':>11} {'fastsmtp (us)':>14} {'speed-up':>9}")
    for fixture, with_attachment in FIXTURES.items():
        fast = fastsmtp_batch(with_attachment, rcpts)
        check(fast[0].as_bytes(), rcpts[0], with_attachment)
        check(python_message(with_attachment, rcpts[0]), rcpts[0], with_attachment)
        t_fast = per_message(lambda w=with_attachment: fastsmtp_batch(w, rcpts), CHUNK, 15)
        t_py = per_message(
            lambda w=with_attachment: python_batch(w, base_rcpts), len(base_rcpts), 5
        )
        print(
            f"{fixture:<12} {len(fast[0]):>7} {t_py * 1e6:>11.1f} {t_fast * 1e6:>14.2f}"
            f" {t_py / t_fast:>8.0f}x"
        )


if __name__ == "__main__":
    main()
