"""Type stubs for the native module ``fastsmtp._fastsmtp`` (the Rust core).

This file is the contract between the Rust core and the Python engine. Exceptions raised
by the core are the classes of ``fastsmtp._errors`` (InvalidMessage, TemplateError,
LocalProtocolError, RemoteProtocolError).
"""

import os
from collections.abc import Callable, Sequence
from typing import Any, Literal, final

__version__: str
__all__ = [
    "DATA_PIECE",
    "Accepted",
    "AuthFailed",
    "AuthSucceeded",
    "BounceRecipient",
    "BounceReport",
    "BuiltMessage",
    "Capabilities",
    "ClientConnection",
    "Closed",
    "CommandFailed",
    "DKIMSigner",
    "Event",
    "FeedbackReport",
    "MessageSpec",
    "NoopReplied",
    "RawMessage",
    "Ready",
    "Reply",
    "StartTlsReady",
    "Template",
    "TlsConfig",
    "TlsSession",
    "TransactionAborted",
    "TransactionResult",
    "__version__",
    "build_message",
    "check_address",
    "dot_stuff",
    "make_verp_address",
    "parse_bounce",
    "parse_replies",
    "parse_verp_address",
    "verp_address_status",
]

# --------------------------------------------------------------------------------------------
# MIME (rust/mime, rust/python/mime.rs)
# --------------------------------------------------------------------------------------------

MessageSpec = dict[str, Any]
"""Keys (all present, as made by ``Message.to_spec()``): sender: str; to, cc, bcc, reply_to:
list[str]; subject: str; text: str | None; html: str | None; attachments: list[dict] with
filename: str, content: bytes, content_type: str, inline: bool, content_id: str | None;
headers: list[tuple[str, str]]; envelope_sender: str | None; message_id: str | None;
date: str | datetime | None (an RFC 5322 date-time, checked and written in canonical form;
a datetime, naive meaning local time; None or absent: now, in the local time zone, read in
Rust and cached per second)."""

@final
class BuiltMessage:
    """One assembled message, ready for a transaction. Immutable."""

    @property
    def envelope_sender(self) -> str:
        """MAIL FROM address (IDNA-encoded domain), without angle brackets; may be ""."""
    @property
    def recipients(self) -> list[str]:
        """RCPT TO addresses (to + cc + bcc, IDNA-encoded domains)."""
    @property
    def recipient_count(self) -> int:
        """``len(recipients)``, without making the list."""
    @property
    def message_id(self) -> str:
        """The Message-ID, with angle brackets."""
    @property
    def smtputf8(self) -> bool:
        """True when the message needs SMTPUTF8 (a non-ASCII local part somewhere)."""
    @property
    def eight_bit(self) -> bool:
        """True when the body holds 8-bit data (BODY=8BITMIME is needed)."""
    def __len__(self) -> int:
        """Size of the message in octets."""
    def as_bytes(self) -> bytes: ...
    def _shared_chunks(self) -> list[int]:
        """Addresses of the byte chunks this message shares with its Template (parts
        encoded once per batch); for tests."""

@final
class DKIMSigner:
    """A DKIM signing identity, parsed once: relaxed/relaxed canonicalization, rsa-sha256
    for an RSA key (2048-8192 bits) or ed25519-sha256 for an Ed25519 key (RFC 8463).

    ``private_key`` is PEM: PKCS#8 ("PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY").
    ``headers`` replaces the default list of header fields to sign (From, Reply-To,
    Subject, Date, To, Cc, Message-ID, In-Reply-To, References, MIME-Version,
    Content-Type, Content-Transfer-Encoding, List-Id, List-Unsubscribe,
    List-Unsubscribe-Post); each present field is signed, and over-signed once so that
    a copy added in transit breaks the signature; From is always signed. A bad domain,
    selector, key or header name raises InvalidMessage (field "dkim")."""

    def __new__(
        cls,
        domain: str,
        selector: str,
        private_key: bytes,
        headers: Sequence[str] | None = None,
    ) -> DKIMSigner: ...
    @property
    def domain(self) -> str:
        """The d= domain (A-label form)."""
    @property
    def selector(self) -> str: ...
    @property
    def algorithm(self) -> str:
        """ "rsa-sha256" or "ed25519-sha256"."""
    @property
    def dns_record(self) -> str:
        """The TXT record to publish at ``<selector>._domainkey.<domain>``."""
    def sign(self, message: BuiltMessage, timestamp: int | None = None) -> BuiltMessage:
        """A copy of ``message`` with a DKIM-Signature header in front (``t=timestamp``
        when given). Runs with the GIL released."""
    def sign_all(
        self,
        items: list[BuiltMessage] | list[BuiltMessage | Exception],
        timestamp: int | None = None,
    ) -> list[BuiltMessage | Exception]:
        """``sign`` for each BuiltMessage of ``items`` (as Template.render returns them);
        other items are passed through. One call, GIL released for all of it."""
    def sign_bytes(self, data: bytes, timestamp: int | None = None) -> bytes:
        """Raw message bytes with every line break made CRLF (as on the wire) and a
        DKIM-Signature header in front."""

def build_message(spec: MessageSpec) -> BuiltMessage:
    """Validate and assemble one message literally (no template rendering).
    Raises InvalidMessage naming the field.

    Rules: every address is ``local@domain``, ``<local@domain>`` or ``Name <local@domain>``
    (RFC 5321 Mailbox after IDNA; a non-ASCII local part makes the message SMTPUTF8), and
    the envelope addresses (sender, to, cc, bcc) pass ``check_address``. Control
    characters (C0 but TAB, DEL, C1 such as U+0085) and U+2028/U+2029 are refused in every
    header value, name, filename and content id; addresses also refuse TAB and invisible
    characters (format characters such as zero-width joiners, bidi controls and the BOM,
    other default-ignorable code points, non-ASCII spaces); filenames refuse bidi
    controls. Extra ``headers`` must have RFC 5322 names (printable ASCII, no ":", at most
    76 octets) and may not be From, To, Cc, Bcc, Reply-To, Subject, Date, Message-ID,
    MIME-Version, Return-Path or any Content-* header (the builder owns those). Bcc never
    appears in the headers. A text or HTML part decodes to exactly its text (RFC 2046
    5.1.1); the body of a single-part message ends with a line break. A ``date`` that is
    not an RFC 5322 date-time (or a year before 1900) raises InvalidMessage(field="date")."""

def check_address(address: object, field: str, allow_empty: bool = False) -> None:
    """The one envelope address check, shared with the MIME path and every transaction:
    raise InvalidMessage(field=field) unless ``address`` is a str that can go into
    ``MAIL FROM:<...>`` / ``RCPT TO:<...>`` as it is: ``local@domain`` (both non-empty; ""
    only with ``allow_empty``, the null reverse-path), at most 254 octets, no space, angle
    bracket, control character (CR, LF, NUL, TAB, DEL, C1 such as U+0085), U+2028/U+2029 or
    invisible character (zero-width and bidi format characters, the BOM, other
    default-ignorable code points, non-ASCII spaces)."""

@final
class Template:
    """A message template compiled once for a batch.

    ``spec`` is a MessageSpec whose ``to`` is empty (each recipient becomes the To;
    InvalidMessage(field="to") otherwise) and without ``message_id`` (each message gets
    its own); cc and bcc, if any, go to every message. Subject, text, html and extra header
    values are minijinja (Jinja2-compatible) templates with strict undefined variables.
    ``data`` is the batch-wide template data. Shared parts (attachments, inline images, any
    part that uses no variable) are encoded once here and reused as bytes.
    Raises InvalidMessage / TemplateError (a syntax error, naming the field: "subject",
    "text", "html" or "headers[Name]").
    """

    def __new__(cls, spec: MessageSpec, data: dict[str, Any] | None = None) -> Template: ...
    @property
    def variables(self) -> frozenset[str]:
        """Top-level variable names the templates use."""
    @property
    def recipient_variables(self) -> frozenset[str]:
        """``variables`` minus the batch data's keys and the builtins (address, email,
        name): what each recipient's data must provide. A name in it that no recipient's
        data has is missing for every recipient."""
    def _shared_parts(self) -> list[int]:
        """Addresses of the parts encoded once for the batch (attachments, then static
        text and html); for tests."""
    def render(
        self,
        recipients: Sequence[Any],
        normalize: Callable[[Any], tuple[str, str | None, dict[str, Any] | None]] | None = None,
    ) -> list[BuiltMessage | Exception]:
        """Render one message per recipient, with the GIL released. A recipient is an
        address str, a dict whose "address" is a str and "name" a str or None (the dict is
        also the data), or an (address, name, data) tuple; with ``normalize``, any item
        that is neither such a str nor such a dict is passed to it instead, and it returns
        the tuple.

        Template variables: the recipient's data, then ``address``, ``name`` and ``email``,
        then the batch data. Values are HTML-escaped in the html part only, as Jinja2 does
        (``& < > " '``; ``|safe`` opts out). ``name`` (when given) overrides a display name
        in ``address``. A recipient whose message cannot be made gets an exception
        *instance* in its slot instead of a message; nothing is raised for it:
        InvalidMessage(field="address" | "name") for a bad address or name,
        InvalidMessage(field="subject" | "headers[Name]") when a rendered header value holds
        CR/LF (header injection through data), TemplateError(field, variable) for an
        undefined variable (``variable`` is e.g. "first_name" or "user.first_name").
        A recipient of none of these shapes raises TypeError.
        """
    def render_split(
        self,
        recipients: Sequence[Any],
        normalize: Callable[[Any], tuple[str, str | None, dict[str, Any] | None]] | None = None,
    ) -> tuple[list[BuiltMessage], list[tuple[int, Exception]]]:
        """``render``, with the messages and the failures apart: the messages in order, and
        ``(position, exception)`` for each recipient whose message could not be made
        (positions into ``recipients``)."""

# --------------------------------------------------------------------------------------------
# Protocol (rust/protocol, rust/python/protocol.rs)
# --------------------------------------------------------------------------------------------

@final
class Reply:
    """One complete SMTP reply."""

    @property
    def code(self) -> int: ...
    @property
    def enhanced_code(self) -> str | None:
        """RFC 3463 code such as "2.1.5", when the reply carries one."""
    @property
    def text(self) -> str:
        """The reply text, lines joined with "\\n", without code and enhanced code."""
    @property
    def is_positive(self) -> bool:
        """2xx or 3xx."""
    @property
    def is_transient(self) -> bool:
        """4xx."""
    @property
    def is_permanent(self) -> bool:
        """5xx."""

@final
class Capabilities:
    """What the server's EHLO reply offered (all False/None/empty after HELO)."""

    @property
    def pipelining(self) -> bool: ...
    @property
    def chunking(self) -> bool: ...
    @property
    def size(self) -> int | None:
        """SIZE limit in octets; None when not offered, 0 when offered without a limit."""
    @property
    def eight_bit_mime(self) -> bool: ...
    @property
    def smtputf8(self) -> bool: ...
    @property
    def starttls(self) -> bool: ...
    @property
    def auth(self) -> list[str]:
        """Offered SASL mechanisms, upper-case."""
    @property
    def enhanced_status_codes(self) -> bool: ...
    @property
    def dsn(self) -> bool: ...
    @property
    def esmtp(self) -> bool:
        """False when the server refused EHLO and HELO was used."""

# Events returned by ClientConnection.receive_data --------------------------------------------

@final
class Ready:
    """Greeting and EHLO (or HELO) are done; transactions, STARTTLS or AUTH may follow.
    Emitted again after STARTTLS (with the fresh post-TLS capabilities)."""

    @property
    def greeting(self) -> Reply: ...
    @property
    def capabilities(self) -> Capabilities: ...

@final
class StartTlsReady:
    """The server said 220 to STARTTLS: upgrade the transport now, then call
    ClientConnection.tls_established(). Bytes that arrived after the 220 were discarded."""

@final
class AuthSucceeded:
    @property
    def reply(self) -> Reply: ...

@final
class AuthFailed:
    @property
    def reply(self) -> Reply: ...

@final
class NoopReplied:
    """The reply to ``ClientConnection.noop()``: the connection is alive."""

    @property
    def reply(self) -> Reply: ...

@final
class CommandFailed:
    """The greeting, EHLO/HELO or STARTTLS was refused: the connection is unusable.
    ``command`` is "greeting", "ehlo", "helo" or "starttls"."""

    @property
    def command(self) -> str: ...
    @property
    def reply(self) -> Reply: ...

@final
class TransactionResult:
    """The outcome of one submitted transaction whose every recipient was not accepted,
    or that was not submitted ``count_only``; exactly one per transaction (or an Accepted
    count, or a TransactionAborted, instead).

    A recipient got the message exactly when its entry of ``verdicts()`` is a 2xx: its RCPT
    and the end of data (after "." or BDAT LAST) were both answered 2xx. A reply of the
    wrong class for its command is never taken for an answer: the connection is closed
    with a protocol error instead (see ClientConnection)."""

    @property
    def lot(self) -> Any:
        """The ``lot`` given to submit() or submit_lot()."""
    @property
    def index(self) -> int:
        """The message's position in its lot."""
    @property
    def mail_reply(self) -> Reply: ...
    @property
    def rcpt_replies(self) -> list[Reply | None]:
        """One per recipient, in submit order (None if never answered)."""
    @property
    def data_reply(self) -> Reply | None:
        """The reply to the end of data, or to DATA itself when it was refused; None when
        no data phase happened (MAIL refused, or every RCPT refused)."""
    @property
    def delivered(self) -> bool:
        """The end of data was answered 2xx."""
    @property
    def all_accepted(self) -> bool:
        """MAIL, every RCPT and the end of data were answered 2xx."""
    def verdicts(self) -> list[Reply | None]:
        """Per recipient, the reply that decided it: the end of data's 2xx (accepted), the
        first refusal (4xx/5xx) among MAIL, its RCPT and the data phase, or None when no
        reply decided it."""

@final
class TransactionAborted:
    """The connection ended (EOF, unsolicited 421, protocol error, the caller's abort)
    before this transaction got its final reply. ``end_of_data_sent`` is True when the
    final "." or BDAT LAST had been handed out by data_to_send(): the server may have
    accepted the message."""

    @property
    def lot(self) -> Any:
        """The ``lot`` given to submit() or submit_lot()."""
    @property
    def index(self) -> int:
        """The message's position in its lot."""
    @property
    def end_of_data_sent(self) -> bool: ...
    @property
    def reason(self) -> str:
        """As Closed.reason."""
    @property
    def reply(self) -> Reply | None:
        """The 421 that closed the connection, when that is why. A 421 is an in-order
        answer: the server accepted none of the transactions it aborts, so they can be
        retried even when ``end_of_data_sent`` is True. After "eof" they cannot be known."""

@final
class Closed:
    """The connection is finished (QUIT answered, EOF, 421, a protocol error or the
    caller's abort); every in-flight transaction has already been given a
    TransactionAborted event."""

    @property
    def reason(self) -> str:
        """One of "quit" (QUIT answered), "eof" (the server closed), "421" (the server is
        shutting the connection down), "protocol error: <what>", or the reason given to
        abort()."""
    @property
    def reply(self) -> Reply | None:
        """The reply to QUIT, or the 421."""
    @property
    def error(self) -> Exception | None:
        """A RemoteProtocolError instance when the server broke the protocol."""

@final
class Accepted:
    """Transactions of one lot submitted ``count_only`` whose MAIL, every RCPT and end of
    data were answered 2xx: reported as a count instead of a TransactionResult each.
    Consecutive ones of the same lot within one read are one event."""

    @property
    def lot(self) -> Any:
        """The ``lot`` given to submit() or submit_lot()."""
    @property
    def transactions(self) -> int: ...
    @property
    def recipients(self) -> int:
        """How many recipients these transactions delivered to."""

Event = (
    Ready
    | StartTlsReady
    | AuthSucceeded
    | AuthFailed
    | CommandFailed
    | NoopReplied
    | TransactionResult
    | TransactionAborted
    | Accepted
    | Closed
)

@final
class RawMessage:
    """A message the caller assembled (``Engine.send_raw``): the envelope is validated
    (InvalidMessage naming "sender" or "recipients[i]" for an empty recipient, a space,
    "<", ">" or a control character) and every bare CR or LF made CRLF when it is made,
    so nothing malformed can reach a command or DATA later."""

    def __new__(
        cls, sender: str, recipients: list[str], data: bytes, message_id: str | None = None
    ) -> RawMessage: ...
    @property
    def envelope_sender(self) -> str: ...
    @property
    def recipients(self) -> list[str]: ...
    @property
    def recipient_count(self) -> int: ...
    @property
    def message_id(self) -> str:
        """The caller's Message-ID for results ("" when not given)."""
    def __len__(self) -> int: ...
    def as_bytes(self) -> bytes:
        """The bytes as they go out (line ends CRLF, ending with CRLF)."""

@final
class ClientConnection:
    """A sans-IO SMTP client connection: it never touches a socket, clock or thread.

    The caller feeds server bytes to receive_data() and writes whatever data_to_send()
    returns. Commands that need no decision are sent automatically: EHLO after a 220
    greeting (HELO if EHLO gets 5xx), RSET after a failed transaction, the dot-stuffed body
    after a 354. Every command sent appends its expected reply to a queue, so each reply
    maps back to the transaction and recipient it answers.

    Framing chooses itself from the capabilities: CHUNKING -> MAIL+RCPT..., then
    ``BDAT <n> LAST`` with the raw body once every earlier reply came (or up to
    ``data_window`` of them pipelined); PIPELINING -> MAIL+RCPT...+DATA as one group, then
    the dot-stuffed body + "." + the next group in one write after the 354; neither ->
    lock-step.

    Never a false acceptance: a reply of the wrong class for its command (2xx to DATA, 3xx
    to MAIL, RCPT or an end of data, a 2.1.x to an end of data), a reply when nothing is
    expected, or a reply to a command not yet handed out by data_to_send() is a protocol
    error of the server: the connection ends (TransactionAborted for each unresolved
    transaction, then Closed). A protocol error is sticky: later calls raise
    LocalProtocolError.
    """

    def __new__(
        cls,
        local_hostname: str = "localhost",
        *,
        max_reply_bytes: int = 65536,
        data_window: int = 1,
    ) -> ClientConnection: ...
    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes read from the server (b"" is ignored: see eof()). Never raises for
        peer misbehaviour: malformed or hostile replies end the connection with
        TransactionAborted for each in-flight transaction and a Closed event whose
        ``error`` is a RemoteProtocolError."""
    def feed(self, data: bytes) -> tuple[list[Event], bytes]:
        """One read in one call: ``receive_data(data)``, then ``data_to_send()``."""
    def eof(self) -> list[Event]:
        """The server closed the connection: TransactionAborted for each in-flight
        transaction, then Closed (nothing when already closed)."""
    def abort(self, reason: str) -> list[Event]:
        """End the connection now for the caller's ``reason`` (a reply deadline passed, the
        transport failed): TransactionAborted for each in-flight transaction, then Closed."""
    def data_to_send(self) -> bytes:
        """The next bytes to write (possibly b""): everything framed, or, when a large body
        is queued, at least ``DATA_PIECE`` octets of it (call again while
        ``has_data_to_send``). They count as sent now (for ``oldest_unanswered``)."""
    @property
    def has_data_to_send(self) -> bool: ...
    @property
    def oldest_unanswered(self) -> tuple[str, float] | None:
        """The command whose reply is awaited longest ("MAIL FROM", "BDAT LAST", "the end
        of data"...) and how many seconds ago it was handed out; None when no sent command
        waits. A reply is late once that exceeds the caller's timeout."""
    @property
    def idle_for(self) -> float:
        """Seconds since the server last sent anything."""
    def start_tls(self, config: TlsConfig, server_name: str) -> None:
        """Run the connection over TLS (rustls) from now on: on a new connection for
        implicit TLS (before the greeting), or after StartTlsReady for STARTTLS. From then
        on feed()/receive_data() take ciphertext and data_to_send() returns ciphertext
        (one read's replies -> one write); the handshake runs through them. After a
        STARTTLS handshake, EHLO is sent again and a Ready event follows. A TLS failure
        ends the connection: TransactionAborted for each transaction, then Closed whose
        ``error`` is the typed TLS exception (TLSCertificateError, TLSError...)."""
    def close_tls(self) -> bytes:
        """The close_notify alert to write before closing the socket (b"" without TLS)."""
    @property
    def tls_version(self) -> str | None:
        """The negotiated version ("TLSv1.2", "TLSv1.3") once start_tls()'s handshake is
        done; None otherwise (and on Python's ssl path)."""
    @property
    def tls_resumed(self) -> bool:
        """The TLS handshake resumed an earlier session of the same TlsConfig."""
    @property
    def peer_certificates(self) -> list[bytes]:
        """The server's certificate chain (DER, leaf first) after start_tls()'s handshake."""
    def starttls(self) -> None:
        """Queue STARTTLS. Only when Ready and nothing is in flight."""
    def tls_established(self) -> None:
        """The transport is now TLS: forget pre-TLS capabilities and send EHLO again."""
    def auth(
        self, mechanism: str, username: str, secret: str, *, allow_plaintext: bool = False
    ) -> None:
        """Queue AUTH (PLAIN, LOGIN, XOAUTH2 or CRAM-MD5; ``secret`` is the password or
        the OAuth2 token). Raises LocalProtocolError when TLS is not active and
        ``allow_plaintext`` is False, or when the mechanism is not offered."""
    def submit(
        self,
        lot: object,
        index: int,
        message: BuiltMessage | RawMessage,
        recipients: Sequence[str] | None = None,
        *,
        count_only: bool = False,
    ) -> None:
        """Queue one transaction: ``message`` to its own recipients or to ``recipients``.
        Raises SMTPUTF8Required if the message needs SMTPUTF8 and the server lacks it, and
        InvalidMessage if it exceeds the server's SIZE or an address is malformed
        (``field`` names it). Only after Ready. The transaction's one event carries
        ``lot`` and ``index``, so the caller keeps no table of its own. With
        ``count_only``, a transaction whose every recipient is accepted is reported only in
        an Accepted count. A message's bytes are written from it without a copy."""
    def submit_lot(
        self,
        lot: object,
        messages: Sequence[BuiltMessage | RawMessage],
        start: int,
        count: int,
        *,
        count_only: bool = False,
    ) -> list[tuple[int, Exception]]:
        """``submit(lot, i, messages[i], count_only=count_only)`` for each ``i`` of
        (``messages`` must be a list)
        ``range(start, min(start + count, len(messages)))`` in one call. Returns
        ``(i, exception)`` for each message refused (what submit() would raise for it);
        the others are queued."""
    def noop(self) -> None:
        """Queue NOOP (only when ready and idle): a health check for a connection that sat
        unused; answered by NoopReplied. Transactions submitted meanwhile follow it."""
    def quit(self) -> None:
        """Queue QUIT after everything already queued."""
    @property
    def capabilities(self) -> Capabilities | None: ...
    @property
    def tls_active(self) -> bool: ...
    @property
    def in_flight(self) -> int:
        """Transactions submitted and not yet resolved."""
    @property
    def bytes_sent(self) -> int:
        """Octets handed out by data_to_send() so far."""
    @property
    def bytes_in_flight(self) -> int:
        """Message octets submitted and not yet resolved."""
    @property
    def is_ready(self) -> bool:
        """Ready for submit/auth/starttls (greeting and EHLO done, not closed)."""
    @property
    def is_closed(self) -> bool: ...

DATA_PIECE: int
"""``data_to_send()``/``feed()`` hand out everything framed, unless a large body is
queued: then at least this many octets, so a shorter result means nothing is left."""

def dot_stuff(body: bytes) -> bytes:
    """The DATA encoding of a CRLF body: leading dots doubled, CRLF line endings, ending
    with CRLF (the terminating ".\\r\\n" is NOT appended). Exposed for tests and benches."""

def parse_replies(data: bytes) -> list[Reply]:
    """Parse complete replies from ``data`` (for tests, fuzzing and benches); raises
    RemoteProtocolError on malformed input."""

# --------------------------------------------------------------------------------------------
# TLS (rust/tls, rust/python/tls.rs). Errors are fastsmtp._errors.TLSError and its
# subclasses TLSCertificateError and TLSConfigError (all also ssl.SSLError).
# --------------------------------------------------------------------------------------------

@final
class TlsConfig:
    """Shared TLS client settings, built once per engine: sessions made from one config
    resume each other's TLS sessions. Defaults match ``ssl.create_default_context()``:
    the system trust store, the certificate chain and server name verified, TLS 1.2 at
    least. ``ca_file``/``ca_data`` (PEM text, or DER bytes) replace the system store."""

    def __new__(
        cls,
        *,
        ca_file: str | os.PathLike[str] | None = None,
        ca_data: str | bytes | None = None,
        client_cert: str | os.PathLike[str] | None = None,
        client_key: str | os.PathLike[str] | None = None,
        verify: bool = True,
        check_hostname: bool | None = None,
        min_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.2",
        max_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.3",
        resumption: bool = True,
    ) -> TlsConfig: ...
    @property
    def verify(self) -> bool:
        """False if certificates are not verified at all."""
    @property
    def check_hostname(self) -> bool:
        """True if the server name is checked against the certificate."""

@final
class TlsSession:
    """One TLS client connection, sans-IO: ``feed()`` what the socket read, write out
    ``data_to_send()``. Plaintext given to ``send()`` is sealed by the next
    ``data_to_send()`` into as few records as possible."""

    def __new__(cls, config: TlsConfig, server_name: str) -> TlsSession: ...
    def feed(self, data: bytes) -> bytes:
        """Decrypt ciphertext read from the socket; returns the plaintext it carried."""
    def send(self, data: bytes) -> None:
        """Queue plaintext to send (after the handshake, if it is still running)."""
    def data_to_send(self) -> bytes:
        """The TLS bytes to write to the socket now."""
    def close(self) -> None:
        """Queue close_notify after anything already sent."""
    def eof(self) -> bool:
        """The socket reached end of file: True if close_notify came first, False for a
        bare close after the handshake; raises TLSError otherwise."""
    @property
    def handshake_done(self) -> bool: ...
    @property
    def wants_write(self) -> bool: ...
    @property
    def peer_closed(self) -> bool: ...
    @property
    def version(self) -> Literal["TLSv1.2", "TLSv1.3"] | None: ...
    @property
    def cipher(self) -> str | None: ...
    @property
    def resumed(self) -> bool: ...
    @property
    def peer_certificates(self) -> list[bytes]:
        """The server's certificate chain, leaf first, DER."""

# --------------------------------------------------------------------------------------------
# Bounces (rust/bounce, rust/python/bounce.rs)
# --------------------------------------------------------------------------------------------

@final
class BounceRecipient:
    """What a report says about one recipient."""

    @property
    def address(self) -> str | None:
        """Final-Recipient (DSN), Original-Rcpt-To (complaint) or the address in a bounce's
        text; None when the report names none."""
    @property
    def original_recipient(self) -> str | None:
        """Original-Recipient (the ORCPT the sender gave)."""
    @property
    def action(self) -> str | None:
        """ "failed", "delayed", "delivered", "relayed" or "expanded" (lower-cased)."""
    @property
    def status(self) -> str | None:
        """RFC 3463 status such as "5.1.1"."""
    @property
    def reply_code(self) -> int | None:
        """The SMTP reply code in the diagnostic, if any."""
    @property
    def diagnostic(self) -> str | None:
        """Diagnostic-Code without its type, or the bounce text's words about it."""
    @property
    def diagnostic_type(self) -> str | None:
        """The Diagnostic-Code type: "smtp", "x-postfix"..."""
    @property
    def remote_mta(self) -> str | None: ...
    @property
    def last_attempt_date(self) -> str | None: ...
    @property
    def will_retry_until(self) -> str | None: ...
    @property
    def category(self) -> str:
        """bad_mailbox, inactive_mailbox, bad_domain, mailbox_full, message_too_large,
        spam_block, content_rejected, policy, rate_limited, dns_failure, relay_denied,
        bad_sender, network, expired, transient, complaint, delivered or other."""
    @property
    def permanent(self) -> bool:
        """A hard failure: the recipient will keep refusing this mail (soft: full mailbox,
        rate limits, DNS/network trouble, delays, expiry)."""

@final
class FeedbackReport:
    """The fields of an RFC 5965 message/feedback-report part."""

    @property
    def feedback_type(self) -> str:
        """abuse, fraud, virus, other, not-spam, auth-failure... (lower-cased)."""
    @property
    def user_agent(self) -> str | None: ...
    @property
    def version(self) -> str | None: ...
    @property
    def original_mail_from(self) -> str | None: ...
    @property
    def original_rcpt_to(self) -> tuple[str, ...]: ...
    @property
    def arrival_date(self) -> str | None: ...
    @property
    def reporting_mta(self) -> str | None: ...
    @property
    def source_ip(self) -> str | None: ...
    @property
    def reported_domain(self) -> tuple[str, ...]: ...
    @property
    def reported_uri(self) -> tuple[str, ...]: ...
    @property
    def authentication_results(self) -> str | None: ...
    @property
    def original_envelope_id(self) -> str | None: ...
    @property
    def incidents(self) -> int | None: ...

@final
class BounceReport:
    """Everything parse_bounce found in one message."""

    @property
    def kind(self) -> str:
        """ "dsn", "arf", "bounce", "auto_reply" or "unknown"."""
    @property
    def subject(self) -> str | None:
        """The report's own Subject."""
    @property
    def report_from(self) -> str | None:
        """The report's own From address."""
    @property
    def reporting_mta(self) -> str | None: ...
    @property
    def envelope_id(self) -> str | None:
        """Original-Envelope-Id (the ENVID given at MAIL FROM)."""
    @property
    def arrival_date(self) -> str | None: ...
    @property
    def original_sender(self) -> str | None:
        """The original envelope sender where the report names it (X-Postfix-Sender,
        Original-Mail-From)."""
    @property
    def recipients(self) -> tuple[BounceRecipient, ...]: ...
    @property
    def original_message_id(self) -> str | None:
        """Message-ID of the returned original, without angle brackets."""
    @property
    def original_from(self) -> str | None: ...
    @property
    def original_to(self) -> tuple[str, ...]: ...
    @property
    def original_subject(self) -> str | None: ...
    @property
    def original_return_path(self) -> str | None: ...
    @property
    def feedback(self) -> FeedbackReport | None:
        """The feedback report (kind "arf" only)."""
    @property
    def feedback_type(self) -> str | None:
        """Shortcut for feedback.feedback_type."""
    @property
    def verp_status(self) -> str | None:
        """None without a verp_secret or without any candidate address; else "valid",
        "forged" (a token whose signature fails) or "not_verp"."""
    @property
    def verp_address(self) -> str | None:
        """The address whose token decided verp_status (valid or forged)."""
    @property
    def verp_job(self) -> int | None: ...
    @property
    def verp_recipient(self) -> int | None: ...

def parse_bounce(
    raw: bytes | bytearray,
    verp_secret: bytes | None = None,
    *,
    envelope_recipient: str | None = None,
) -> BounceReport:
    """Parse an inbound DSN (RFC 3464), complaint (RFC 5965), non-standard bounce or
    auto-reply. Never fails on content (kind "unknown" when nothing is recognisable);
    raises InvalidMessage if ``raw`` is not bytes. With ``verp_secret``, VERP tokens in
    ``envelope_recipient``, the delivery headers, the original sender and Return-Path are
    checked."""

def make_verp_address(
    secret: bytes, local_prefix: str, domain: str, job: int, recipient: int
) -> str:
    """``local_prefix+TOKEN@domain``: TOKEN is lower-case base32 of job and recipient (u64
    each) with an 80-bit HMAC-SHA256 tag. Raises InvalidMessage (field "verp") for an empty
    secret, a bad prefix or domain, or a local part over 64 octets."""

def parse_verp_address(secret: bytes, address: str) -> tuple[int, int] | None:
    """``(job, recipient)`` of a VERP address made with ``secret`` (case-insensitive);
    None if it is forged or not VERP (see verp_address_status)."""

def verp_address_status(secret: bytes, address: str) -> str:
    """ "valid", "forged" (a token of the right shape whose signature fails) or
    "not_verp"."""
