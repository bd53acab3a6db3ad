"""Data models: what callers build (Message, Attachment, Recipient) and what they get back
(Result, BatchReport).

They are msgspec Structs: cheap to create on the hot path, typed, and serialisable to
JSON/JSONL as they are (the CLI writes Results as JSONL). Validation of the byte-level
rules (CR/LF in headers, address syntax, IDNA) happens in Rust, where the bytes are made;
this module only normalises convenient Python forms (a single address as ``str``) into the
plain shapes the core takes; the Date (a ``datetime``, a string, or now) is made in Rust.
"""

from __future__ import annotations

import mimetypes
import os
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import msgspec

if TYPE_CHECKING:
    from fastsmtp._fastsmtp import DKIMSigner

Status = Literal["accepted", "rejected", "deferred", "failed"]
"""accepted (2xx), rejected (5xx), deferred (4xx after retries), failed (local error)."""

AddressList = list[str]


def _as_list(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


class Attachment(msgspec.Struct, kw_only=True):
    """A file attached to a message, or an inline part (an image the HTML shows via cid:)."""

    filename: str
    content: bytes
    content_type: str | None = None
    """MIME type, ``type/subtype`` with optional parameters (``"text/plain; charset=utf-8"``,
    RFC 2045 syntax; RFC 2231 ``attr*=utf-8''...`` values are decoded); guessed from
    ``filename`` when omitted (``application/octet-stream`` when the extension is unknown).
    The ``name`` parameter comes from ``filename``: a different ``name`` here, a repeated
    parameter or an RFC 2231 continuation raises InvalidMessage."""
    inline: bool = False
    content_id: str | None = None
    """For inline parts: the id the HTML refers to as ``cid:<content_id>``."""

    def __post_init__(self) -> None:
        if self.content_type is None:
            guessed, _ = mimetypes.guess_type(self.filename, strict=False)
            self.content_type = guessed or "application/octet-stream"
        if self.inline and self.content_id is None:
            self.content_id = self.filename

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        *,
        filename: str | None = None,
        content_type: str | None = None,
        inline: bool = False,
        content_id: str | None = None,
    ) -> Attachment:
        """Read a file from disk into an attachment named after it."""
        with open(path, "rb") as f:
            content = f.read()
        return cls(
            filename=filename if filename is not None else os.path.basename(os.fspath(path)),
            content=content,
            content_type=content_type,
            inline=inline,
            content_id=content_id,
        )


class Message(msgspec.Struct, kw_only=True):
    """One email message. In ``send_batch`` it is the template: subject, text, html and
    extra header values may use ``{{ variable }}`` placeholders."""

    sender: str
    """The From header, e.g. ``"Ann <ann@example.com>"``."""
    to: AddressList = msgspec.field(default_factory=list)
    cc: AddressList = msgspec.field(default_factory=list)
    bcc: AddressList = msgspec.field(default_factory=list)
    """Envelope-only recipients: never written into the headers."""
    reply_to: AddressList = msgspec.field(default_factory=list)
    subject: str = ""
    text: str | None = None
    html: str | None = None
    attachments: list[Attachment] = msgspec.field(default_factory=list)
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    """Extra headers, e.g. ``{"List-Unsubscribe": "<https://...>"}``."""
    envelope_sender: str | None = None
    """The MAIL FROM return path; defaults to the sender's address."""
    message_id: str | None = None
    date: datetime | str | None = None
    """The Date header: a ``datetime`` (a naive one is local time) or an RFC 5322 date-time
    string (``"Thu, 01 Jan 2026 09:00:00 +0100"``; checked, and written in canonical
    form); None (the default) is now, in the local time zone. Anything else raises
    InvalidMessage(field="date") when the message is built."""

    def __post_init__(self) -> None:
        # Accept a single address where a list is expected: the most common slip.
        self.to = _as_list(self.to)
        self.cc = _as_list(self.cc)
        self.bcc = _as_list(self.bcc)
        self.reply_to = _as_list(self.reply_to)

    @property
    def recipients(self) -> list[str]:
        """Every envelope recipient: to, cc and bcc, in that order."""
        return [*self.to, *self.cc, *self.bcc]

    def to_spec(self) -> dict[str, Any]:
        """The plain dict the Rust core compiles (see ``_fastsmtp.pyi``)."""
        return {
            "sender": self.sender,
            "to": self.to,
            "cc": self.cc,
            "bcc": self.bcc,
            "reply_to": self.reply_to,
            "subject": self.subject,
            "text": self.text,
            "html": self.html,
            "attachments": [
                {
                    "filename": a.filename,
                    "content": a.content,
                    "content_type": a.content_type,
                    "inline": a.inline,
                    "content_id": a.content_id,
                }
                for a in self.attachments
            ],
            "headers": list(self.headers.items()),
            "envelope_sender": self.envelope_sender,
            "message_id": self.message_id,
            "date": self.date,
        }

    def as_bytes(self, *, dkim: DKIMSigner | None = None) -> bytes:
        """The message as RFC 5322 bytes (CRLF line endings), assembled in Rust; with
        ``dkim``, a DKIM-Signature header in front."""
        from fastsmtp import _fastsmtp

        built = _fastsmtp.build_message(self.to_spec())
        if dkim is not None:
            built = dkim.sign(built, int(time.time()))
        return built.as_bytes()


class Recipient(msgspec.Struct, kw_only=True):
    """One recipient of a batch, with the values its personalized message is rendered from."""

    address: str
    name: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)


# gc=False: only str/int/bool/None fields, so no reference cycle is possible, and one
# Result per recipient no longer adds to the garbage collector's work.
class Result(msgspec.Struct, kw_only=True, gc=False):
    """The one final outcome of one recipient."""

    recipient: str
    status: Status
    code: int | None = None
    """The SMTP reply code that decided the outcome (None for local failures)."""
    enhanced_code: str | None = None
    """The RFC 3463 enhanced status code, e.g. ``"2.0.0"``, when the server sent one."""
    text: str = ""
    message_id: str | None = None
    index: int = 0
    """The recipient's position in the batch (its position in ``to+cc+bcc`` for ``send``)."""
    attempts: int = 0
    """How many times the message was handed to a server for this recipient."""
    in_doubt: bool = False
    """The end of data went out and no reply came (``status`` is ``deferred``): the server
    may have taken the message. It is never sent again without the caller deciding so."""

    @property
    def ok(self) -> bool:
        return self.status == "accepted"


class Counts(msgspec.Struct, kw_only=True):
    """Final results counted by status (one count per recipient)."""

    accepted: int = 0
    rejected: int = 0
    deferred: int = 0
    failed: int = 0
    in_doubt: int = 0
    """Of the deferred: end of data sent, no reply (see ``Result.in_doubt``)."""

    @property
    def total(self) -> int:
        """Every result counted."""
        return self.accepted + self.rejected + self.deferred + self.failed

    def count(self, result: Result) -> None:
        """Count one final result."""
        status = result.status
        if status == "accepted":
            self.accepted += 1
        elif status == "rejected":
            self.rejected += 1
        elif status == "deferred":
            self.deferred += 1
            if result.in_doubt:
                self.in_doubt += 1
        else:
            self.failed += 1

    def count_accepted(self, n: int) -> None:
        """Count ``n`` acceptances (the count-only path makes no Result)."""
        self.accepted += n


class BatchReport(Counts, kw_only=True):
    """Counts for a whole ``send_batch`` run."""

    elapsed: float = 0.0
    callback_errors: int = 0
    """How many times ``on_result`` raised (each is logged; the batch goes on)."""

    @property
    def messages_per_second(self) -> float:
        return self.total / self.elapsed if self.elapsed > 0 else 0.0
