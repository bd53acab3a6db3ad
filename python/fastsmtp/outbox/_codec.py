"""How jobs and recipients are encoded for the database.

A template is the :class:`fastsmtp.Message` Struct as msgpack (attachments included, once
per job); a recipient's data dict is msgpack too, or NULL when empty. A job's fingerprint
is a SHA-256 over the template and batch data encoded with sorted map keys, so the same
template built twice (dicts filled in another order) has the same fingerprint.
"""

from __future__ import annotations

import email.utils
import hashlib
import secrets
from datetime import datetime
from typing import Any

import msgspec

from fastsmtp._errors import InvalidMessage
from fastsmtp._models import Attachment, Message, Recipient

_encode = msgspec.msgpack.Encoder().encode
_encode_sorted = msgspec.msgpack.Encoder(order="sorted").encode
_decode = msgspec.msgpack.Decoder().decode
_decode_data = msgspec.msgpack.Decoder(dict[str, Any]).decode


def fingerprint(template: Message, data: dict[str, Any] | None) -> bytes:
    """SHA-256 of what a job's messages are rendered from (not its recipients)."""
    if not isinstance(template, Message):
        raise TypeError(f"a job's template must be a fastsmtp.Message, not {type(template)}")
    digest = hashlib.sha256()
    digest.update(_encode_sorted(template))
    digest.update(b"\x00")
    try:
        digest.update(_encode_sorted(data))
    except (TypeError, msgspec.EncodeError) as exc:
        raise InvalidMessage(f"batch data cannot be stored: {exc}", field="data") from exc
    return digest.digest()


def freeze(template: Message, token: str) -> Message:
    """The template as stored: its Date fixed now when it has none, so every attempt
    renders the same Date header; a literal message (with its own recipients) also gets
    its Message-ID fixed (``<token@domain>``) when it has none."""
    changes: dict[str, Any] = {}
    if not isinstance(template.date, str):
        changes["date"] = _rfc5322_date(template.date)
    if template.recipients and template.message_id is None:
        changes["message_id"] = f"<{token}@{msgid_domain(template)}>"
    return msgspec.structs.replace(template, **changes) if changes else template


def _rfc5322_date(value: datetime | None) -> str:
    """A Date value for ``value`` (a naive datetime is local time), or for now; a string
    date is left to the core to check when the message is built."""
    if value is None:
        return email.utils.formatdate(localtime=True)
    if not isinstance(value, datetime):
        raise InvalidMessage("date must be a datetime or an RFC 5322 date string", field="date")
    return email.utils.format_datetime(value if value.tzinfo else value.astimezone())


def encode_template(template: Message) -> bytes:
    return _encode(template)


def decode_template(blob: bytes) -> Message:
    # Message's ``date: datetime | str | None`` is a union msgspec cannot decode into
    # directly; a stored template's date is always a str (see freeze).
    fields = _decode(blob)
    fields["attachments"] = [Attachment(**a) for a in fields.get("attachments", ())]
    return Message(**fields)


def encode_data(data: dict[str, Any] | None) -> bytes | None:
    return _encode(data) if data else None


def decode_data(blob: bytes | None) -> dict[str, Any] | None:
    return _decode_data(blob) if blob is not None else None


def new_msgid_token() -> str:
    """The left part shared by a job's Message-IDs: 128 random bits in hex."""
    return secrets.token_hex(16)


def msgid_domain(template: Message) -> str:
    """The right part of a job's Message-IDs: the domain of the template's sender."""
    _, address = email.utils.parseaddr(template.sender)
    domain = address.rpartition("@")[2].strip("[]")
    ok = domain and all(c.isascii() and c.isprintable() and c not in " <>@" for c in domain)
    return domain if ok else "localhost"


def to_timestamp(when: datetime | float | None, default: float) -> float:
    """A Unix time from a datetime (naive = local time), a number, or the default."""
    if when is None:
        return default
    if isinstance(when, datetime):
        return (when if when.tzinfo else when.astimezone()).timestamp()
    if isinstance(when, int | float) and not isinstance(when, bool):
        return float(when)
    raise TypeError(f"send_at must be a datetime or a Unix time, not {type(when).__name__}")


def recipient_row(key: int, item: object) -> tuple[int, str, str | None, bytes | None]:
    """(key, address, name, data) for one recipient given as a str, a Recipient, or a
    dict with ``address`` (or ``email``) and optional ``name`` (its other keys are the
    data, as ``Engine.send_batch`` reads them). Raises InvalidMessage for anything else."""
    if isinstance(item, str):
        address: object = item
        name: object = None
        data: object = None
    elif isinstance(item, Recipient):
        address, name, data = item.address, item.name, item.data
    elif isinstance(item, dict):
        address = item.get("address", item.get("email"))
        name = item.get("name")
        rest = {k: v for k, v in item.items() if k not in _ADDRESS_KEYS}
        data = rest
    else:
        raise InvalidMessage(
            f"a recipient must be a str, Recipient or dict, not {type(item).__name__}",
            field=f"recipients[{key & 0xFFFFFFFF}]",
        )
    if not isinstance(address, str) or not address:
        raise InvalidMessage(
            f"recipient {key & 0xFFFFFFFF} has no address", field=f"recipients[{key & 0xFFFFFFFF}]"
        )
    if name is not None and not isinstance(name, str):
        raise InvalidMessage(
            "a recipient's name must be a str", field=f"recipients[{key & 0xFFFFFFFF}]"
        )
    try:
        blob = _encode(data) if data else None
    except (TypeError, msgspec.EncodeError) as exc:
        raise InvalidMessage(
            f"recipient {key & 0xFFFFFFFF}'s data cannot be stored: {exc}",
            field=f"recipients[{key & 0xFFFFFFFF}]",
        ) from exc
    return (key, address, name, blob)


_ADDRESS_KEYS = frozenset({"address", "email", "name"})
