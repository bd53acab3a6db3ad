"""Real SMTP peers for fastsmtp's tests: private Postfix instances (with Dovecot SASL),
Postfix's smtp-sink/smtp-source, an aiosmtpd capture server, a throw-away test PKI and the
pytest fixtures wrapping them (``tests.peers.fixtures``). Everything listens on 127.0.0.1."""

from .aiosmtpd_server import CapturedMessage, CaptureServer
from .certs import TestPKI, make_self_signed, make_test_ca
from .ports import free_port, wait_for_port
from .postfix import PostfixError, PostfixInstance
from .sink import SmtpSink, SmtpSource

__all__ = [
    "CaptureServer",
    "CapturedMessage",
    "PostfixError",
    "PostfixInstance",
    "SmtpSink",
    "SmtpSource",
    "TestPKI",
    "free_port",
    "make_self_signed",
    "make_test_ca",
    "wait_for_port",
]
