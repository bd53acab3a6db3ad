"""Bounces made by real Postfix, parsed by fastsmtp.

A private Postfix instance accepts mail for ``example.org`` but knows only
``known@example.org`` (``virtual_mailbox_maps`` lists nobody else, and
``smtpd_reject_unlisted_recipient = no`` makes it accept the others first), so Postfix's
own bounce daemon writes an RFC 3464 DSN to the envelope sender. The sender domain
``bounces.test`` is routed (``transport_maps``) to an aiosmtpd capture server: the intake
for this test. A second capture server plays a downstream MX for ``remote.test`` that
refuses some recipients (5xx: Postfix bounces with the remote reply as ``smtp;``
diagnostic) and defers one (4xx: Postfix sends a delay notification after
``delay_warning_time``).

fastsmtp's own engine sends the VERP-addressed mail; stdlib smtplib sends where DSN
parameters (``RET``, ``ENVID``, ``ORCPT``, ``NOTIFY``) are needed, which the engine does not
offer yet.

``python -m tests.test_bounce_postfix`` rewrites the ``tests/bounces/postfix-*.eml``
samples from a fresh run (the benchmark and the corpus use them).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import smtplib
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import fastsmtp
from fastsmtp.bounces import make_verp_address, parse_bounce
from tests.peers.aiosmtpd_server import CapturedMessage, CaptureServer
from tests.peers.postfix import POSTFIX, PostfixInstance, claim_dir, scratch_root

SECRET = b"fastsmtp-postfix-bounce-test"
BOUNCE_DOMAIN = "bounces.test"
REMOTE_DOMAIN = "remote.test"
CORPUS = Path(__file__).parent / "bounces"
# Job ids unique per test run (async tests run once per event loop, against one Postfix).
_JOBS = itertools.count(7001)

# What the downstream MX for remote.test answers at RCPT.
REMOTE_REPLIES = {
    f"blocked@{REMOTE_DOMAIN}": "550 5.7.1 Service unavailable; client host [127.0.0.1] "
    "blocked using zen.spamhaus.org",
    f"full@{REMOTE_DOMAIN}": "552 5.2.2 <full@remote.test>: mailbox full",
    f"busy@{REMOTE_DOMAIN}": "450 4.2.0 <busy@remote.test>: mailbox busy, try later",
}


@dataclass
class BounceLoop:
    postfix: PostfixInstance
    intake: CaptureServer
    remote: CaptureServer

    def bounce_to(self, address: str, timeout: float = 30.0) -> CapturedMessage:
        """The first report delivered to ``address`` (waits for it)."""
        deadline = time.monotonic() + timeout
        while True:
            for m in self.intake.messages:
                if any(r.lower() == address.lower() for r in m.rcpt_tos):
                    return m
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"no report for {address} after {timeout}s\n{self.postfix.log_text()[-3000:]}"
                )
            time.sleep(0.02)


def start_loop() -> tuple[BounceLoop, Path]:
    """Start the capture servers and a Postfix that bounces unknown users to them."""
    intake = CaptureServer().start()
    remote = CaptureServer(rcpt_replies=REMOTE_REPLIES).start()
    tables = Path(tempfile.mkdtemp(prefix="fastsmtp-bouncemaps-", dir=scratch_root()))
    claim_dir(tables)
    os.chmod(tables, 0o755)  # read by Postfix daemons (user postfix)
    (tables / "vmailbox").write_text("known@example.org maildir/\n")
    (tables / "transport").write_text(
        f"{BOUNCE_DOMAIN} smtp:[127.0.0.1]:{intake.port}\n"
        f"{REMOTE_DOMAIN} smtp:[127.0.0.1]:{remote.port}\n"
    )
    for f in tables.iterdir():
        os.chmod(f, 0o644)
    postfix = PostfixInstance(
        extra_config={
            "virtual_mailbox_maps": f"texthash:{tables / 'vmailbox'}",
            # accept unknown users at RCPT, so that the bounce daemon reports them later
            "smtpd_reject_unlisted_recipient": "no",
            "transport_maps": f"texthash:{tables / 'transport'}",
            "relay_domains": REMOTE_DOMAIN,
            # a delay notification as soon as a deferred message is looked at again
            "delay_warning_time": "1s",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
        }
    )
    try:
        postfix.start()
    except BaseException:
        intake.stop()
        remote.stop()
        shutil.rmtree(tables, ignore_errors=True)
        raise
    return BounceLoop(postfix, intake, remote), tables


def stop_loop(loop: BounceLoop, tables: Path) -> None:
    loop.postfix.stop()
    loop.intake.stop()
    loop.remote.stop()
    shutil.rmtree(tables, ignore_errors=True)


@pytest.fixture(scope="module")
def loop() -> Iterator[BounceLoop]:
    if not os.path.exists(POSTFIX) or shutil.which("postconf") is None or os.geteuid() != 0:
        pytest.skip("a private Postfix instance needs root and Debian's postfix package")
    bounce_loop, tables = start_loop()
    try:
        yield bounce_loop
    finally:
        stop_loop(bounce_loop, tables)


def verp(job: int, recipient: int, secret: bytes = SECRET) -> str:
    return make_verp_address(secret, "bounces", BOUNCE_DOMAIN, job, recipient)


async def _send_verp(port: int, job: int, to: list[str], secret: bytes = SECRET) -> list[str]:
    """Send one message per recipient with its own VERP return path; their Message-IDs."""
    ids = []
    async with fastsmtp.Engine("127.0.0.1", port, tls="none", connections=1) as engine:
        for index, rcpt in enumerate(to):
            msg = fastsmtp.Message(
                sender="News <news@sender.test>",
                to=[rcpt],
                subject=f"Job {job} for recipient {index}",
                text="Hello,\n" + "this is the newsletter body.\n" * 60,
                envelope_sender=verp(job, index, secret),
            )
            [result] = await engine.send(msg)
            assert result.ok, result
            assert result.message_id is not None
            ids.append(result.message_id.strip("<>"))
    return ids


async def test_unknown_users_bounce_back_to_their_verp_job_and_recipient(
    loop: BounceLoop,
) -> None:
    job = next(_JOBS)
    to = ["known@example.org", f"nobody-{job}-1@example.org", f"nobody-{job}-2@example.org"]
    ids = await _send_verp(loop.postfix.port, job, to)
    for index in (1, 2):
        captured = loop.bounce_to(verp(job, index))
        assert captured.mail_from in ("", "<>")  # a bounce has the null return path
        # The intake knows the envelope recipient: the first place for the token.
        report = parse_bounce(captured.content, SECRET, envelope_recipient=captured.rcpt_tos[0])
        assert report.kind == "dsn"
        assert (report.verp_status, report.verp_job, report.verp_recipient) == (
            "valid",
            job,
            index,
        )
        assert report.reporting_mta == "localhost"
        assert report.original_sender == verp(job, index)
        assert report.original_message_id == ids[index]
        assert report.original_subject == f"Job {job} for recipient {index}"
        assert report.original_to == (to[index],)
        [rcpt] = report.recipients
        assert rcpt.address == to[index]
        assert (rcpt.action, rcpt.status, rcpt.category, rcpt.permanent) == (
            "failed",
            "5.1.1",
            "bad_mailbox",
            True,
        )
        assert rcpt.diagnostic_type == "x-postfix"
        assert rcpt.diagnostic is not None and to[index] in rcpt.diagnostic
        # Without the envelope: the token is still found in the report's headers.
        again = parse_bounce(captured.content, SECRET)
        assert (again.verp_job, again.verp_recipient) == (job, index)
        # Another secret: the same bounce is a forgery.
        assert parse_bounce(captured.content, b"not the secret").verp_status == "forged"
    # known@ was delivered: no report for recipient 0 ever arrives.
    assert loop.postfix.messages_for("known@example.org", expected=1)
    assert not any(verp(job, 0) in m.rcpt_tos for m in loop.intake.messages)


async def test_a_forged_verp_sender_is_reported_as_forged(loop: BounceLoop) -> None:
    job = next(_JOBS)
    await _send_verp(loop.postfix.port, job, [f"nobody-{job}@example.org"], secret=b"attacker")
    captured = loop.bounce_to(verp(job, 0, secret=b"attacker"))
    report = parse_bounce(captured.content, SECRET, envelope_recipient=captured.rcpt_tos[0])
    assert report.kind == "dsn"
    assert report.verp_status == "forged"
    assert report.verp_job is None and report.verp_recipient is None
    assert report.verp_address == captured.rcpt_tos[0]


def test_dsn_parameters_envid_orcpt_and_headers_only_return(loop: BounceLoop) -> None:
    sender = verp(7003, 0)
    body = (
        b"From: News <news@sender.test>\r\nTo: Someone <nobody-4@example.org>\r\n"
        b"Subject: =?utf-8?q?Caf=C3=A9_news?=\r\nMessage-ID: <job7003.0@sender.test>\r\n"
        b"\r\nHello\r\n"
    )
    with smtplib.SMTP("127.0.0.1", loop.postfix.port) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("dsn")
        smtp.sendmail(
            sender,
            ["nobody-4@example.org"],
            body,
            mail_options=["RET=HDRS", "ENVID=job-7003"],
            rcpt_options=["NOTIFY=FAILURE", "ORCPT=rfc822;Nobody-4@example.org"],
        )
    captured = loop.bounce_to(sender)
    assert b"text/rfc822-headers" in captured.content
    report = parse_bounce(captured.content, SECRET)
    assert report.kind == "dsn"
    assert report.envelope_id == "job-7003"
    assert report.original_message_id == "job7003.0@sender.test"
    assert report.original_subject == "Café news"
    assert report.original_return_path == sender
    assert report.arrival_date is not None
    [rcpt] = report.recipients
    assert rcpt.original_recipient == "Nobody-4@example.org"
    assert rcpt.address == "nobody-4@example.org"
    assert (report.verp_job, report.verp_recipient) == (7003, 0)


def test_remote_refusals_carry_the_remote_reply(loop: BounceLoop) -> None:
    cases = {
        f"blocked@{REMOTE_DOMAIN}": ("5.7.1", 550, "spam_block", True),
        f"full@{REMOTE_DOMAIN}": ("5.2.2", 552, "mailbox_full", False),
    }
    for index, rcpt_addr in enumerate(cases):
        with smtplib.SMTP("127.0.0.1", loop.postfix.port) as smtp:
            smtp.sendmail(verp(7004, index), [rcpt_addr], b"Subject: hi\r\n\r\nHello\r\n")
    for index, (rcpt_addr, (status, code, category, permanent)) in enumerate(cases.items()):
        report = parse_bounce(loop.bounce_to(verp(7004, index)).content, SECRET)
        assert report.kind == "dsn"
        assert report.verp_recipient == index
        [rcpt] = report.recipients
        assert rcpt.address == rcpt_addr
        assert rcpt.diagnostic_type == "smtp"
        assert rcpt.remote_mta == "127.0.0.1"
        assert (rcpt.status, rcpt.reply_code, rcpt.category, rcpt.permanent) == (
            status,
            code,
            category,
            permanent,
        )
        assert rcpt.action == "failed"


def test_postfix_delay_notification(loop: BounceLoop) -> None:
    sender = verp(7005, 0)
    with smtplib.SMTP("127.0.0.1", loop.postfix.port) as smtp:
        smtp.sendmail(
            sender,
            [f"busy@{REMOTE_DOMAIN}"],
            b"Subject: hi\r\n\r\nHello\r\n",
            rcpt_options=["NOTIFY=FAILURE,DELAY"],
        )
    report = parse_bounce(loop.bounce_to(sender).content, SECRET)
    assert report.kind == "dsn"
    assert report.subject == "Delayed Mail (still being retried)"
    [rcpt] = report.recipients
    assert (rcpt.action, rcpt.status, rcpt.reply_code) == ("delayed", "4.2.0", 450)
    assert (rcpt.category, rcpt.permanent) == ("transient", False)
    assert rcpt.will_retry_until is not None
    assert (report.verp_job, report.verp_recipient) == (7005, 0)


def _write_corpus() -> None:
    """Regenerate tests/bounces/postfix-*.eml from a fresh Postfix run."""
    bounce_loop, tables = start_loop()
    try:
        asyncio.run(_send_verp(bounce_loop.postfix.port, 9001, ["nobody@example.org"]))
        with smtplib.SMTP("127.0.0.1", bounce_loop.postfix.port) as smtp:
            smtp.sendmail(
                verp(9002, 0),
                ["nobody@example.org"],
                b"From: News <news@sender.test>\r\nTo: nobody@example.org\r\n"
                b"Subject: Headers only\r\nMessage-ID: <job9002.0@sender.test>\r\n\r\nHi\r\n",
                mail_options=["RET=HDRS", "ENVID=job-9002"],
                rcpt_options=["NOTIFY=FAILURE", "ORCPT=rfc822;nobody@example.org"],
            )
            smtp.sendmail(
                verp(9003, 0),
                [f"busy@{REMOTE_DOMAIN}"],
                b"Subject: delayed\r\nMessage-ID: <job9003.0@sender.test>\r\n\r\nHi\r\n",
                rcpt_options=["NOTIFY=FAILURE,DELAY"],
            )
        names = {
            verp(9001, 0): "postfix-unknown-user-full",
            verp(9002, 0): "postfix-unknown-user-headers",
            verp(9003, 0): "postfix-delayed",
        }
        for address, name in names.items():
            content = bounce_loop.bounce_to(address).content
            (CORPUS / f"{name}.eml").write_bytes(content)
            print(f"wrote {name}.eml ({len(content)} bytes)")
    finally:
        stop_loop(bounce_loop, tables)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write-corpus"]:
        sys.exit("usage: python -m tests.test_bounce_postfix --write-corpus")
    _write_corpus()
