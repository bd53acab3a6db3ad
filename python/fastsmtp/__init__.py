"""fastsmtp: a high-throughput SMTP sending engine.

A Rust core assembles MIME, renders per-recipient templates and speaks pipelined SMTP
(sans-IO); this package drives it from asyncio (uvloop) with persistent connection pools,
retries, TLS and rate limits.

    msg = fastsmtp.Message(sender="Ann <ann@example.com>", to=["bob@example.org"],
                           subject="Hi", text="Hello")
    async with fastsmtp.Engine("127.0.0.1", 2525, tls="none") as engine:
        results = await engine.send(msg)
"""

from fastsmtp._engine import Engine, run, send_batch_sync
from fastsmtp._errors import (
    AuthenticationError,
    FastSMTPError,
    InvalidMessage,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    SMTPConnectionError,
    SMTPReplyError,
    SMTPTimeoutError,
    SMTPUTF8Required,
    TemplateError,
    TLSCertificateError,
    TLSConfigError,
    TLSError,
    TLSRequiredError,
)
from fastsmtp._fastsmtp import DKIMSigner, __version__
from fastsmtp._models import Attachment, BatchReport, Message, Recipient, Result, Status
from fastsmtp._stats import Stats

__all__ = [
    "Attachment",
    "AuthenticationError",
    "BatchReport",
    "DKIMSigner",
    "Engine",
    "FastSMTPError",
    "InvalidMessage",
    "LocalProtocolError",
    "Message",
    "ProtocolError",
    "Recipient",
    "RemoteProtocolError",
    "Result",
    "SMTPConnectionError",
    "SMTPReplyError",
    "SMTPTimeoutError",
    "SMTPUTF8Required",
    "Stats",
    "Status",
    "TLSCertificateError",
    "TLSConfigError",
    "TLSError",
    "TLSRequiredError",
    "TemplateError",
    "__version__",
    "run",
    "send_batch_sync",
]
