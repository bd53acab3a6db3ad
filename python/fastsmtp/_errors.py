"""The fastsmtp exception hierarchy.

Every error fastsmtp raises derives from :class:`FastSMTPError`, and where a built-in fits
it is a base too, so callers can catch what they already know: bad input is a ``ValueError``,
a lost connection a ``ConnectionError``, a timeout a ``TimeoutError``. The Rust core raises
these same classes (it looks them up here by name), so there is one hierarchy.
"""

from __future__ import annotations

import ssl


class FastSMTPError(Exception):
    """Base class of every fastsmtp error."""


class InvalidMessage(FastSMTPError, ValueError):
    """A message, address, header or template is invalid; raised before any byte is sent.

    ``field`` names the offending field (``"subject"``, ``"to[2]"``, ``"headers[X-Tag]"``...)
    when one is to blame.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class TemplateError(InvalidMessage):
    """A template failed to compile or render (for example, a variable is undefined)."""

    def __init__(
        self, message: str, *, field: str | None = None, variable: str | None = None
    ) -> None:
        super().__init__(message, field=field)
        self.variable = variable


class ProtocolError(FastSMTPError):
    """The SMTP conversation went wrong."""


class LocalProtocolError(ProtocolError):
    """fastsmtp's caller used the protocol wrongly (a bug on our side of the wire)."""


class RemoteProtocolError(ProtocolError):
    """The server broke the SMTP protocol (malformed, oversized or unexpected replies)."""


class SMTPReplyError(FastSMTPError):
    """The server answered with an error reply."""

    def __init__(self, message: str, *, code: int, enhanced_code: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.enhanced_code = enhanced_code
        self.message = message

    @property
    def is_transient(self) -> bool:
        """A 4xx reply: trying again later may succeed."""
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        """A 5xx reply: trying again will not help."""
        return self.code >= 500


class AuthenticationError(SMTPReplyError):
    """The server refused the credentials (for example 535)."""


class TLSRequiredError(FastSMTPError):
    """TLS was required but the server does not offer STARTTLS, or credentials would be
    sent in plaintext without ``allow_plaintext_auth=True``."""


class SMTPConnectionError(FastSMTPError, ConnectionError):
    """The connection could not be made or was lost."""


class SMTPTimeoutError(FastSMTPError, TimeoutError):
    """Connecting or waiting for a reply took longer than the configured timeout."""


class SMTPUTF8Required(FastSMTPError):
    """The message needs SMTPUTF8 (a non-ASCII local part) and the server does not offer it."""


class TLSError(FastSMTPError, ssl.SSLError):
    """The TLS layer failed: the handshake, a record from the server, or the end of the
    stream. Also an ``ssl.SSLError``, so code written for fastsmtp's earlier ``ssl`` path
    (and callers' ``except ssl.SSLError``) keeps working.

    ``kind`` says what went wrong, one of ``"certificate_expired"``,
    ``"certificate_wrong_name"``, ``"certificate_unknown_ca"``, ``"certificate_invalid"``
    (these four raise :class:`TLSCertificateError`), ``"handshake_failure"`` (nothing in
    common with the server), ``"peer_misbehaved"`` (garbage, a record that does not decrypt,
    a renegotiation attempt), ``"alert_received"`` (``alert`` names it, e.g.
    ``"certificate_required"``), ``"closed_during_handshake"``, ``"truncated"`` (the stream
    ended inside a record) and ``"config"`` (:class:`TLSConfigError`).
    """

    def __init__(
        self, message: str, *, kind: str = "handshake_failure", alert: str | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.alert = alert
        # ssl.SSLError's own fields, for callers that log them.
        self.reason = kind.upper()
        self.library = "TLS"

    def __str__(self) -> str:
        # ssl.SSLError prints its args tuple unless strerror is set.
        return str(self.args[0]) if self.args else ""


_VERIFY_CODES = {
    # OpenSSL's X509_V_ERR_* numbers, as ssl.SSLCertVerificationError.verify_code has them.
    "certificate_expired": 10,  # X509_V_ERR_CERT_HAS_EXPIRED
    "certificate_unknown_ca": 20,  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    "certificate_wrong_name": 62,  # X509_V_ERR_HOSTNAME_MISMATCH
}


class TLSCertificateError(TLSError, ssl.SSLCertVerificationError):
    """The server's certificate failed verification (expired, for another name, from an
    unknown CA, or otherwise invalid). Also an ``ssl.SSLCertVerificationError``."""

    def __init__(
        self, message: str, *, kind: str = "certificate_invalid", alert: str | None = None
    ) -> None:
        super().__init__(message, kind=kind, alert=alert)
        self.verify_code = _VERIFY_CODES.get(kind, 1)  # 1: X509_V_ERR_UNSPECIFIED
        self.verify_message = message


class TLSConfigError(TLSError, ValueError):
    """A TLS setting is unusable (an unreadable CA or client-certificate file, an invalid
    server name, an empty version range); raised before any byte is sent."""

    def __init__(self, message: str, *, kind: str = "config", alert: str | None = None) -> None:
        super().__init__(message, kind=kind, alert=alert)
