//! MIME assembly and per-recipient personalization.
//!
//! This module turns a [`MessageSpec`] (plain Rust data, no Python) into a [`BuiltMessage`]:
//! RFC 5322 / MIME bytes with CRLF line endings, no line over 998 octets, ready for the
//! protocol layer. [`Template`] compiles a spec once per batch and renders one message per
//! recipient, reusing every part that does not depend on the recipient as shared bytes.
//!
//! Modules, one job each:
//! * [`error`]: [`MimeError`], the one error type, naming the offending field.
//! * [`chars`]: which characters may appear in header text, file names and addresses.
//! * [`address`]: RFC 5321 / 5322 mailbox parsing and validation, IDNA.
//! * [`header`]: header field writing: folding, RFC 2047 encoded-words, RFC 2231 parameters.
//! * [`encoding`]: CRLF normalisation, 7bit / quoted-printable / base64 transfer encodings.
//! * [`date`]: the Date header: an RFC 5322 date-time checked, or an instant formatted.
//! * [`content_type`]: an attachment's Content-Type and its parameters, parsed (RFC 2045).
//! * [`builder`]: the MIME tree (text, alternative, related, mixed), boundaries, assembly.
//! * [`message`]: [`BuiltMessage`], the assembled message as shared and owned chunks.
//! * [`shared`]: [`shared::SharedBytes`], bytes shared without copying.
//! * [`segments`]: templates of only text and `{{ name }}`, rendered without the VM.
//! * [`template`]: minijinja templates compiled once per batch, rendered per recipient.
//! * [`dkim`]: DKIM signatures over the assembled bytes (relaxed/relaxed, RSA or Ed25519).
//!
//! The core has no clock and no I/O: the Date comes from the spec (a text, or an instant the
//! caller read from its clock), randomness (boundaries, Message-IDs) from a per-process
//! seed and a counter.

pub mod address;
pub mod builder;
pub mod chars;
pub mod content_type;
pub mod date;
pub mod dkim;
pub mod encoding;
pub mod error;
pub mod header;
pub mod message;
mod random;
pub mod segments;
pub mod shared;
pub mod spec;
pub mod template;

pub use builder::build_message;
pub use date::DateSpec;
pub use dkim::DkimSigner;
pub use error::{MimeError, MimeErrorKind};
pub use message::BuiltMessage;
pub use spec::{AttachmentSpec, MessageSpec};
pub use template::{Recipient, Template};
