//! The input model: what a message is made of, as plain Rust data.
//!
//! It mirrors the dict made by Python's `Message.to_spec()` field for field, so the Python
//! edge only converts types; every rule is checked in [`crate::mime::builder`].

use super::date::DateSpec;
use super::shared::SharedBytes;

/// One attachment or inline part.
#[derive(Debug, Clone, Default)]
pub struct AttachmentSpec {
    /// The file name shown to the reader (RFC 2231-encoded when not plain ASCII).
    pub filename: String,
    /// The raw content; shared, so a batch holds one copy.
    pub content: SharedBytes,
    /// MIME type, `type/subtype`, optionally followed by `; parameters`.
    pub content_type: String,
    /// An inline part (an image the HTML shows via `cid:`), placed in multipart/related.
    pub inline: bool,
    /// The Content-ID (without angle brackets; they are added).
    pub content_id: Option<String>,
}

/// One message, before validation and assembly.
#[derive(Debug, Clone, Default)]
pub struct MessageSpec {
    /// The From mailbox, e.g. `Ann <ann@example.com>`. Required.
    pub sender: String,
    /// To mailboxes (header and envelope).
    pub to: Vec<String>,
    /// Cc mailboxes (header and envelope).
    pub cc: Vec<String>,
    /// Bcc mailboxes: envelope only, never in the headers.
    pub bcc: Vec<String>,
    /// Reply-To mailboxes.
    pub reply_to: Vec<String>,
    /// The Subject (unstructured text; RFC 2047-encoded when needed).
    pub subject: String,
    /// The text/plain body.
    pub text: Option<String>,
    /// The text/html body.
    pub html: Option<String>,
    /// Attachments and inline parts, in order.
    pub attachments: Vec<AttachmentSpec>,
    /// Extra headers `(name, value)`, in order. Structural headers are refused (see
    /// [`crate::mime::header::check_extra_header_name`]).
    pub headers: Vec<(String, String)>,
    /// The MAIL FROM return path: `None` means the sender's address, `Some("")` the null
    /// reverse-path `<>`.
    pub envelope_sender: Option<String>,
    /// The Message-ID (with or without angle brackets); generated when `None`.
    pub message_id: Option<String>,
    /// The date: an RFC 5322 date-time text (checked, written in canonical form) or an
    /// instant and UTC offset (the core has no clock: "now" is the caller's). No Date
    /// header is written when `None` (the submission server adds one).
    pub date: Option<DateSpec>,
}
