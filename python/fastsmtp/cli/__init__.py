"""The ``fastsmtp`` command (also ``python -m fastsmtp``): ``send``, ``demo`` and ``sink``.

The arguments are parsed with the standard library alone (``_parser``); each command's
module is imported only when it runs, so a missing ``cli`` extra (rich, aiosmtpd) is one
line naming the extra to install rather than a traceback, and ``--help`` and ``--version``
work without it.

Modules: ``_parser`` (arguments and help), ``_send`` (the bulk job), ``_records`` (the
recipients and results files), ``_summary`` (the summary tables), ``_advice`` (engine
errors in command-line terms), ``_demo`` (the demo).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from fastsmtp._fastsmtp import __version__
from fastsmtp.cli._parser import build_parser

__all__ = ["main"]

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fastsmtp`` command line; returns the exit status."""
    args = build_parser(__version__).parse_args(argv)
    try:
        if args.command == "send":
            from fastsmtp.cli import _send

            return _send.main(args)
        if args.command == "demo":
            from fastsmtp.cli import _demo

            return _demo.main(args)
        from fastsmtp import testing

        testing.serve_forever(args.port, args.dir)
        return 0
    except ModuleNotFoundError as e:
        if e.name not in EXTRA_MODULES:
            raise
        print(missing_extra(args.command, e.name), file=sys.stderr)
        return EXIT_USAGE


EXTRA_MODULES = {"rich": "cli", "aiosmtpd": "cli"}
"""Top-level modules the commands need, and the extra that installs them."""


def missing_extra(command: str, module: str) -> str:
    """The one line shown when a command needs a package that is not installed."""
    extra = EXTRA_MODULES[module]
    return (
        f"fastsmtp {command}: error: this command needs the '{module}' package, which "
        f"comes with the {extra!r} extra: pip install 'fastsmtp[{extra}]'"
    )
