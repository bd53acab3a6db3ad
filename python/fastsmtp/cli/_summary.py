"""The tables ``fastsmtp send`` and ``fastsmtp demo`` print at the end: counts by status,
rate, and the most common reasons recipients were rejected, deferred or failed."""

from __future__ import annotations

import re
from collections import Counter

from rich.table import Table

from fastsmtp._models import BatchReport, Result

TOP_REASONS = 5

_ADDRESS = re.compile(r"<[^<>\s]*@[^<>\s]*>|[^\s<>()\[\]:;,\"']+@[^\s<>()\[\]:;,\"']+")
"""A mailbox in a reply text, bracketed or bare (servers often echo the recipient)."""


def summary_table(report: BatchReport, title: str = "fastsmtp batch summary") -> Table:
    """Recipients by status, the total, elapsed time and rate."""
    table = Table(title=title)
    table.add_column("status")
    table.add_column("recipients", justify="right")
    for status in ("accepted", "rejected", "deferred", "failed"):
        table.add_row(status, str(getattr(report, status)))
    table.add_row("[bold]total", f"[bold]{report.total}")
    table.add_row("elapsed", f"{report.elapsed:.2f} s")
    table.add_row("rate", f"{report.messages_per_second:,.0f} msg/s")
    return table


class Reasons:
    """Counts why recipients were not accepted: one key per status, reply code, enhanced
    code and reply text, with addresses in the text replaced by ``<address>`` so that
    "550 5.1.1 <ann@x>: user unknown" and the same for bob count as one reason."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()

    def add(self, result: Result) -> None:
        if result.status == "accepted":
            return
        code = " ".join(str(c) for c in (result.code, result.enhanced_code) if c is not None)
        text = _ADDRESS.sub("<address>", " ".join(result.text.split()))
        self.counts[(result.status, code, text)] += 1

    def __bool__(self) -> bool:
        return bool(self.counts)

    def table(
        self, top: int = TOP_REASONS, title: str = "why recipients were not accepted"
    ) -> Table:
        """The ``top`` most common reasons, most common first."""
        shown = self.counts.most_common(top)
        others = sum(self.counts.values()) - sum(n for _, n in shown)
        if others:
            title += f" (top {len(shown)} of {len(self.counts)} reasons)"
        table = Table(title=title)
        table.add_column("recipients", justify="right")
        table.add_column("status")
        table.add_column("code")
        table.add_column("reason", overflow="fold")
        for (status, code, text), count in shown:
            table.add_row(str(count), status, code or "-", text)
        if others:
            table.add_row(str(others), "", "", "other reasons")
        return table
