"""Engine counters: what ``engine.stats`` shows."""

from __future__ import annotations

import msgspec


class Stats(msgspec.Struct, kw_only=True):
    """Running totals since the engine started."""

    connections_opened: int = 0
    connection_failures: int = 0
    health_check_failures: int = 0
    """Idle connections that did not answer NOOP before reuse (replaced, nothing lost)."""
    messages_submitted: int = 0
    """Transactions handed to a server (retries included)."""
    accepted: int = 0
    rejected: int = 0
    deferred: int = 0
    failed: int = 0
    retries: int = 0
    bytes_sent: int = 0
    callback_errors: int = 0
