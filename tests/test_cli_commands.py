"""The ``fastsmtp`` command itself, run as a real subprocess: ``--help`` (plain text, no
private module names), ``--version``, ``sink`` capturing a real send and writing .eml
files, and ``demo`` against the capture server and Postfix's smtp-sink."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fastsmtp
from tests.peers.ports import free_port
from tests.peers.sink import SMTP_SINK


def fastsmtp_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fastsmtp", *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin:/usr/sbin", "COLUMNS": "200"},
    )


@pytest.mark.parametrize("command", [[], ["send"], ["demo"], ["sink"]])
def test_help_is_plain_text(command: list[str]) -> None:
    proc = fastsmtp_cmd(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "``" not in text and ":class:" not in text and ":func:" not in text
    assert not re.search(r"\b_\w+(_cmd|\.py)\b|fastsmtp\._|_send\b", text), text
    assert text.startswith(f"usage: fastsmtp {' '.join(command)}".rstrip())


def test_top_level_help_lists_the_commands() -> None:
    text = fastsmtp_cmd("--help").stdout
    for command in ("send", "demo", "sink"):
        assert re.search(rf"^\s+{command}\s+\w", text, re.MULTILINE), text


def test_sink_help_explains_its_options() -> None:
    text = fastsmtp_cmd("sink", "--help").stdout
    port = re.search(r"--port P\s+(.+)", text)
    directory = re.search(r"--dir DIR\s+(.+)", text)
    assert port is not None and "127.0.0.1" in port.group(1) and "2525" in port.group(1)
    assert directory is not None and ".eml" in directory.group(1)
    assert "Ctrl-C" in text


def test_version() -> None:
    proc = fastsmtp_cmd("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"fastsmtp {fastsmtp.__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", fastsmtp.__version__)


def test_sink_captures_a_send_and_writes_eml(tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastsmtp", "sink", "--port", str(port), "--dir", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in banner and str(out) in banner
        msg = fastsmtp.Message(
            sender="a@example.com", to=["b@example.org"], subject="Hi there", text="x"
        )
        results = fastsmtp.run(_send(port, msg))
        assert [r.status for r in results] == ["accepted"]
        line = proc.stdout.readline()
        assert "to=b@example.org" in line and "'Hi there'" in line
        assert (out / "0000001.eml").read_bytes().count(b"Subject: Hi there") == 1
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    assert "1 messages captured" in stdout, stderr
    assert proc.returncode == 0


async def _send(port: int, msg: fastsmtp.Message) -> list[fastsmtp.Result]:
    async with fastsmtp.Engine("127.0.0.1", port, tls="none") as engine:
        return await engine.send(msg)


RATE_ROW = re.compile(r"│ ([^│]+?)\s+│\s+([\d,]+) │\s+[\d.]+ s │\s+([\d,]+) msg/s")
"""A row of the demo's rates table: server, messages, elapsed, rate."""


def test_demo_reports_both_rates_and_keeps_eml_files(tmp_path: Path) -> None:
    assert Path(SMTP_SINK).exists(), "smtp-sink comes with postfix (.ci/install-peers.sh)"
    started = time.monotonic()
    out = tmp_path / "demo"
    proc = fastsmtp_cmd("demo", "--count", "30", "--sink-count", "3000", "--dir", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(list(out.glob("*.eml"))) == 30
    rates = {
        m.group(1).strip(): (int(m.group(2).replace(",", "")), float(m.group(3).replace(",", "")))
        for m in re.finditer(
            r"│ ([^│]+?)\s+│\s+([\d,]+) │\s+[\d.]+ s │\s+([\d,]+) msg/s", proc.stdout
        )
    }
    assert set(rates) == {"capture server (Python, writes .eml)", "Postfix smtp-sink (C, discards)"}
    assert rates["capture server (Python, writes .eml)"][0] == 30
    assert rates["Postfix smtp-sink (C, discards)"][0] == 3000
    assert all(rate > 0 for _, rate in rates.values())
    assert time.monotonic() - started < 120


def test_demo_sink_count_zero_runs_the_capture_server_only(tmp_path: Path) -> None:
    proc = fastsmtp_cmd("demo", "--count", "5", "--sink-count", "0", "--dir", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(list(tmp_path.glob("*.eml"))) == 5
    assert "accepted" in proc.stdout and "smtp-sink" not in proc.stdout
