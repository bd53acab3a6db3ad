//! The TLS layer's one error type: a [`TlsErrorKind`] the engine maps to a `fastsmtp`
//! exception (and a result status), plus a human-readable message.
//!
//! rustls reports dozens of error variants; callers need only to know *who* is to blame
//! and whether retrying could help, so they are folded here into a few kinds.

use std::fmt;

use rustls::{AlertDescription, CertificateError, Error as RustlsError};

/// What went wrong, coarse enough for a caller to act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsErrorKind {
    /// The server's certificate expired (or its validity has not begun).
    CertificateExpired,
    /// The server's certificate is valid but not for the name we connected to.
    CertificateWrongName,
    /// The server's certificate chain does not lead to a trusted CA.
    CertificateUnknownCa,
    /// Any other certificate problem (bad encoding, wrong purpose, revoked, bad signature).
    CertificateInvalid,
    /// No common protocol version, cipher suite or key exchange with the server.
    HandshakeFailure,
    /// The server broke the TLS protocol: a malformed, undecryptable, oversized or
    /// unexpected record (garbage on the wire, a renegotiation attempt, bytes in cleartext).
    PeerMisbehaved,
    /// The server sent a fatal alert (for example `handshake_failure`, or
    /// `certificate_required` when it wants a client certificate we did not give).
    AlertReceived,
    /// The connection ended before the handshake finished.
    ClosedDuringHandshake,
    /// The connection ended in the middle of a TLS record.
    Truncated,
    /// Bad configuration: an unreadable CA or client-certificate file, an invalid server
    /// name. Raised before any byte goes on the wire.
    Config,
    /// The caller used the session wrongly (e.g. sent data after `close()`).
    Usage,
}

impl TlsErrorKind {
    /// A stable snake_case name (the Python exception's `kind` attribute).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CertificateExpired => "certificate_expired",
            Self::CertificateWrongName => "certificate_wrong_name",
            Self::CertificateUnknownCa => "certificate_unknown_ca",
            Self::CertificateInvalid => "certificate_invalid",
            Self::HandshakeFailure => "handshake_failure",
            Self::PeerMisbehaved => "peer_misbehaved",
            Self::AlertReceived => "alert_received",
            Self::ClosedDuringHandshake => "closed_during_handshake",
            Self::Truncated => "truncated",
            Self::Config => "config",
            Self::Usage => "usage",
        }
    }

    /// True for the certificate-verification kinds (Python: `ssl.SSLCertVerificationError`).
    pub fn is_certificate(self) -> bool {
        matches!(
            self,
            Self::CertificateExpired
                | Self::CertificateWrongName
                | Self::CertificateUnknownCa
                | Self::CertificateInvalid
        )
    }
}

/// A TLS failure: its kind, a message, and the alert if the server sent one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsError {
    /// What went wrong.
    pub kind: TlsErrorKind,
    /// Human-readable detail (rustls's own wording where it has one).
    pub message: String,
    /// The alert the server sent, for [`TlsErrorKind::AlertReceived`].
    pub alert: Option<String>,
}

impl TlsError {
    /// An error of `kind` with `message`.
    pub fn new(kind: TlsErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            alert: None,
        }
    }

    /// A configuration error (raised while building a config or a session).
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(TlsErrorKind::Config, message)
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TlsError {}

fn alert_name(alert: AlertDescription) -> String {
    // rustls's Debug names are the RFC's in CamelCase ("HandshakeFailure"); the RFC
    // spelling (handshake_failure) is what OpenSSL and Python print, so use that.
    let camel = format!("{alert:?}");
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn certificate_kind(e: &CertificateError) -> (TlsErrorKind, &'static str) {
    use CertificateError as C;
    match e {
        C::Expired | C::ExpiredContext { .. } => {
            (TlsErrorKind::CertificateExpired, "certificate has expired")
        }
        C::NotValidYet | C::NotValidYetContext { .. } => (
            TlsErrorKind::CertificateExpired,
            "certificate is not yet valid",
        ),
        C::NotValidForName | C::NotValidForNameContext { .. } => (
            TlsErrorKind::CertificateWrongName,
            "certificate is not valid for the server name",
        ),
        C::UnknownIssuer => (
            TlsErrorKind::CertificateUnknownCa,
            "certificate is not signed by a trusted CA",
        ),
        _ => (TlsErrorKind::CertificateInvalid, "certificate is invalid"),
    }
}

impl From<RustlsError> for TlsError {
    fn from(e: RustlsError) -> Self {
        use RustlsError as E;
        let detail = e.to_string();
        let (kind, what) = match &e {
            E::InvalidCertificate(c) => certificate_kind(c),
            E::NoCertificatesPresented => (
                TlsErrorKind::CertificateInvalid,
                "the server presented no certificate",
            ),
            E::PeerIncompatible(_) | E::NoApplicationProtocol => (
                TlsErrorKind::HandshakeFailure,
                "no TLS version or cipher suite in common with the server",
            ),
            E::AlertReceived(alert) => {
                let name = alert_name(*alert);
                return Self {
                    kind: TlsErrorKind::AlertReceived,
                    message: format!("the server sent a fatal TLS alert: {name}"),
                    alert: Some(name),
                };
            }
            E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. }
            | E::InvalidMessage(_)
            | E::DecryptError
            | E::PeerMisbehaved(_)
            | E::PeerSentOversizedRecord => (
                TlsErrorKind::PeerMisbehaved,
                "the server broke the TLS protocol",
            ),
            _ => (TlsErrorKind::HandshakeFailure, "TLS failure"),
        };
        Self::new(kind, format!("{what} ({detail})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_names_follow_the_rfc_spelling() {
        assert_eq!(
            alert_name(AlertDescription::HandshakeFailure),
            "handshake_failure"
        );
        assert_eq!(
            alert_name(AlertDescription::CertificateRequired),
            "certificate_required"
        );
        assert_eq!(alert_name(AlertDescription::BadRecordMac), "bad_record_mac");
    }

    #[test]
    fn certificate_errors_fold_into_kinds() {
        let kind = |c| TlsError::from(RustlsError::InvalidCertificate(c)).kind;
        assert_eq!(
            kind(CertificateError::Expired),
            TlsErrorKind::CertificateExpired
        );
        assert_eq!(
            kind(CertificateError::NotValidYet),
            TlsErrorKind::CertificateExpired
        );
        assert_eq!(
            kind(CertificateError::NotValidForName),
            TlsErrorKind::CertificateWrongName
        );
        assert_eq!(
            kind(CertificateError::UnknownIssuer),
            TlsErrorKind::CertificateUnknownCa
        );
        assert_eq!(
            kind(CertificateError::BadSignature),
            TlsErrorKind::CertificateInvalid
        );
        assert!(TlsErrorKind::CertificateUnknownCa.is_certificate());
        assert!(!TlsErrorKind::PeerMisbehaved.is_certificate());
    }

    #[test]
    fn a_received_alert_keeps_its_name() {
        let e = TlsError::from(RustlsError::AlertReceived(
            AlertDescription::CertificateRequired,
        ));
        assert_eq!(e.kind, TlsErrorKind::AlertReceived);
        assert_eq!(e.alert.as_deref(), Some("certificate_required"));
        assert!(e.message.contains("certificate_required"));
    }
}
