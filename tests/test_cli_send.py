"""``fastsmtp send`` run as a real subprocess against aiosmtpd and Postfix: personalization
from CSV/JSONL, the results file, bad rows, connection and credential errors, Ctrl-C, and a
job killed halfway then resumed (every recipient exactly one message and one line)."""

from __future__ import annotations

import csv
import dataclasses
import email.parser
import email.policy
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

import fastsmtp
from fastsmtp.cli._records import Row, load_results, read_rows
from tests.peers.aiosmtpd_server import CaptureServer
from tests.peers.certs import TestPKI
from tests.peers.postfix import PostfixInstance
from tests.test_dkim import ed25519_pem, verifies

Factory = Callable[..., CaptureServer]


def send_cmd(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "fastsmtp", "send", *map(str, args)]


def run_send(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        send_cmd(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def results_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_csv(path: Path, rows: Sequence[dict[str, str]], fields: Sequence[str]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, lines: Sequence[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def parse(raw: bytes) -> email.message.EmailMessage:
    parsed = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def body_text(raw: bytes) -> str:
    part = parse(raw).get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")  # type: ignore[attr-defined]


@pytest.fixture
def templates(tmp_path: Path) -> dict[str, Path]:
    text = tmp_path / "body.txt"
    text.write_text("Hi {{ name }}, order {{ order }} shipped.\n")
    html = tmp_path / "body.html"
    html.write_text("<p>Hi <b>{{ name }}</b>, order {{ order }} shipped.</p>\n")
    return {"text": text, "html": html}


def base_args(port: int, templates: dict[str, Path], recipients: Path, results: Path) -> list[Any]:
    return [
        "--host", "127.0.0.1", "--port", port, "--tls", "none",
        "--from", "Shop <shop@example.com>",
        "--subject", "Order {{ order }} for {{ name }}",
        "--text", templates["text"],
        "--recipients", recipients, "--results", results,
    ]  # fmt: skip


# -- reading recipients (in-process) ---------------------------------------------------------


def test_read_rows_csv_and_jsonl(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "r.csv",
        [
            {"Email": " a@example.org ", "name": "Ann", "order": "1"},
            {"Email": "", "name": "Nobody", "order": "2"},
            {"Email": "c@example.org", "name": "", "order": "3"},
        ],
        ["Email", "name", "order"],
    )
    rows = list(read_rows(path, "csv"))
    assert rows[0] == Row(0, "a@example.org", "Ann", {"order": "1"})
    assert rows[1].error is not None and "no address" in rows[1].error
    assert rows[2] == Row(2, "c@example.org", None, {"order": "3"})
    jsonl = write_jsonl(
        tmp_path / "r.jsonl",
        ['{"email": "a@example.org", "items": [1, 2]}', "", "{oops", "[1]", '{"name": "x"}'],
    )
    rows = list(read_rows(jsonl, "jsonl"))
    assert [r.index for r in rows] == [0, 1, 2, 3]  # blank lines are not records
    assert rows[0].data == {"items": [1, 2]}
    assert rows[1].error is not None and "line 3: invalid JSON" in rows[1].error
    assert rows[2].error == "line 4: not a JSON object"
    assert rows[3].error is not None and "no address" in rows[3].error


def test_load_results_drops_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    good = '{"recipient":"a@example.org","status":"accepted","index":0}\n'
    path.write_text(good + '{"recipient":"b@exa')
    assert load_results(path) == {0: "a@example.org"}
    assert path.read_text() == good


# -- against aiosmtpd --------------------------------------------------------------------------


def test_send_csv_personalized_with_bad_rows(
    capture_server: Factory, tmp_path: Path, templates: dict[str, Path]
) -> None:
    server = capture_server(rcpt_replies={"refused@example.org": "550 5.1.1 no such user"})
    rows = [
        {"email": "ann@example.org", "name": "Ann", "order": "A-1"},
        {"email": "", "name": "No Address", "order": "A-2"},
        {"email": "not-an-address", "name": "Bad", "order": "A-3"},
        {"email": "refused@example.org", "name": "Refused", "order": "A-4"},
        {"email": "bob@example.org", "name": "Bob", "order": "A-5"},
    ]
    recipients = write_csv(tmp_path / "r.csv", rows, ["email", "name", "order"])
    # A short row: no "order" cell at all, so the template variable is missing.
    with open(recipients, "a") as f:
        f.write("carol@example.org,Carol\n")
    results = tmp_path / "out.jsonl"
    args = base_args(server.port, templates, recipients, results)
    proc = run_send(*args, "--html", templates["html"], "--header", "X-Order: {{ order }}")
    assert proc.returncode == 1, proc.stderr  # not every recipient was accepted
    assert "Traceback" not in proc.stderr
    assert "fastsmtp batch summary" in proc.stdout
    lines = results_of(results)
    by_index = {line["index"]: line for line in lines}
    assert sorted(by_index) == list(range(6)) and len(lines) == 6
    assert [by_index[i]["status"] for i in range(6)] == [
        "accepted", "failed", "failed", "rejected", "accepted", "failed",
    ]  # fmt: skip
    assert "no address" in by_index[1]["text"]
    assert by_index[2]["recipient"] == "not-an-address"
    assert by_index[3]["code"] == 550
    assert "order" in by_index[5]["text"]
    got = {m.rcpt_tos[0]: m for m in server.wait_for(2)}
    assert set(got) == {"ann@example.org", "bob@example.org"}
    ann = parse(got["ann@example.org"].content)
    assert ann["Subject"] == "Order A-1 for Ann"
    assert ann["To"].addresses[0].display_name == "Ann"
    assert ann["X-Order"] == "A-1"
    assert body_text(got["ann@example.org"].content) == "Hi Ann, order A-1 shipped.\n"
    html = ann.get_body(("html",))
    assert html is not None and "<b>Ann</b>" in html.get_content()  # type: ignore[attr-defined]


def test_send_jsonl_with_attachment_all_accepted(
    capture_server: Factory, tmp_path: Path, templates: dict[str, Path]
) -> None:
    server = capture_server()
    recipients = write_jsonl(
        tmp_path / "r.jsonl",
        [
            json.dumps({"address": f"u{i}@example.org", "name": f"U{i}", "order": i})
            for i in range(30)
        ],
    )
    attachment = tmp_path / "invoice.pdf"
    attachment.write_bytes(b"%PDF-1.4 fake")
    results = tmp_path / "out.jsonl"
    args = base_args(server.port, templates, recipients, results)
    proc = run_send(*args, "--attach", attachment, "--connections", "3")
    assert proc.returncode == 0, proc.stderr
    lines = results_of(results)
    assert sorted(line["index"] for line in lines) == list(range(30))
    assert {line["status"] for line in lines} == {"accepted"}
    messages = server.wait_for(30)
    assert sorted(m.rcpt_tos[0] for m in messages) == sorted(f"u{i}@example.org" for i in range(30))
    first = parse(messages[0].content)
    (part,) = list(first.iter_attachments())
    assert part.get_filename() == "invoice.pdf"
    assert part.get_content() == b"%PDF-1.4 fake"  # type: ignore[attr-defined]


def test_dkim_signs_every_message(
    capture_server: Factory, tmp_path: Path, templates: dict[str, Path]
) -> None:
    server = capture_server()
    recipients = write_csv(tmp_path / "r.csv", order_rows(5), ["email", "name", "order"])
    key = tmp_path / "dkim.pem"
    key.write_bytes(ed25519_pem())
    args = base_args(server.port, templates, recipients, tmp_path / "out.jsonl")
    missing = run_send(*args, "--dkim-key", key)
    assert missing.returncode == 2 and "--dkim-selector" in missing.stderr
    proc = run_send(*args, "--dkim-key", key, "--dkim-selector", "cli")
    assert proc.returncode == 0, proc.stderr
    signer = fastsmtp.DKIMSigner("example.com", "cli", key.read_bytes())  # d= from --from
    messages = server.wait_for(5)
    assert all(verifies(m.content, signer) for m in messages)


def test_existing_results_file_needs_resume(
    capture_server: Factory, tmp_path: Path, templates: dict[str, Path]
) -> None:
    server = capture_server()
    recipients = write_csv(tmp_path / "r.csv", [{"email": "a@example.org"}], ["email"])
    results = tmp_path / "out.jsonl"
    results.write_text("")
    proc = run_send(*base_args(server.port, templates, recipients, results))
    assert proc.returncode == 2
    assert "--resume" in proc.stderr and "Traceback" not in proc.stderr
    assert server.messages == []


def test_resume_refuses_a_changed_recipients_file(
    capture_server: Factory, tmp_path: Path, templates: dict[str, Path]
) -> None:
    server = capture_server()
    rows = [{"email": "a@example.org", "name": "A", "order": "1"}]
    recipients = write_csv(tmp_path / "r.csv", rows, ["email", "name", "order"])
    results = tmp_path / "out.jsonl"
    assert run_send(*base_args(server.port, templates, recipients, results)).returncode == 0
    rows[0]["email"] = "other@example.org"
    write_csv(recipients, rows, ["email", "name", "order"])
    proc = run_send(*base_args(server.port, templates, recipients, results), "--resume")
    assert proc.returncode == 2
    assert "does not match" in proc.stderr and "Traceback" not in proc.stderr
    assert len(server.messages) == 1


def test_unreachable_server_is_one_clear_line(tmp_path: Path, templates: dict[str, Path]) -> None:
    from tests.peers.ports import free_port

    recipients = write_csv(tmp_path / "r.csv", order_rows(1), ["email", "name", "order"])
    results = tmp_path / "out.jsonl"
    proc = run_send(*base_args(free_port(), templates, recipients, results))
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("fastsmtp send: error: 127.0.0.1:") and "connect" in line
    assert not results.exists()


def test_bad_credentials_are_one_clear_line(
    capture_server: Factory, pki: TestPKI, tmp_path: Path, templates: dict[str, Path]
) -> None:
    server = capture_server(
        tls_context=pki.server_context(), require_starttls=True, auth_users={"ann": "right"}
    )
    recipients = write_csv(tmp_path / "r.csv", order_rows(1), ["email", "name", "order"])
    results = tmp_path / "out.jsonl"
    args = [*base_args(server.port, templates, recipients, results), "--tls", "starttls"]
    args += ["--cafile", pki.ca_file, "--user", "ann"]
    proc = run_send(*args, env={"FASTSMTP_PASSWORD": "wrong"})
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "535" in line or "authentication" in line.lower()
    assert not results.exists()
    proc = run_send(*args, env={"FASTSMTP_PASSWORD": "right"})
    assert proc.returncode == 0, proc.stderr
    (message,) = server.wait_for(1)
    assert message.tls and message.auth_login == "ann"


def test_password_needs_env_or_a_terminal(
    capture_server: Factory, tmp_path: Path, templates: dict[str, Path]
) -> None:
    server = capture_server()
    recipients = write_csv(tmp_path / "r.csv", order_rows(1), ["email", "name", "order"])
    env = {k: v for k, v in os.environ.items() if k != "FASTSMTP_PASSWORD"}
    proc = subprocess.run(
        send_cmd(
            *base_args(server.port, templates, recipients, tmp_path / "o.jsonl"),
            *("--user", "u", "--insecure-plaintext-auth"),
        ),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    assert proc.returncode == 2
    assert "FASTSMTP_PASSWORD" in proc.stderr and "Traceback" not in proc.stderr


def test_plaintext_auth_needs_the_insecure_flag(
    capture_server: Factory, tmp_path: Path, templates: dict[str, Path]
) -> None:
    server = capture_server(auth_users={"ann": "pw"}, auth_require_tls=False)
    recipients = write_csv(tmp_path / "r.csv", order_rows(1), ["email", "name", "order"])
    env = {"FASTSMTP_PASSWORD": "pw"}
    args = [*base_args(server.port, templates, recipients, tmp_path / "o.jsonl"), "--user", "ann"]
    proc = run_send(*args, env=env)
    # Refused before connecting (and so before any password prompt), in CLI terms.
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "without TLS" in line and "--insecure-plaintext-auth" in line
    assert "allow_plaintext_auth" not in line and "tls='" not in line
    proc = run_send(*args, "--insecure-plaintext-auth", env=env)
    assert proc.returncode == 0, proc.stderr
    assert server.wait_for(1)[0].auth_login == "ann"


def test_a_template_variable_nobody_has_is_a_usage_error(
    capture_server: Factory, tmp_path: Path, templates: dict[str, Path]
) -> None:
    server = capture_server()
    recipients = write_csv(tmp_path / "r.csv", [{"email": "a@example.org"}], ["email"])
    proc = run_send(*base_args(server.port, templates, recipients, tmp_path / "o.jsonl"))
    assert proc.returncode == 2
    assert "order" in proc.stderr and "Traceback" not in proc.stderr
    assert server.messages == []


# -- interruption and resume ---------------------------------------------------------------


def wait_for_lines(path: Path, count: int, proc: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        if proc.poll() is not None:
            raise AssertionError(f"the job ended early: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"fewer than {count} result lines after {timeout}s")
        time.sleep(0.002)


def order_rows(count: int, domain: str = "example.org", tag: str = "") -> list[dict[str, str]]:
    return [
        {"email": f"r{tag}{i}@{domain}", "name": f"R {i}", "order": str(i)} for i in range(count)
    ]


@dataclasses.dataclass
class RunningJob:
    rows: list[dict[str, str]]
    results: Path
    args: list[Any]
    proc: subprocess.Popen[str]

    @property
    def addresses(self) -> list[str]:
        return [r["email"] for r in self.rows]


def start_slow_job(
    port: int,
    templates: dict[str, Path],
    tmp_path: Path,
    *,
    lines: int,
    extra: Sequence[Any] = (),
    tag: str = "",
) -> RunningJob:
    """Start ``fastsmtp send`` for 40 recipients at --rate 10 and return once ``lines``
    results are written. Past the first second's burst it sends one message every 100 ms,
    so a kill lands between messages (a message the server accepted just before a kill,
    whose line was not yet written, would be sent twice: that is the documented window)."""
    rows = order_rows(40, tag=tag)
    recipients = write_csv(tmp_path / "r.csv", rows, ["email", "name", "order"])
    results = tmp_path / "out.jsonl"
    args = [*base_args(port, templates, recipients, results), *extra]
    proc = subprocess.Popen(
        send_cmd(*args, "--rate", "10"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for_lines(results, lines, proc, timeout=30)
    return RunningJob(rows, results, args, proc)


def assert_exactly_once(results: Path, addresses: list[str]) -> None:
    lines = results_of(results)
    assert sorted(line["index"] for line in lines) == list(range(len(addresses)))
    assert {line["status"] for line in lines} == {"accepted"}
    assert {line["index"]: line["recipient"] for line in lines} == dict(enumerate(addresses))


def test_killed_job_resumes_exactly_once_aiosmtpd(
    capture_server: Factory, tmp_path: Path, templates: dict[str, Path]
) -> None:
    server = capture_server()
    job = start_slow_job(server.port, templates, tmp_path, lines=15)
    results, args = job.results, job.args
    job.proc.kill()
    job.proc.communicate()
    sent_before = len(results_of(results))
    assert 15 <= sent_before < 40
    resumed = run_send(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"skipped {sent_before} recipients" in resumed.stdout
    addresses = job.addresses
    assert_exactly_once(results, addresses)
    received = Counter(m.rcpt_tos[0] for m in server.wait_for(40))
    time.sleep(0.2)  # nothing more may arrive
    assert len(server.messages) == 40
    assert received == dict.fromkeys(addresses, 1)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_cleanly_and_resume_finishes(
    signum: int, capture_server: Factory, tmp_path: Path, templates: dict[str, Path]
) -> None:
    server = capture_server()
    job = start_slow_job(server.port, templates, tmp_path, lines=15)
    results, args = job.results, job.args
    started = time.monotonic()
    job.proc.send_signal(signum)
    out, err = job.proc.communicate(timeout=30)
    assert job.proc.returncode == 130, err
    assert time.monotonic() - started < 5  # queued ones are dropped, not waited for
    assert "Traceback" not in err
    assert "fastsmtp batch summary" in out
    assert "--resume" in err
    written = len(results_of(results))
    assert written < 40
    assert len(server.messages) == written  # nothing was sent without its line
    resumed = run_send(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    addresses = job.addresses
    assert_exactly_once(results, addresses)
    assert Counter(m.rcpt_tos[0] for m in server.wait_for(40)) == dict.fromkeys(addresses, 1)


# -- against Postfix -------------------------------------------------------------------------


def test_killed_job_resumes_exactly_once_postfix(
    postfix: PostfixInstance, pki: TestPKI, tmp_path: Path, templates: dict[str, Path]
) -> None:
    tls = ["--tls", "starttls", "--cafile", pki.ca_file]
    job = start_slow_job(postfix.port, templates, tmp_path, lines=15, extra=tls, tag="-cli-kill-")
    results, args = job.results, job.args
    job.proc.kill()
    job.proc.communicate()
    assert len(results_of(results)) < 40
    resumed = run_send(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    addresses = job.addresses
    assert_exactly_once(results, addresses)
    for i, address in enumerate(addresses):
        (raw,) = postfix.messages_for(address, expected=1)
        assert parse(raw)["Subject"] == f"Order {i} for R {i}"
    postfix.wait_idle()
    delivered = postfix.messages_by_address()
    assert all(len(delivered[a.lower()]) == 1 for a in addresses)
    # Postfix saw the TLS session the CLI asked for.
    assert "TLS connection established" in postfix.log_text()


def test_losing_the_server_mid_job_stops_with_one_clear_error(
    capture_server: Factory, tmp_path: Path, templates: dict[str, Path]
) -> None:
    server = capture_server()
    job = start_slow_job(server.port, templates, tmp_path, lines=12)
    server.stop()
    _out, err = job.proc.communicate(timeout=60)
    assert job.proc.returncode == 3, err
    assert "Traceback" not in err
    assert "fastsmtp send: error: lost the server" in err
    assert "run again with --resume" in err
    lines = results_of(job.results)
    accepted = {line["recipient"] for line in lines if line["status"] == "accepted"}
    assert len(lines) < 40
    assert accepted == {m.rcpt_tos[0] for m in server.messages}
