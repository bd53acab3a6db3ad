"""``fastsmtp send`` options and messages, run as a real subprocess against the aiosmtpd
capture server: the reasons in the summary, ``--max-attempts``, ``--limit`` with
``--resume``, ``--dry-run``, advice in command-line syntax, plaintext credentials refused
before the password prompt (checked at a real pseudo-terminal, with a prompt that does
appear when the password may be sent), and no results file after a template error."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.peers.aiosmtpd_server import CaptureServer
from tests.peers.certs import TestPKI
from tests.peers.ports import free_port
from tests.peers.postfix import PostfixInstance
from tests.test_cli_send import (
    base_args,
    order_rows,
    results_of,
    run_send,
    send_cmd,
    write_csv,
    write_jsonl,
)

Factory = Callable[..., CaptureServer]

WIDE = {"COLUMNS": "200"}
"""Rich wraps tables to the terminal width (80 in a pipe); the tests read whole rows."""

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")

FIELDS = ["email", "name", "order"]


@pytest.fixture
def templates(tmp_path: Path) -> dict[str, Path]:
    text = tmp_path / "body.txt"
    text.write_text("Hi {{ name }}, order {{ order }} shipped.\n")
    return {"text": text}


def rows_of_table(output: str) -> list[list[str]]:
    """The cells of each row of the rich tables in ``output``."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in output.splitlines()
        if line.strip().startswith("│")
    ]


def run_in_terminal(
    args: list[Any], env: dict[str, str], password: str | None = None, timeout: float = 60
) -> tuple[int, str]:
    """Run ``fastsmtp`` with a pseudo-terminal as its controlling terminal, stdin, stdout
    and stderr, as a person at a shell would; type ``password`` at the password prompt if
    one appears. Returns the exit status and everything written to the terminal."""
    # A session leader that opens no tty has none: the wrapper makes the pty its
    # controlling terminal, so getpass reads /dev/tty as it does for a person.
    wrapper = (
        "import fcntl, os, sys, termios; os.setsid(); fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
        "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
    )
    command = send_cmd(*args)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", wrapper, *command[1:]],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, **env},
        close_fds=True,
    )
    os.close(slave)
    output = b""
    typed = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            if password is not None and not typed and b"password for" in output:
                os.write(master, password.encode() + b"\n")
                typed = True
            if proc.poll() is not None and not ready:
                break
        code = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, ANSI.sub("", output.decode(errors="replace"))


# -- the summary -------------------------------------------------------------------------------


def test_summary_counts_the_top_reasons_and_max_attempts_applies(
    capture_server: Factory, tmp_path: Path, templates: dict[str, Path]
) -> None:
    rows = order_rows(10)
    unknown = [r["email"] for r in rows[:3]]
    busy = [r["email"] for r in rows[3:5]]
    replies = {a: f"550 5.1.1 <{a}>: Recipient address rejected: no such user" for a in unknown}
    replies |= {a: "451 4.3.0 Mailbox busy, try later" for a in busy}
    server = capture_server(rcpt_replies=replies)
    recipients = write_csv(tmp_path / "r.csv", rows, FIELDS)
    results = tmp_path / "out.jsonl"
    args = [*base_args(server.port, templates, recipients, results), "--max-attempts", "1"]
    proc = run_send(*args, env=WIDE)
    assert proc.returncode == 1, proc.stderr
    by_status = Counter(line["status"] for line in results_of(results))
    assert by_status == {"accepted": 5, "rejected": 3, "deferred": 2}
    # --max-attempts 1: the 451 was not retried.
    assert {line["attempts"] for line in results_of(results) if line["recipient"] in busy} == {1}
    table = rows_of_table(proc.stdout)
    assert [
        "3",
        "rejected",
        "550 5.1.1",
        "<address>: Recipient address rejected: no such user",
    ] in table
    assert ["2", "deferred", "451 4.3.0", "Mailbox busy, try later"] in table


def test_max_attempts_retries_a_temporary_failure(
    capture_server: Factory, tmp_path: Path, templates: dict[str, Path]
) -> None:
    rows = order_rows(2)
    server = capture_server(rcpt_replies={rows[0]["email"]: "451 4.3.0 try later"})
    recipients = write_csv(tmp_path / "r.csv", rows, FIELDS)
    results = tmp_path / "out.jsonl"
    proc = run_send(*base_args(server.port, templates, recipients, results), "--max-attempts", "2")
    assert proc.returncode == 1, proc.stderr
    lines = {line["recipient"]: line for line in results_of(results)}
    assert lines[rows[0]["email"]]["status"] == "deferred"
    assert lines[rows[0]["email"]]["attempts"] == 2
    assert lines[rows[1]["email"]]["status"] == "accepted"


def test_max_attempts_below_one_is_a_usage_error(
    tmp_path: Path, templates: dict[str, Path]
) -> None:
    recipients = write_csv(tmp_path / "r.csv", order_rows(1), FIELDS)
    args = base_args(free_port(), templates, recipients, tmp_path / "o.jsonl")
    proc = run_send(*args, "--max-attempts", "0")
    assert proc.returncode == 2
    assert "--max-attempts must be at least 1" in proc.stderr


# -- --limit -------------------------------------------------------------------------------


def test_limit_then_resume_sends_each_recipient_once(
    capture_server: Factory, tmp_path: Path, templates: dict[str, Path]
) -> None:
    server = capture_server()
    rows = order_rows(5)
    rows.insert(2, {"email": "", "name": "Nobody", "order": "0"})  # a bad record: a line too
    recipients = write_csv(tmp_path / "r.csv", rows, FIELDS)
    results = tmp_path / "out.jsonl"
    args = base_args(server.port, templates, recipients, results)

    proc = run_send(*args, "--limit", "2")
    assert proc.returncode == 0, proc.stderr
    assert "--limit 2" in proc.stdout and "--resume" in proc.stdout
    assert [line["index"] for line in results_of(results)] == [0, 1]
    assert len(server.wait_for(2)) == 2

    proc = run_send(*args, "--resume", "--limit", "2")
    assert proc.returncode == 1, proc.stderr  # the bad record is one of these two
    assert [line["index"] for line in results_of(results)] == [0, 1, 2, 3]
    assert results_of(results)[2]["status"] == "failed"

    proc = run_send(*args, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "--limit" not in proc.stdout
    assert [line["index"] for line in results_of(results)] == [0, 1, 2, 3, 4, 5]
    time.sleep(0.2)
    sent = [to for m in server.messages for to in m.rcpt_tos]
    assert sorted(sent) == sorted(r["email"] for r in rows if r["email"])


# -- --dry-run -------------------------------------------------------------------------------


def test_dry_run_renders_every_row_and_sends_nothing(
    tmp_path: Path, templates: dict[str, Path]
) -> None:
    rows = [
        *order_rows(3),
        {"email": "not an address", "name": "X", "order": "9"},
        {"email": "c@example.org", "name": "Evil\r\nBcc: x@evil.example", "order": "8"},
    ]
    recipients = write_csv(tmp_path / "r.csv", rows, FIELDS)
    results = tmp_path / "out.jsonl"
    # Nothing listens on this port: a dry run that tried to connect would exit 3.
    args = base_args(free_port(), templates, recipients, results)
    proc = run_send(*args, "--dry-run", env=WIDE)
    assert proc.returncode == 1, proc.stderr
    assert "5 recipients checked, 3 messages valid, 2 invalid" in proc.stdout
    assert not results.exists()
    reasons = [row for row in rows_of_table(proc.stdout) if row[1:2] == ["failed"]]
    assert len(reasons) == 2 and all(row[0] == "1" for row in reasons)
    assert "record 3 (not an address):" in proc.stdout
    assert "record 4 (c@example.org):" in proc.stdout

    valid = write_csv(tmp_path / "ok.csv", order_rows(4), FIELDS)
    proc = run_send(*base_args(free_port(), templates, valid, results), "--dry-run", "--limit", "3")
    assert proc.returncode == 0, proc.stderr
    assert "3 recipients checked, 3 messages valid, 0 invalid" in proc.stdout
    assert not results.exists()


def test_dry_run_finds_a_variable_a_jsonl_record_lacks(
    tmp_path: Path, templates: dict[str, Path]
) -> None:
    recipients = write_jsonl(
        tmp_path / "r.jsonl",
        [
            json.dumps({"email": "a@example.org", "name": "A", "order": 1}),
            json.dumps({"email": "b@example.org", "name": "B"}),
        ],
    )
    proc = run_send(
        *base_args(free_port(), templates, recipients, tmp_path / "o.jsonl"), "--dry-run"
    )
    assert proc.returncode == 1, proc.stderr
    assert "2 recipients checked, 1 messages valid, 1 invalid" in proc.stdout
    assert "order" in proc.stdout


# -- errors in command-line terms ------------------------------------------------------------


def test_starttls_advice_is_in_cli_syntax(
    capture_server: Factory, tmp_path: Path, templates: dict[str, Path]
) -> None:
    server = capture_server()  # no STARTTLS offered
    recipients = write_csv(tmp_path / "r.csv", order_rows(1), FIELDS)
    results = tmp_path / "out.jsonl"
    args = [*base_args(server.port, templates, recipients, results), "--tls", "starttls"]
    proc = run_send(*args)
    assert proc.returncode == 3
    (line,) = proc.stderr.strip().splitlines()
    assert "STARTTLS" in line and "--tls opportunistic" in line
    assert "tls='" not in line and "=True" not in line
    assert not results.exists() and server.messages == []


def test_a_template_error_leaves_no_results_file(
    capture_server: Factory, tmp_path: Path, templates: dict[str, Path]
) -> None:
    server = capture_server()
    # JSONL: nobody has "order", which the engine finds when the batch starts.
    recipients = write_jsonl(tmp_path / "r.jsonl", ['{"email": "a@example.org"}'])
    results = tmp_path / "out.jsonl"
    proc = run_send(*base_args(server.port, templates, recipients, results))
    assert proc.returncode == 2
    assert "order" in proc.stderr and "Traceback" not in proc.stderr
    assert not results.exists()
    # CSV: the columns are known up front, so this is found before connecting.
    csv_recipients = write_csv(tmp_path / "r.csv", [{"email": "a@example.org"}], ["email"])
    proc = run_send(*base_args(free_port(), templates, csv_recipients, results))
    assert proc.returncode == 2
    assert "order" in proc.stderr and "column" in proc.stderr
    assert not results.exists()
    # A syntax error in a template.
    bad = tmp_path / "bad.txt"
    bad.write_text("Hi {{ name }\n")
    args = base_args(server.port, {"text": bad}, recipients, results)
    proc = run_send(*args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert not results.exists()
    assert server.messages == []


# -- the password prompt ---------------------------------------------------------------------


def test_plaintext_password_refused_before_the_prompt(
    capture_server: Factory, tmp_path: Path, templates: dict[str, Path]
) -> None:
    server = capture_server(auth_users={"ann": "pw"}, auth_require_tls=False)
    recipients = write_csv(tmp_path / "r.csv", order_rows(1), FIELDS)
    results = tmp_path / "out.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "FASTSMTP_PASSWORD"}

    # Control: with the flag the prompt appears at the terminal, and the typed password works.
    base = [*base_args(server.port, templates, recipients, results), "--user", "ann"]
    code, screen = run_in_terminal([*base, "--insecure-plaintext-auth"], env, password="pw")
    assert "password for ann at 127.0.0.1" in screen
    assert code == 0, screen
    assert server.wait_for(1)[0].auth_login == "ann"
    assert len(results_of(results)) == 1

    base = [*base_args(server.port, templates, recipients, tmp_path / "o.jsonl"), "--user", "ann"]

    # --tls none: refused from the options alone; no prompt, no connection.
    code, screen = run_in_terminal(base, env, password="pw")
    assert code == 2, screen
    assert "password for" not in screen
    assert "--insecure-plaintext-auth" in screen and "allow_plaintext_auth" not in screen

    # --tls opportunistic against a server without STARTTLS: found out by connecting,
    # still before the prompt.
    attempts = len(server.auth_attempts)
    code, screen = run_in_terminal([*base, "--tls", "opportunistic"], env, password="pw")
    assert code == 3, screen
    assert "password for" not in screen
    assert "does not offer STARTTLS" in screen and "--insecure-plaintext-auth" in screen
    assert len(server.auth_attempts) == attempts
    assert len(server.messages) == 1
    assert not (tmp_path / "o.jsonl").exists()


def test_unreachable_server_is_reported_before_the_prompt(
    tmp_path: Path, templates: dict[str, Path]
) -> None:
    recipients = write_csv(tmp_path / "r.csv", order_rows(1), FIELDS)
    args = [*base_args(free_port(), templates, recipients, tmp_path / "o.jsonl")]
    args += ["--user", "ann", "--insecure-plaintext-auth"]
    env = {k: v for k, v in os.environ.items() if k != "FASTSMTP_PASSWORD"}
    code, screen = run_in_terminal(args, env, password="pw")
    assert code == 3, screen
    assert "password for" not in screen and "127.0.0.1:" in screen


def test_summary_reasons_from_postfix(
    postfix: PostfixInstance, pki: TestPKI, tmp_path: Path, templates: dict[str, Path]
) -> None:
    """Postfix echoes each refused address in its reply text; the summary counts the three
    550s as one reason, and the 450 (tried once, --max-attempts 1) as another."""
    rows = order_rows(2, tag="-reasons-")
    rows += [
        {"email": f"reject-550@{domain}", "name": "X", "order": "1"}
        for domain in ("example.org", "example.com", "example.net")
    ]
    rows.append({"email": "reject-450@example.org", "name": "Y", "order": "2"})
    recipients = write_csv(tmp_path / "r.csv", rows, FIELDS)
    results = tmp_path / "out.jsonl"
    args = [*base_args(postfix.port, templates, recipients, results)]
    args += ["--tls", "starttls", "--cafile", pki.ca_file, "--max-attempts", "1"]
    proc = run_send(*args, env=WIDE)
    assert proc.returncode == 1, proc.stderr
    statuses = Counter(line["status"] for line in results_of(results))
    assert statuses == {"accepted": 2, "rejected": 3, "deferred": 1}
    table = rows_of_table(proc.stdout)
    rejected = [row for row in table if row[1:3] == ["rejected", "550 5.7.1"]]
    deferred = [row for row in table if row[1:3] == ["deferred", "450 4.7.1"]]
    assert len(rejected) == 1 and rejected[0][0] == "3", table
    assert "<address>" in rejected[0][3] and "rejected by test peer" in rejected[0][3]
    assert "reject-550@" not in rejected[0][3]
    assert len(deferred) == 1 and deferred[0][0] == "1", table
