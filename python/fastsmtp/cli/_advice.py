"""Engine errors in command-line terms.

The engine's messages give advice as Python arguments ("use tls='opportunistic'",
"allow_plaintext_auth=True"); a person at a shell needs the flag instead. ``cli_syntax``
rewrites each such argument into the ``fastsmtp send`` option that sets it, and adds a
hint where the error alone does not say what to do (an untrusted certificate).
"""

from __future__ import annotations

import re
import ssl

_TLS_ARG = re.compile(r"\btls=(['\"])(\w+)\1")

_ARGUMENTS = {"allow_plaintext_auth=True": "--insecure-plaintext-auth"}
"""Engine argument text -> the option (or option and value) a CLI user gives instead."""


def cli_syntax(text: str) -> str:
    """``text`` with every engine argument replaced by its ``fastsmtp send`` option."""
    text = _TLS_ARG.sub(r"--tls \2", text)
    for argument, option in _ARGUMENTS.items():
        text = text.replace(argument, option)
    return text


def describe(error: BaseException) -> str:
    """One line for an error the job cannot go on from, in command-line terms."""
    text = cli_syntax(str(error)) or type(error).__name__
    if isinstance(error, ssl.SSLCertVerificationError):
        text += " (to trust the server's certificate, give its CA with --cafile FILE)"
    return text
