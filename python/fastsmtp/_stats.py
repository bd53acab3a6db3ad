"""Engine counters: what ``engine.stats`` shows."""

from __future__ import annotations

from fastsmtp._models import Counts


class Stats(Counts, kw_only=True):
    """Running totals since the engine started: every final result (``Counts``) and the
    connection-level events behind them."""

    connections_opened: int = 0
    tls_connections: int = 0
    """Connections whose TLS runs in the core (rustls)."""
    tls_resumed: int = 0
    """Of those, how many resumed an earlier TLS session (no full handshake)."""
    connection_failures: int = 0
    health_check_failures: int = 0
    """Idle connections that did not answer NOOP before reuse (replaced, nothing lost)."""
    messages_submitted: int = 0
    """Transactions handed to a server (retries included)."""
    retries: int = 0
    bytes_sent: int = 0
    callback_errors: int = 0
