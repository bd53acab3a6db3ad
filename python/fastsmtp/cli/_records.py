"""The recipients file ``fastsmtp send`` reads and the results file it writes.

Recipients: a CSV file (a header row; an ``email`` or ``address`` column, an optional
``name`` column, every other column is template data) or a JSONL file (one object per line,
the same keys, any JSON values). Each record has an *index*: its 0-based position among the
file's records (CSV data rows, non-blank JSONL lines).

Results: one JSON line per recipient (a ``fastsmtp.Result`` with that index), each written
with one unbuffered ``write`` the moment the outcome is known, so a crash or a kill loses
nothing already reported. The file is created by the first line, so a job that stops
before any outcome (a template error, an unreachable server) leaves no empty file behind.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal

import msgspec

from fastsmtp._models import Result

ADDRESS_KEYS = ("email", "address")

Format = Literal["csv", "jsonl"]


class UsageError(Exception):
    """A problem with the command line or the input files: one line, exit 2."""


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """One record of the recipients file."""

    index: int
    address: str
    name: str | None
    data: dict[str, Any]
    error: str | None = None
    """Why this record cannot be sent at all (it becomes a ``failed`` line)."""


def read_rows(path: Path, fmt: Format) -> Iterator[Row]:
    """The file's records in order, each with its index. Raises UsageError for problems
    with the file as a whole (unreadable, no address column)."""
    try:
        if fmt == "csv":
            yield from _csv_rows(path)
        else:
            yield from _jsonl_rows(path)
    except UnicodeDecodeError as e:
        raise UsageError(f"{path} is not UTF-8: {e}") from None
    except (OSError, csv.Error) as e:
        raise UsageError(f"cannot read {path}: {e}") from None


def _csv_rows(path: Path) -> Iterator[Row]:
    # utf-8-sig: spreadsheet exports often start with a byte-order mark.
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = [name.strip() for name in reader.fieldnames or []]
        reader.fieldnames = fields
        key = next((k for k in fields if k.lower() in ADDRESS_KEYS), None)
        if key is None:
            raise UsageError(f"{path} has no 'email' or 'address' column (header: {fields})")
        name_key = next((k for k in fields if k.lower() == "name"), None)
        for index, raw in enumerate(reader):
            # A short row has None for the missing cells: leave them out, so a template
            # that needs one reports the variable as missing for this recipient.
            data = {k: v for k, v in raw.items() if k is not None and v is not None}
            address = (data.pop(key, None) or "").strip()
            name = data.pop(name_key, None) if name_key else None
            if not address:
                error = f"line {reader.line_num}: no address in column {key!r}"
                yield Row(index, "", None, data, error)
            else:
                yield Row(index, address, name or None, data)


def _jsonl_rows(path: Path) -> Iterator[Row]:
    decoder = msgspec.json.Decoder()
    with open(path, "rb") as f:
        index = 0
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = decoder.decode(line)
            except msgspec.DecodeError as e:
                yield Row(index, "", None, {}, f"line {lineno}: invalid JSON: {e}")
                index += 1
                continue
            if not isinstance(obj, dict):
                yield Row(index, "", None, {}, f"line {lineno}: not a JSON object")
                index += 1
                continue
            key = next((k for k in obj if k.lower() in ADDRESS_KEYS), None)
            address = obj.pop(key, None) if key else None
            name = obj.pop("name", None)
            if not isinstance(address, str) or not address.strip():
                error = f"line {lineno}: no address (an 'email' or 'address' string)"
                yield Row(index, "", None, obj, error)
            else:
                yield Row(index, address.strip(), name if isinstance(name, str) else None, obj)
            index += 1


def count_records(path: Path, fmt: Format) -> int:
    """How many records the file has (a quick pass, for the progress bar's total)."""
    try:
        if fmt == "csv":
            with open(path, newline="", encoding="utf-8-sig") as f:
                return max(0, sum(1 for _ in csv.reader(f)) - 1)
        with open(path, "rb") as f:
            return sum(1 for line in f if line.strip())
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UsageError(f"cannot read {path}: {e}") from None


def load_results(path: Path, *, rewrite: bool = True) -> dict[int, str]:
    """Index -> recipient of every line already in the results file.

    A line cut short by a crash (or any undecodable line) is dropped and, with ``rewrite``,
    the file rewritten without it, so that appending starts on a fresh line.
    """
    done: dict[int, str] = {}
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return done
    decoder = msgspec.json.Decoder(Result)
    good: list[bytes] = []
    dropped = 0
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            result = decoder.decode(line)
        except msgspec.DecodeError:
            dropped += 1
            continue
        if result.index in done:
            dropped += 1  # a duplicate: keep the first, which is what resume skipped on
            continue
        done[result.index] = result.recipient
        good.append(line)
    if rewrite and (dropped or (raw and not raw.endswith(b"\n"))):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(b"".join(line + b"\n" for line in good))
        os.replace(tmp, path)
    return done


class ResultsWriter:
    """Appends one JSON line per Result, each with a single unbuffered write: once a line is
    written, the process can die without losing it (the kernel has it). The file is opened
    (created if need be) by the first line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = 0
        self._file: BinaryIO | None = None
        self._encoder = msgspec.json.Encoder()
        self._buffer = bytearray()

    def write(self, result: Result) -> None:
        if self._file is None:
            self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - see close()
        self._encoder.encode_into(result, self._buffer)
        self._buffer.extend(b"\n")
        self._file.write(self._buffer)
        self.lines += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
