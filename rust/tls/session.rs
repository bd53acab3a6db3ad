//! [`TlsSession`]: one TLS client connection as a sans-IO object over rustls.
//!
//! The caller owns the socket and makes one call per event:
//! * a read from the socket: [`TlsSession::read_tls`] decrypts it and appends the plaintext
//!   to the caller's buffer (the handshake advances inside the same call);
//! * plaintext to send: [`TlsSession::write_plain`] only queues it; [`TlsSession::take_tls`]
//!   seals everything queued since the last call into as few records as possible (one per
//!   16 KiB) and appends them, with any handshake or alert records, to one output buffer.
//!   So a read's worth of replies, each answered with a few command bytes, costs one write
//!   of one record, not one record per command;
//! * end of file: [`TlsSession::eof`] says whether the stream ended cleanly.
//!
//! For STARTTLS (RFC 3207 section 4) the SMTP core exchanges `STARTTLS`/`220` in plaintext
//! and then the caller creates a session; "the client MUST discard any knowledge obtained
//! from the server" before TLS, and any plaintext byte the server sent after the 220 is
//! not TLS: the caller must drop it, never feed it here (fed here, it is a
//! [`TlsErrorKind::PeerMisbehaved`] error, which is also safe).
//!
//! Errors are sticky: after one, every call returns it again; [`TlsSession::take_tls`] still
//! hands out the alert rustls queued, so the caller can write it before closing.

use std::io::{BufRead, Write};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConnection, HandshakeKind, ProtocolVersion};

use super::config::{TlsConfig, TlsVersion};
use super::error::{TlsError, TlsErrorKind};
use super::record::RecordBoundary;

/// A TLS client session; see the module docs for the call pattern.
pub struct TlsSession {
    conn: ClientConnection,
    /// Plaintext queued by `write_plain`, sealed by the next `take_tls`.
    pending: Vec<u8>,
    boundary: RecordBoundary,
    failed: Option<TlsError>,
    closed: bool,
    peer_closed: bool,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession")
            .field("handshaking", &self.conn.is_handshaking())
            .field("pending", &self.pending.len())
            .field("failed", &self.failed)
            .field("closed", &self.closed)
            .field("peer_closed", &self.peer_closed)
            .finish()
    }
}

/// The name to verify the certificate against and to send as SNI: a DNS name (IDNA
/// A-label form, as Python's `ssl` sends it) or an IP address (no SNI, per RFC 6066 3).
pub fn server_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    if let Ok(parsed) = ServerName::try_from(bare) {
        return Ok(parsed.to_owned());
    }
    let ascii = idna::domain_to_ascii(bare)
        .map_err(|_| TlsError::config(format!("invalid TLS server name: {name:?}")))?;
    ServerName::try_from(ascii)
        .map_err(|_| TlsError::config(format!("invalid TLS server name: {name:?}")))
}

impl TlsSession {
    /// Start a client session to `server_name` (host name or IP address); the first
    /// [`take_tls`](Self::take_tls) returns the ClientHello.
    pub fn new(config: &TlsConfig, server_name_: &str) -> Result<Self, TlsError> {
        let name = server_name(server_name_)?;
        let mut conn = ClientConnection::new(config.client.clone(), name)
            .map_err(|e| TlsError::config(format!("cannot start a TLS session: {e}")))?;
        // The engine bounds what it writes (its windows); rustls's own 64 KiB cap would only
        // make a large write come back half-sealed.
        conn.set_buffer_limit(None);
        Ok(Self {
            conn,
            pending: Vec::new(),
            boundary: RecordBoundary::default(),
            failed: None,
            closed: false,
            peer_closed: false,
        })
    }

    fn fail(&mut self, error: TlsError) -> TlsError {
        self.failed = Some(error.clone());
        error
    }

    fn check(&self) -> Result<(), TlsError> {
        match &self.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Feed ciphertext read from the socket; the plaintext it carries is appended to
    /// `plain` (on an error, the plaintext of the good records before the bad one). Handshake messages, session tickets and alerts are consumed here. Bytes after
    /// the server's close_notify are ignored (RFC 8446 6.1: "Any data received after a
    /// closure alert has been received MUST be ignored").
    pub fn read_tls(&mut self, ciphertext: &[u8], plain: &mut Vec<u8>) -> Result<(), TlsError> {
        self.check()?;
        self.boundary.feed(ciphertext);
        let mut rest = ciphertext;
        while !rest.is_empty() && !self.peer_closed {
            match self.conn.read_tls(&mut rest) {
                Ok(0) => break, // close_notify seen: nothing more is read
                Ok(_) => {}
                Err(e) => {
                    // Only a handshake message over rustls's 64 KiB cap gets here.
                    let e = TlsError::new(
                        TlsErrorKind::PeerMisbehaved,
                        format!("the server broke the TLS protocol ({e})"),
                    );
                    return Err(self.fail(e));
                }
            }
            let state = match self.conn.process_new_packets() {
                Ok(state) => state,
                Err(e) => {
                    // Records before the bad one were good: hand their plaintext out too.
                    self.drain_plaintext(plain);
                    return Err(self.fail(e.into()));
                }
            };
            if state.plaintext_bytes_to_read() > 0 {
                self.drain_plaintext(plain);
            }
            if state.peer_has_closed() {
                self.peer_closed = true;
            }
        }
        Ok(())
    }

    fn drain_plaintext(&mut self, plain: &mut Vec<u8>) {
        let mut reader = self.conn.reader();
        // fill_buf hands out rustls's buffered chunks in place: one copy, no zeroing.
        while let Ok(chunk) = reader.fill_buf() {
            if chunk.is_empty() {
                break;
            }
            let n = chunk.len();
            plain.extend_from_slice(chunk);
            reader.consume(n);
        }
    }

    /// Queue plaintext to send; [`take_tls`](Self::take_tls) seals it. Data queued before
    /// the handshake finishes waits for it.
    pub fn write_plain(&mut self, data: &[u8]) -> Result<(), TlsError> {
        self.check()?;
        if self.closed {
            return Err(TlsError::new(
                TlsErrorKind::Usage,
                "cannot send data after close()",
            ));
        }
        self.pending.extend_from_slice(data);
        Ok(())
    }

    fn seal_pending(&mut self) {
        if self.pending.is_empty() || self.conn.is_handshaking() || self.failed.is_some() {
            return;
        }
        // One write of everything queued: rustls cuts it into records of at most 16 KiB
        // (and the buffer limit is off, so it takes all of it).
        if self.conn.writer().write_all(&self.pending).is_ok() {
            self.pending.clear();
        }
    }

    /// Append every TLS byte ready to go to the socket (handshake messages, sealed
    /// application data, alerts) to `out`; returns how many were appended.
    pub fn take_tls(&mut self, out: &mut Vec<u8>) -> usize {
        self.seal_pending();
        let start = out.len();
        while self.conn.wants_write() {
            // Writing into a Vec cannot fail.
            if self.conn.write_tls(out).is_err() {
                break;
            }
        }
        out.len() - start
    }

    /// True if [`take_tls`](Self::take_tls) would return bytes now.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
            || (!self.pending.is_empty() && !self.conn.is_handshaking() && self.failed.is_none())
    }

    /// True until the handshake has completed.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Plaintext queued but not yet sealed (waiting for the handshake or `take_tls`).
    pub fn pending_plaintext(&self) -> usize {
        self.pending.len()
    }

    /// Seal what is queued, then queue a close_notify alert (RFC 8446 6.1); the next
    /// [`take_tls`](Self::take_tls) returns it. Later `write_plain` calls fail.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.seal_pending();
        self.closed = true;
        if self.failed.is_none() {
            self.conn.send_close_notify();
        }
    }

    /// True once the server sent close_notify.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// The socket reached end of file. `Ok(true)`: the server closed with close_notify;
    /// `Ok(false)`: it just closed the TCP connection after the handshake (common for SMTP
    /// servers after QUIT; whether data is missing is the SMTP layer's call). An error if
    /// the handshake was unfinished or a record was cut off.
    pub fn eof(&mut self) -> Result<bool, TlsError> {
        self.check()?;
        if self.peer_closed {
            return Ok(true);
        }
        if self.conn.is_handshaking() {
            let e = TlsError::new(
                TlsErrorKind::ClosedDuringHandshake,
                "the connection closed during the TLS handshake",
            );
            return Err(self.fail(e));
        }
        if self.boundary.inside_record() {
            let e = TlsError::new(
                TlsErrorKind::Truncated,
                "the connection closed in the middle of a TLS record",
            );
            return Err(self.fail(e));
        }
        Ok(false)
    }

    /// The error that ended this session, if any.
    pub fn error(&self) -> Option<&TlsError> {
        self.failed.as_ref()
    }

    /// The negotiated version, once the handshake got that far.
    pub fn protocol_version(&self) -> Option<TlsVersion> {
        match self.conn.protocol_version()? {
            ProtocolVersion::TLSv1_3 => Some(TlsVersion::Tls13),
            ProtocolVersion::TLSv1_2 => Some(TlsVersion::Tls12),
            _ => None,
        }
    }

    /// The negotiated cipher suite's IANA name (e.g. `TLS13_AES_256_GCM_SHA384`).
    pub fn cipher_suite(&self) -> Option<&'static str> {
        self.conn.negotiated_cipher_suite()?.suite().as_str()
    }

    /// True if the handshake resumed an earlier session (ticket or session ID) instead of
    /// a full key exchange and certificate check.
    pub fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(HandshakeKind::Resumed)
    }

    /// The server's certificate chain (leaf first), DER. On a resumed session this is the
    /// chain verified by the original handshake.
    pub fn peer_certificates(&self) -> &[CertificateDer<'static>] {
        self.conn.peer_certificates().unwrap_or(&[])
    }
}

impl TlsVersion {
    /// Python's spelling: `TLSv1.2`, `TLSv1.3`.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        }
    }
}
