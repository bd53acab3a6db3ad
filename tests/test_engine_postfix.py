"""The engine against a real Postfix smtpd (STARTTLS, PIPELINING, CHUNKING, SMTPUTF8),
delivering to a Maildir that the tests read back and parse with Python's email package."""

from __future__ import annotations

import email.parser
import email.policy
import uuid
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import fastsmtp
from tests.peers.postfix import PostfixInstance

PARSER = email.parser.BytesParser(policy=email.policy.default)


def engine_for(postfix: PostfixInstance, **options: Any) -> fastsmtp.Engine:
    assert postfix.pki is not None
    return fastsmtp.Engine(
        postfix.host,
        postfix.port,
        tls="starttls",
        ssl_context=postfix.pki.client_context(),
        **options,
    )


def parse(raw: bytes) -> EmailMessage:
    message = PARSER.parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def unique(local: str) -> str:
    return f"{local}-{uuid.uuid4().hex[:8]}"


async def test_message_delivered_through_postfix_parses_intact(postfix: PostfixInstance) -> None:
    rcpt = f"{unique('bob')}@example.org"
    msg = fastsmtp.Message(
        sender="Ann Ünicode <ann@example.com>",
        to=[f"Bob <{rcpt}>"],
        subject="Grüße aus fastsmtp — a subject long enough to need folding across lines",
        text="Hello Bob,\n.\nA line that is only a dot, and ünïcödé.\n",
    )
    async with engine_for(postfix) as engine:
        (result,) = await engine.send(msg)
    assert (result.status, result.code) == ("accepted", 250)
    (raw,) = postfix.messages_for(rcpt)
    parsed = parse(raw)
    assert parsed["Subject"] == msg.subject
    assert parsed["From"].addresses[0].display_name == "Ann Ünicode"
    assert parsed["From"].addresses[0].addr_spec == "ann@example.com"
    assert parsed["To"].addresses[0].addr_spec == rcpt
    assert parsed["Message-ID"] == result.message_id
    assert parsed.get_content().replace("\r\n", "\n") == msg.text


async def test_chunking_pipelines_several_messages_per_connection(
    postfix: PostfixInstance,
) -> None:
    tag = unique("chunk")
    offset = postfix.log_offset()
    template = fastsmtp.Message(sender="ann@example.com", subject="n={{ n }}", text="x")
    recipients = [{"address": f"{tag}{i}@example.org", "n": i} for i in range(20)]
    async with engine_for(postfix, connections=1) as engine:
        report = await engine.send_batch(template, recipients)
    assert report.accepted == 20
    (stats,) = postfix.disconnect_stats(since=offset, expected=1)
    assert stats["mail"] == 20 and stats["rcpt"] == 20
    assert stats["bdat"] == 20  # one BDAT LAST per message, no DATA
    assert "data" not in stats
    assert stats["starttls"] == 1


async def test_unknown_domain_is_rejected_and_good_recipients_delivered(
    postfix: PostfixInstance,
) -> None:
    good = f"{unique('good')}@example.org"
    msg = fastsmtp.Message(
        sender="ann@example.com", to=[good, "nobody@nowhere.invalid"], subject="s", text="t"
    )
    async with engine_for(postfix) as engine:
        results = await engine.send(msg)
    assert [(r.recipient, r.status) for r in results] == [
        (good, "accepted"),
        ("nobody@nowhere.invalid", "rejected"),
    ]
    assert results[1].code is not None and results[1].code >= 500
    assert len(postfix.messages_for(good)) == 1


async def test_smtputf8_local_part(postfix: PostfixInstance) -> None:
    rcpt = f"{unique('jösé')}@example.org"
    msg = fastsmtp.Message(sender="ann@example.com", to=[rcpt], subject="ü", text="t")
    async with engine_for(postfix) as engine:
        (result,) = await engine.send(msg)
    assert result.status == "accepted"
    (raw,) = postfix.messages_for(rcpt)
    assert parse(raw)["Subject"] == "ü"


async def test_thousand_personalized_messages_with_attachment(
    postfix_factory: Callable[..., PostfixInstance],
) -> None:
    server = postfix_factory(tls="may")
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 400
    template = fastsmtp.Message(
        sender="Shop <shop@example.com>",
        subject="Invoice {{ invoice }} for {{ name }}",
        text="Dear {{ name }},\nyour invoice {{ invoice }} is attached.\n",
        html="<p>Dear <b>{{ name }}</b>, invoice {{ invoice }}</p>",
        attachments=[fastsmtp.Attachment(filename="invoice.pdf", content=pdf)],
    )
    count = 1000
    recipients = [
        fastsmtp.Recipient(
            address=f"cust{i}@example.org", name=f"Customer <{i}>", data={"invoice": i}
        )
        for i in range(count)
    ]
    results: list[fastsmtp.Result] = []
    async with engine_for(server, connections=4) as engine:
        report = await engine.send_batch(template, recipients, on_result=results.append)
    assert report.accepted == count, report
    ids = {r.recipient: r.message_id for r in results}
    delivered = server.messages_by_address(expected=count, timeout=120)
    assert len(delivered) == count
    for i in range(count):
        (raw,) = delivered[f"cust{i}@example.org"]
        parsed = parse(raw)
        assert parsed["Message-ID"] == ids[f"cust{i}@example.org"]
        assert parsed["Subject"] == f"Invoice {i} for Customer <{i}>"
        assert parsed["To"].addresses[0].display_name == f"Customer <{i}>"
        text = parsed.get_body(("plain",))
        html = parsed.get_body(("html",))
        assert text is not None and html is not None
        assert f"your invoice {i} is attached" in text.get_content()
        assert f"<b>Customer &lt;{i}&gt;</b>" in html.get_content()  # escaped in HTML
        (attachment,) = list(parsed.iter_attachments())
        assert attachment.get_filename() == "invoice.pdf"
        assert attachment.get_content_type() == "application/pdf"
        assert attachment.get_content() == pdf


async def test_messages_the_server_cannot_take_fail_alone(
    postfix_factory: Callable[..., PostfixInstance],
) -> None:
    """A message over the server's SIZE and one that needs SMTPUTF8 from a server without it
    are refused by the protocol core before a byte of them is sent: each gets one ``failed``
    Result saying why, and the messages around them on the same connection go out."""
    server = postfix_factory(tls="may", message_size_limit=20_000, smtputf8=False)
    template = fastsmtp.Message(sender="shop@example.com", subject="Hi", text="{{ body }}\n")
    fine = [{"address": f"fine{i}@example.org", "body": "short"} for i in range(6)]
    big = {"address": "big@example.org", "body": "a long line of text\n" * 2000}
    utf8 = {"address": "jösé@example.org", "body": "short"}
    results: list[fastsmtp.Result] = []
    async with engine_for(server, connections=1) as engine:
        report = await engine.send_batch(
            template, [*fine[:3], big, utf8, *fine[3:]], on_result=results.append
        )
    by_address = {r.recipient: r for r in results}
    assert len(results) == len(by_address) == 8
    assert (report.accepted, report.failed) == (6, 2)
    assert by_address["big@example.org"].status == "failed"
    assert "SIZE" in by_address["big@example.org"].text
    assert by_address["jösé@example.org"].status == "failed"
    assert "SMTPUTF8" in by_address["jösé@example.org"].text
    assert by_address["big@example.org"].attempts == 1
    delivered = server.messages_by_address(expected=6, timeout=30)
    assert sorted(delivered) == sorted(r["address"] for r in fine)
