"""The ``fastsmtp`` command line's arguments: every command, option and help text.

Only the standard library is imported here, so that ``fastsmtp --help`` and ``--version``
work without the ``cli`` extra and a missing extra can be named after parsing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fastsmtp._config import TLS_MODES

PASSWORD_ENV = "FASTSMTP_PASSWORD"

DESCRIPTION = "fastsmtp: a high-throughput SMTP sending engine, from the shell."

EPILOG = "Run 'fastsmtp COMMAND --help' for the options of each command."

SEND_DESCRIPTION = f"""\
Send one personalized message per recipient of a CSV file (a header row; an 'email' or
'address' column, an optional 'name' column; every column is a template variable) or a
JSONL file (one object per line, the same keys). The subject, --text, --html and --header
values are templates: {{{{ column }}}} is replaced by the recipient's value.

One JSON line per recipient goes to the --results file as soon as its outcome is known;
after a crash or Ctrl-C, run the same command with --resume to send the rest (nothing is
sent twice except the few messages on the wire at the moment of a crash).

The password comes from ${PASSWORD_ENV} or a prompt, never from the command line.
"""

SEND_EPILOG = """\
exit status: 0 all accepted, 1 some rejected/deferred/failed (or, with --dry-run,
invalid), 2 bad usage or input, 3 cannot connect or authenticate (or the server was lost),
130 interrupted by Ctrl-C or SIGTERM (run again with --resume)
"""

DEMO_DESCRIPTION = """\
Send a personalized batch (a subject, text and HTML body rendered for each recipient) to
the built-in capture server on 127.0.0.1, which writes every message as an .eml file.
The capture server is pure Python and handles a few hundred messages a second, so when
Postfix's smtp-sink is installed the demo also sends a larger batch to it and prints both
rates: the second one is what the engine itself can do.
"""

SINK_DESCRIPTION = """\
Run the capture server on 127.0.0.1 until Ctrl-C: an SMTP server that accepts every
message (no TLS, no authentication), prints one line per message (sender, recipients,
size, subject) and, with --dir, writes each one as an .eml file. Point your application
at it with tls="none" (or 'fastsmtp send --tls none') to see what it would send.
"""


def build_parser(version: str) -> argparse.ArgumentParser:
    """The whole ``fastsmtp`` parser: global options and the three commands."""
    parser = argparse.ArgumentParser(
        prog="fastsmtp",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"fastsmtp {version}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    sub.required = True
    _add_send(sub)
    _add_demo(sub)
    _add_sink(sub)
    return parser


def _add_send(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "send",
        help="send a personalized message to every recipient of a CSV/JSONL file",
        description=SEND_DESCRIPTION,
        epilog=SEND_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    server = p.add_argument_group("server")
    server.add_argument("--host", required=True, metavar="H", help="SMTP server")
    server.add_argument(
        "--port",
        type=int,
        default=None,
        metavar="P",
        help="default 465 with --tls implicit, 587 with starttls, else 25",
    )
    server.add_argument(
        "--tls",
        choices=TLS_MODES,
        default="starttls",
        metavar="MODE",
        help=(
            "starttls (required, the default), implicit (TLS from the first byte, port "
            "465), opportunistic (STARTTLS when offered), none"
        ),
    )
    server.add_argument(
        "--cafile", type=Path, metavar="FILE", help="PEM file of CAs to trust for the server cert"
    )
    server.add_argument(
        "--user", metavar="U", help=f"AUTH user name (password: ${PASSWORD_ENV} or a prompt)"
    )
    server.add_argument(
        "--insecure-plaintext-auth",
        action="store_true",
        help="allow sending the password over a connection without TLS",
    )

    message = p.add_argument_group("message")
    message.add_argument(
        "--from", dest="sender", required=True, metavar="ADDR", help="From, e.g. 'Ann <a@x.org>'"
    )
    message.add_argument("--subject", required=True, metavar="TPL", help="subject template")
    message.add_argument("--text", type=Path, metavar="FILE", help="plain-text body template file")
    message.add_argument("--html", type=Path, metavar="FILE", help="HTML body template file")
    message.add_argument(
        "--attach", type=Path, action="append", default=[], metavar="FILE", help="attach a file"
    )
    message.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra header (the value is a template); repeatable",
    )
    message.add_argument(
        "--reply-to", action="append", default=[], metavar="ADDR", help="Reply-To address"
    )
    message.add_argument(
        "--dkim-key", type=Path, metavar="FILE", help="sign with DKIM: PEM private key"
    )
    message.add_argument("--dkim-selector", metavar="S", help="DKIM selector (with --dkim-key)")
    message.add_argument(
        "--dkim-domain", metavar="D", help="DKIM d= domain (default: the --from domain)"
    )

    job = p.add_argument_group("job")
    job.add_argument(
        "--recipients",
        type=Path,
        required=True,
        metavar="FILE",
        help="recipients, FILE.csv or FILE.jsonl",
    )
    job.add_argument("--format", choices=("csv", "jsonl"), help="default: from the file name")
    job.add_argument(
        "--results",
        type=Path,
        required=True,
        metavar="OUT.jsonl",
        help="results file, one JSON line per recipient (not written with --dry-run)",
    )
    job.add_argument("--resume", action="store_true", help="skip recipients already in --results")
    job.add_argument(
        "--dry-run",
        action="store_true",
        help="render and check every recipient's message, send nothing, write no results",
    )
    job.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="handle at most N recipients in this run (the rest: run again with --resume)",
    )
    job.add_argument(
        "--connections", type=int, default=8, metavar="N", help="parallel connections (8)"
    )
    job.add_argument(
        "--rate", type=float, default=None, metavar="N", help="at most N messages a second"
    )
    job.add_argument(
        "--max-attempts",
        type=int,
        default=3,
        metavar="N",
        help="tries per message on a temporary (4xx) failure or a lost connection (3)",
    )
    job.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="network timeout, seconds (30)"
    )
    job.add_argument(
        "--grace",
        type=float,
        default=30.0,
        metavar="S",
        help="after Ctrl-C, wait this long for messages in flight (30)",
    )


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="send a personalized batch to built-in local servers and show the rates",
        description=DEMO_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--count",
        type=int,
        default=200,
        metavar="N",
        help="recipients sent to the capture server (default 200)",
    )
    p.add_argument(
        "--dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the capture server writes the .eml files (default: a new temp dir)",
    )
    p.add_argument(
        "--sink-count",
        type=int,
        default=20_000,
        metavar="N",
        help="recipients sent to Postfix's smtp-sink when it is installed; 0 skips it "
        "(default 20000)",
    )
    p.add_argument(
        "--connections", type=int, default=4, metavar="N", help="parallel connections (4)"
    )


def _add_sink(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sink",
        help="run a local capture server (prints and optionally saves every message)",
        description=SINK_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--port",
        type=int,
        default=2525,
        metavar="P",
        help="TCP port to listen on, on 127.0.0.1 (default 2525)",
    )
    p.add_argument(
        "--dir",
        default=None,
        metavar="DIR",
        help="write each message as DIR/0000001.eml, DIR/0000002.eml, ... (created if missing)",
    )
