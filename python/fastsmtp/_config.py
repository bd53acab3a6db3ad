"""Engine configuration: validated once, read everywhere.

Keeping the knobs in one frozen object means a connection, the pool and the engine all see
the same settings, and a bad value fails at ``Engine(...)`` with a clear error instead of
deep inside a send.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import ssl
from typing import TYPE_CHECKING, Literal

from fastsmtp._secret import Secret

if TYPE_CHECKING:
    from fastsmtp._fastsmtp import DKIMSigner, TlsConfig

log = logging.getLogger("fastsmtp")

TLSMode = Literal["implicit", "starttls", "opportunistic", "none"]
TLS_MODES: tuple[TLSMode, ...] = ("implicit", "starttls", "opportunistic", "none")


@dataclasses.dataclass(frozen=True, slots=True)
class EngineConfig:
    host: str
    port: int
    tls: TLSMode = "starttls"
    ssl_context: ssl.SSLContext | None = None
    server_hostname: str | None = None
    username: str | None = None
    # Credentials are held as Secrets: never in a repr, a log line or a traceback.
    password: Secret | None = dataclasses.field(default=None, repr=False)
    oauth2_token: Secret | None = dataclasses.field(default=None, repr=False)
    allow_plaintext_auth: bool = False
    connections: int = 8
    max_messages_per_connection: int = 1000
    timeout: float = 30.0
    connect_timeout: float | None = None
    greeting_timeout: float | None = None
    reply_timeout: float | None = None
    max_attempts: int = 3
    retry_base_delay: float = 1.0
    retry_max_delay: float = 60.0
    rate_limit: float | None = None
    """Messages per second, shared by every connection (None: unlimited)."""
    rate_burst: int | None = None
    """Messages that may go out at once on top of ``rate_limit``: over any window of at
    least a second, at most ``rate_limit * window + rate_burst`` messages are sent.
    Default: a twentieth of a second's worth, at least 1."""
    local_hostname: str | None = None
    window: int = 64
    """Transactions in flight per connection (submitted, not yet answered)."""
    window_bytes: int = 8 * 1024 * 1024
    """Message octets in flight per connection."""
    data_window: int = 1
    """With CHUNKING, how many ``BDAT ... LAST`` may be unanswered at once. 1: each goes out
    once every earlier reply has come (one round trip per message, as with DATA), so a
    broken connection leaves at most one message in doubt, and a server's surplus reply is
    caught instead of being taken for an acceptance. Larger: pipelined, fewer round trips,
    but up to this many messages in doubt when a connection breaks."""
    idle_timeout: float = 30.0
    health_check_after: float | None = 5.0
    """A connection unused for longer is checked with NOOP before it gets work again, so a
    connection the server or a middlebox dropped is found before any message is written
    to it (None: never check)."""
    dkim: DKIMSigner | None = None
    """Sign every message (send, send_batch, send_raw) with this DKIM identity."""

    def __post_init__(self) -> None:
        for name in ("password", "oauth2_token"):
            object.__setattr__(self, name, Secret.wrap(getattr(self, name)))
        if self.tls not in TLS_MODES:
            raise ValueError(f"tls must be one of {', '.join(TLS_MODES)}, not {self.tls!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port out of range: {self.port}")
        for name in (
            "connections",
            "max_messages_per_connection",
            "max_attempts",
            "window",
            "data_window",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        if self.rate_limit is not None and self.rate_limit <= 0:
            raise ValueError("rate_limit must be positive (messages per second) or None")
        if self.rate_burst is not None and self.rate_burst < 1:
            raise ValueError("rate_burst must be at least 1")
        if self.password is not None and self.oauth2_token is not None:
            raise ValueError("give either password or oauth2_token, not both")
        if (self.password is not None or self.oauth2_token is not None) and not self.username:
            raise ValueError("a password or oauth2_token needs a username")

    @property
    def connect_timeout_s(self) -> float:
        return self.connect_timeout if self.connect_timeout is not None else self.timeout

    @property
    def greeting_timeout_s(self) -> float:
        return self.greeting_timeout if self.greeting_timeout is not None else self.timeout

    @property
    def reply_timeout_s(self) -> float:
        return self.reply_timeout if self.reply_timeout is not None else self.timeout

    @property
    def burst(self) -> int:
        """The token bucket's size (see ``rate_burst``)."""
        if self.rate_burst is not None:
            return self.rate_burst
        return max(1, int((self.rate_limit or 0) / 20))

    @property
    def ehlo_name(self) -> str:
        # gethostname, not getfqdn: getfqdn may block on a DNS lookup.
        return self.local_hostname or socket.gethostname() or "localhost"

    @property
    def tls_server_hostname(self) -> str:
        return self.server_hostname or self.host

    def make_ssl_context(self) -> ssl.SSLContext:
        """The caller's context, or a default one: certificates and host names verified."""
        return self.ssl_context or ssl.create_default_context()

    def tls_layer(self) -> TlsConfig | ssl.SSLContext | None:
        """What carries TLS for this engine (None for ``tls="none"``): the Rust layer
        (rustls) with the system's trusted CAs, or the caller's ``ssl_context`` mapped onto
        it (same trust, name check and versions); Python's ``ssl`` with that context when it
        cannot be mapped (a CA directory, a pinned certificate, CRLs, TLS below 1.2...: see
        ``fastsmtp._tls_context``). Built once per pool: connections made from one
        ``TlsConfig`` resume each other's TLS sessions."""
        if self.tls == "none":
            return None
        from fastsmtp._fastsmtp import TlsConfig
        from fastsmtp._tls_context import map_ssl_context

        if self.ssl_context is None:
            return TlsConfig()
        mapping = map_ssl_context(self.ssl_context)
        if mapping.config is None:
            log.info("TLS through Python's ssl module for this context: %s", mapping.reason)
            return self.ssl_context
        return mapping.config
