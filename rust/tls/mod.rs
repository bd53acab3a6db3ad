//! Sans-IO TLS client sessions over rustls, for SMTP's implicit TLS and STARTTLS.
//!
//! Like [`crate::protocol`], nothing here touches a socket, clock or thread: the caller
//! feeds ciphertext read from the socket and writes out the ciphertext it is handed.
//! * [`config`]: [`TlsConfig`], built once per engine and shared (trust store, verification,
//!   versions, client certificate, the session-resumption cache);
//! * [`session`]: [`TlsSession`], one connection's handshake and records;
//! * [`record`]: record-boundary tracking, so a stream cut mid-record is reported;
//! * [`error`]: [`TlsError`] with a [`TlsErrorKind`] the Python edge maps to exceptions.

pub mod config;
pub mod error;
mod record;
pub mod session;

pub use config::{
    certificates_from_der, certificates_from_pem, client_identity_from_pem, ClientIdentity,
    TlsConfig, TlsOptions, TlsVersion, Trust, Verify,
};
pub use error::{TlsError, TlsErrorKind};
pub use session::TlsSession;

#[cfg(test)]
mod session_tests;
