"""Turning Django ``EmailMessage`` objects into fastsmtp messages (used by ``fastsmtp.django``).

Most messages map field for field onto ``fastsmtp.Message``, so their MIME is built in Rust.
What does not map is sent as the bytes Django itself makes (``message.message()``), exactly
as Django's SMTP backend would send them. A message falls back when it has:

* a subclass that overrides how the MIME tree is made (``message()``, ``_create_*``,
  ``_add_*`` in Django 6, ``recipients()``) or changes ``mixed_subtype`` /
  ``alternative_subtype``, or a ``content_subtype`` other than ``plain`` / ``html``;
* a charset other than UTF-8 (``encoding`` / ``DEFAULT_CHARSET``);
* alternatives other than one ``text/html`` next to a plain-text body;
* an attachment without a file name, a ``message/*`` or ``multipart/*`` attachment, a
  MIME part (``MIMEBase``; ``MIMEPart`` in Django 6) with headers beyond
  Content-Type/-Transfer-Encoding/-Disposition/-ID and MIME-Version, or an inline part
  without a Content-ID;
* extra headers that fastsmtp sets itself and Django writes verbatim (``To``/``Cc`` that
  differ from the message's lists, ``Bcc``, ``Subject``, ``MIME-Version``,
  ``Return-Path``, ``Content-*``).

Known differences in the native path, all equivalent for mail clients: transfer encodings
differ (fastsmtp picks 7bit/quoted-printable/base64 itself); inline parts with a Content-ID
go into a ``multipart/related`` with the HTML (Django puts them in ``multipart/mixed``);
an HTML alternative with an empty text body is a single ``text/html`` part rather than a
``multipart/alternative`` holding only that part (when the HTML ends with a line break, so
the content is the same; otherwise Django's bytes are sent).

Text content arrives exactly as with Django's SMTP backend: a part inside a multipart
decodes to exactly its text (RFC 2046 5.1.1), and the text of a single-part message ends
with a line break (DATA needs its last line ended; smtplib adds the same one). Django 6
builds messages with Python's modern email API, whose ``set_content()`` ends the last line
of every text part (body, alternative, text attachment): with Django 6 fastsmtp sends those
texts ended the same way, so the same content arrives whichever backend sends it.

Supported: Django 4.2 LTS through 6.x. The fallback sends
``message().as_bytes(linesep="\\r\\n")`` with Django 4.2-5.x and
``message(policy=email.policy.SMTP).as_bytes()`` with Django 6, as Django's SMTP backend
does.
"""

from __future__ import annotations

import codecs
import dataclasses
import email.message
import email.policy
import email.utils
import inspect
from collections.abc import Mapping
from datetime import datetime
from email.headerregistry import Address
from typing import Any

import msgspec
from django.conf import settings
from django.core.mail.message import EmailMessage, EmailMultiAlternatives

from fastsmtp._errors import InvalidMessage
from fastsmtp._models import Attachment, Message, Recipient

# The methods that decide a Django message's MIME tree or envelope: a subclass that
# overrides any of them gets its own bytes sent, since we cannot know what they do.
_STOCK_METHODS = (
    "message",
    "recipients",
    # Django 4.2-5.x
    "_create_message",
    "_create_attachments",
    "_create_alternatives",
    "_create_mime_attachment",
    "_create_attachment",
    "_set_list_header_if_not_empty",
    # Django 6.x
    "_add_bodies",
    "_add_attachments",
    "_add_attachment",
    "_idna_encode_address_header_domains",
)
_STOCK = {
    # None: EmailMessage has no _create_alternatives (only EmailMultiAlternatives does).
    name: {getattr(cls, name, None) for cls in (EmailMessage, EmailMultiAlternatives)}
    for name in _STOCK_METHODS
}

# Extra headers fastsmtp writes itself (so it refuses them in ``headers``) that Django
# would write verbatim: such a message keeps Django's bytes.
_UNMAPPABLE_HEADERS = frozenset({"bcc", "subject", "mime-version", "return-path"})
# Django reads these from extra_headers with exactly this spelling; any other spelling of
# from/to/cc/reply-to is silently dropped by Django, so we drop it too.
_SPECIAL_EXACT = ("From", "To", "Cc", "Reply-To")
_SPECIAL_LOWER = frozenset({"from", "to", "cc", "reply-to"})
_PART_HEADERS = frozenset(
    {
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
        "content-id",
        "mime-version",
    }
)


# Django 6.0 builds messages with Python's modern email API: message(policy=...) returns an
# email.message.EmailMessage, and every text part goes through set_content(), which ends
# its last line (Django 4.2-5.x keep a text as given). Django's SMTP backend then sends
# message(policy=email.policy.SMTP).as_bytes() where 4.2-5.x send as_bytes(linesep="\r\n").
MODERN_EMAIL_API = "policy" in inspect.signature(EmailMessage.message).parameters


class Fallback(Exception):
    """The message cannot be represented natively; the text says why."""


@dataclasses.dataclass(frozen=True, slots=True)
class RawMessage:
    """A message as Django's own bytes, with the envelope Django's SMTP backend would use."""

    sender: str
    recipients: list[str]
    data: bytes
    message_id: str | None
    reason: str
    """Why the message could not be converted (for logs)."""


@dataclasses.dataclass(frozen=True, slots=True)
class BatchMessage:
    """An anymail-style batch: one personalized message per ``to`` address."""

    template: Message
    recipients: list[Recipient]
    data: dict[str, Any]


def convert(message: EmailMessage) -> Message | RawMessage:
    """The fastsmtp form of ``message``: native when possible, Django's bytes otherwise.

    Raises what Django raises for a message it cannot make either (e.g. BadHeaderError,
    ValueError for an invalid address) only on the fallback path; on the native path an
    invalid message raises ``InvalidMessage`` when it is built.
    """
    try:
        return to_message(message)
    except Fallback as why:
        return to_raw(message, str(why))


def to_raw(message: EmailMessage, reason: str) -> RawMessage:
    """Django's bytes and envelope, as ``django.core.mail.backends.smtp`` makes them."""
    if MODERN_EMAIL_API:
        modern = message.message(policy=email.policy.SMTP)  # type: ignore[call-arg, unused-ignore]
        return RawMessage(
            sender=_envelope_address(message.from_email),
            recipients=[_envelope_address(a) for a in message.recipients()],
            data=modern.as_bytes(),
            message_id=modern.get("Message-ID"),
            reason=reason,
        )
    from django.core.mail.message import sanitize_address  # deprecated in Django 6.0

    encoding = message.encoding or settings.DEFAULT_CHARSET
    mime = message.message()
    return RawMessage(
        sender=_addr_spec(sanitize_address(message.from_email, encoding)),
        recipients=[_addr_spec(sanitize_address(a, encoding)) for a in message.recipients()],
        data=mime.as_bytes(linesep="\r\n"),
        message_id=mime.get("Message-ID"),
        reason=reason,
    )


def to_message(message: EmailMessage) -> Message:
    """A ``fastsmtp.Message`` equivalent to ``message``; raises Fallback when there is none."""
    _check_stock(message)
    encoding = message.encoding or settings.DEFAULT_CHARSET
    if codecs.lookup(encoding).name != "utf-8":
        raise Fallback(f"charset {encoding!r} (fastsmtp writes UTF-8)")
    given = {str(k): v for k, v in (message.extra_headers or {}).items()}
    extra = {k: str(v) for k, v in given.items()}
    to = _strs(message.to)
    cc = _strs(message.cc)
    for name, values in (("To", to), ("Cc", cc)):
        # fastsmtp's To/Cc are both header and envelope; Django lets the header differ.
        if name in extra and _addresses([extra[name]]) != _addresses(values):
            raise Fallback(f"a {name} header that differs from the message's {name.lower()}")
    reply_to = _strs(message.reply_to)
    if "Reply-To" in extra:
        reply_to = _split_addresses(extra["Reply-To"])
    from_email = str(message.from_email)
    sender = extra.get("From", from_email)
    headers: dict[str, str] = {}
    message_id: str | None = None
    date: str | datetime | None = None
    for name, value in extra.items():
        lower = name.lower()
        if lower in _SPECIAL_LOWER:
            continue
        if lower == "message-id":
            message_id = value
        elif lower == "date":
            # A datetime is written by fastsmtp; a str must be an RFC 5322 date-time
            # (InvalidMessage(field="date") otherwise, where Django would send it as is).
            date = given[name] if isinstance(given[name], datetime) else value
        elif lower in _UNMAPPABLE_HEADERS or lower.startswith("content-"):
            raise Fallback(f"extra header {name!r}")
        else:
            headers[name] = value
    text, html = _bodies(message)
    return Message(
        sender=sender,
        to=to,
        cc=cc,
        bcc=_strs(message.bcc),
        reply_to=reply_to,
        subject=str(message.subject),
        text=text,
        html=html,
        attachments=[_attachment(a) for a in message.attachments],
        headers=headers,
        # The From header may be overridden; the envelope stays from_email (as in Django).
        envelope_sender=_addr_spec(from_email) if sender != from_email else None,
        message_id=message_id,
        date=date,
    )


def to_batch(
    message: EmailMessage,
    merge_data: Mapping[str, Mapping[str, Any]],
    merge_global_data: Mapping[str, Any] | None,
) -> BatchMessage:
    """django-anymail's batch convention: one message per ``to`` address, personalized with
    ``merge_data[address]`` over ``merge_global_data``. Subject, bodies and extra header
    values are fastsmtp templates (``{{ variable }}``)."""
    if message.cc or message.bcc:
        raise InvalidMessage(
            "a batch send (merge_data) sends one message per 'to' address; "
            "cc and bcc are not supported there",
            field="cc",
        )
    try:
        native = to_message(message)
    except Fallback as why:
        raise InvalidMessage(f"cannot use this message as a batch template: {why}") from None
    by_address = {str(k).lower(): v for k, v in merge_data.items()}
    recipients = []
    for item in native.to:
        name, address = email.utils.parseaddr(item)
        data = merge_data.get(address, by_address.get(address.lower(), {}))
        recipients.append(Recipient(address=address or item, name=name or None, data=dict(data)))
    template = msgspec.structs.replace(native, to=[])
    return BatchMessage(template, recipients, dict(merge_global_data or {}))


# -- pieces ----------------------------------------------------------------------------------


def _check_stock(message: EmailMessage) -> None:
    cls = type(message)
    for name, stock in _STOCK.items():
        if getattr(cls, name, None) not in stock:
            raise Fallback(f"{cls.__name__} overrides {name}()")
    if getattr(message, "mixed_subtype", "mixed") != "mixed":
        raise Fallback(f"mixed_subtype {message.mixed_subtype!r}")
    if getattr(message, "alternative_subtype", "alternative") != "alternative":
        raise Fallback(f"alternative_subtype {getattr(message, 'alternative_subtype', '')!r}")


def _text(text: str) -> str:
    """A text part's content as the running Django sends it: Django 6's set_content() ends
    the last line (an empty text becomes one empty line); 4.2-5.x keep it as given."""
    if MODERN_EMAIL_API and not text.endswith(("\n", "\r")):
        return text + "\n"
    return text


def _bodies(message: EmailMessage) -> tuple[str | None, str | None]:
    body = str(message.body or "")
    subtype = message.content_subtype
    alternatives = list(getattr(message, "alternatives", None) or [])
    if subtype == "html":
        if alternatives:
            raise Fallback("alternatives to an HTML body")
        if not body:
            raise Fallback("an empty HTML body")
        return None, _text(body)
    if subtype != "plain":
        raise Fallback(f"content_subtype {subtype!r}")
    if not alternatives:
        if MODERN_EMAIL_API and (body or not message.attachments):
            return _text(body), None  # Django 6 writes a body part even when empty
        return body or None, None
    if len(alternatives) > 1:
        raise Fallback(f"{len(alternatives)} alternatives")
    content, mimetype = alternatives[0]
    if str(mimetype).lower() != "text/html" or not isinstance(content, str):
        raise Fallback(f"an alternative of type {mimetype!r}")
    content = _text(content)
    if not body and not content.endswith(("\n", "\r")):
        # Django leaves an empty text body out and sends a multipart/alternative holding
        # only the HTML, whose last line stays open (RFC 2046 5.1.1); fastsmtp sends one
        # text/html part, whose last line DATA needs ended. Same content only when the
        # HTML ends with a line break.
        raise Fallback("an HTML alternative without a text body or a final line break")
    return (_text(body) if body else None), content


def _attachment(item: Any) -> Attachment:
    if isinstance(item, email.message.Message):  # MIMEBase (Django < 6), MIMEPart (6.x)
        return _mime_attachment(item)
    filename, content, mimetype = item
    if not filename:
        raise Fallback("an attachment without a file name")
    if mimetype is None:
        mimetype = Attachment(filename=str(filename), content=b"").content_type
    basetype = str(mimetype).split("/", 1)[0].lower()
    if basetype in ("message", "multipart"):
        raise Fallback(f"a {mimetype} attachment")
    if basetype == "text":
        if not isinstance(content, str):
            raise Fallback("a text attachment given as bytes")
        # Django sends text attachments in the message charset, which is UTF-8 here.
        return Attachment(
            filename=str(filename),
            content=_text(content).encode(),
            content_type=f"{mimetype}; charset=utf-8",
        )
    if not isinstance(content, bytes):
        raise Fallback(f"a {mimetype} attachment given as {type(content).__name__}")
    return Attachment(filename=str(filename), content=content, content_type=str(mimetype))


def _mime_attachment(part: email.message.Message) -> Attachment:
    if part.is_multipart():
        raise Fallback("a multipart MIME attachment")
    others = [k for k in part if k.lower() not in _PART_HEADERS]
    if others:
        raise Fallback(f"a MIME attachment with headers {others}")
    filename = part.get_filename()
    if not filename:
        raise Fallback("a MIME attachment without a file name")
    content_type = part.get_content_type()
    if content_type.split("/", 1)[0] in ("message", "multipart"):
        raise Fallback(f"a {content_type} MIME attachment")
    charset = part.get_content_charset()
    if charset:
        content_type += f"; charset={charset}"
    content = part.get_payload(decode=True)
    if not isinstance(content, bytes):
        raise Fallback("a MIME attachment whose payload cannot be decoded")
    content_id = part.get("Content-ID")
    inline = part.get_content_disposition() == "inline"
    if inline and not content_id:
        raise Fallback("an inline MIME part without a Content-ID")
    if content_id and not inline:
        raise Fallback("a Content-ID on an attachment that is not inline")
    return Attachment(
        filename=filename,
        content=content,
        content_type=content_type,
        inline=inline,
        content_id=str(content_id).strip().strip("<>") if content_id else None,
    )


def _strs(values: Any) -> list[str]:
    # Django accepts lazy strings, and lists with empty entries (it skips them).
    return [str(v) for v in values or () if v]


def _addresses(values: list[str]) -> list[str]:
    return [addr.lower() for _name, addr in email.utils.getaddresses(values)]


def _split_addresses(value: str) -> list[str]:
    return [
        str(Address(display_name=name, addr_spec=addr)) if name else addr
        for name, addr in email.utils.getaddresses([value])
        if addr
    ]


def _addr_spec(value: str) -> str:
    return email.utils.parseaddr(str(value))[1] or str(value)


def _envelope_address(value: Any) -> str:
    """The addr-spec with an IDNA domain, as Django 6's SMTP backend (prep_address) puts it
    into MAIL FROM / RCPT TO; what cannot go there is refused later, by the one address
    check (InvalidMessage, a ValueError like Django's)."""
    address = _addr_spec(str(value))
    local, at, domain = address.rpartition("@")
    if at and not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidMessage(f"invalid address {value!r}: bad domain") from None
    return f"{local}{at}{domain}"
