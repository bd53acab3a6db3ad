//! Errors of the protocol core.
//!
//! One enum, converted to the Python exception classes of `fastsmtp._errors` only at the
//! binding edge: a [`Error::Local`] is the caller misusing the connection, a
//! [`Error::Remote`] is the server breaking the protocol, and the two message errors are
//! raised by `submit` before anything is queued.

use std::fmt;

/// Everything that can go wrong in the protocol core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The caller used the connection wrongly (wrong state, bad argument).
    Local(String),
    /// The server broke the protocol (malformed, oversized or unexpected replies).
    Remote(String),
    /// A message or address cannot be sent as given; `field` names the culprit.
    InvalidMessage {
        /// What is wrong.
        message: String,
        /// The offending field (`"sender"`, `"recipients[2]"`, `"body"`), when one is to blame.
        field: Option<String>,
    },
    /// The message needs SMTPUTF8 and the server does not offer it.
    Smtputf8Required(String),
}

impl Error {
    /// A [`Error::Local`] from anything printable.
    pub fn local(message: impl Into<String>) -> Self {
        Error::Local(message.into())
    }

    /// A [`Error::Remote`] from anything printable.
    pub fn remote(message: impl Into<String>) -> Self {
        Error::Remote(message.into())
    }

    /// An [`Error::InvalidMessage`] blaming `field`.
    pub fn invalid(message: impl Into<String>, field: impl Into<String>) -> Self {
        Error::InvalidMessage {
            message: message.into(),
            field: Some(field.into()),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Local(m) | Error::Remote(m) | Error::Smtputf8Required(m) => f.write_str(m),
            Error::InvalidMessage {
                message,
                field: Some(field),
            } => {
                write!(f, "{field}: {message}")
            }
            Error::InvalidMessage {
                message,
                field: None,
            } => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

/// Result alias of the protocol core.
pub type Result<T> = std::result::Result<T, Error>;
