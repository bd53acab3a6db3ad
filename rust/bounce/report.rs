//! What [`super::parse_bounce`] returns: plain data, no behaviour.

use super::classify::Category;
use super::verp::{VerpError, VerpToken};
use crate::protocol::EnhancedCode;

/// What kind of message was parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ReportKind {
    /// An RFC 3464 delivery status notification (`multipart/report;
    /// report-type=delivery-status`, or a `message/delivery-status` part).
    Dsn,
    /// An RFC 5965 feedback report (a complaint from a mailbox provider).
    Arf,
    /// A non-standard bounce: failure text in a plain message from a mailer daemon.
    Bounce,
    /// An automatic reply (RFC 3834), e.g. out of office: not a failure.
    AutoReply,
    /// Nothing recognisable (also: malformed input).
    #[default]
    Unknown,
}

impl ReportKind {
    /// The name used in Python and in the test corpus.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Dsn => "dsn",
            ReportKind::Arf => "arf",
            ReportKind::Bounce => "bounce",
            ReportKind::AutoReply => "auto_reply",
            ReportKind::Unknown => "unknown",
        }
    }
}

/// What the report says about one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientReport {
    /// The address it is about: `Final-Recipient` of a DSN, `Original-Rcpt-To` of a
    /// complaint, the address found in a bounce's text. None when the report names none
    /// (complaints are often redacted).
    pub address: Option<String>,
    /// `Original-Recipient` (the address as the sender gave it, from ORCPT).
    pub original_recipient: Option<String>,
    /// `Action`, lower-cased: failed, delayed, delivered, relayed or expanded.
    pub action: Option<String>,
    /// `Status` (or the enhanced code found in the diagnostic).
    pub status: Option<EnhancedCode>,
    /// The SMTP reply code in the diagnostic, if any.
    pub reply_code: Option<u16>,
    /// The diagnostic text (`Diagnostic-Code` without its type, or the bounce's words).
    pub diagnostic: Option<String>,
    /// The `Diagnostic-Code` type, lower-cased (`smtp`, `x-postfix`).
    pub diagnostic_type: Option<String>,
    /// `Remote-MTA` without its type.
    pub remote_mta: Option<String>,
    /// `Last-Attempt-Date` as written.
    pub last_attempt_date: Option<String>,
    /// `Will-Retry-Until` as written.
    pub will_retry_until: Option<String>,
    /// What kind of failure (or success) this is.
    pub category: Category,
    /// A hard failure: do not expect this recipient to accept the same mail later.
    pub permanent: bool,
}

/// Headers of the original message a report returns (whole or headers only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginalMessage {
    /// `Message-ID` without angle brackets.
    pub message_id: Option<String>,
    /// The first `From` address.
    pub from: Option<String>,
    /// The `To` addresses.
    pub to: Vec<String>,
    /// `Subject`, RFC 2047 decoded.
    pub subject: Option<String>,
    /// `Return-Path` address (the envelope sender, when the returned copy carries one).
    pub return_path: Option<String>,
}

impl OriginalMessage {
    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        *self == OriginalMessage::default()
    }
}

/// The fields of an RFC 5965 `message/feedback-report` part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedbackReport {
    /// `Feedback-Type`, lower-cased: abuse, fraud, virus, other, not-spam, auth-failure...
    pub feedback_type: String,
    /// `User-Agent` of the reporting software.
    pub user_agent: Option<String>,
    /// `Version` (1 per RFC 5965; older reports say 0.1).
    pub version: Option<String>,
    /// `Original-Mail-From`: the complained-about message's envelope sender.
    pub original_mail_from: Option<String>,
    /// `Original-Rcpt-To`: its envelope recipients (the complainers), when not redacted.
    pub original_rcpt_to: Vec<String>,
    /// `Arrival-Date` (or the older `Received-Date`).
    pub arrival_date: Option<String>,
    /// `Reporting-MTA` without its type.
    pub reporting_mta: Option<String>,
    /// `Source-IP`.
    pub source_ip: Option<String>,
    /// `Reported-Domain` values.
    pub reported_domain: Vec<String>,
    /// `Reported-URI` values.
    pub reported_uri: Vec<String>,
    /// `Authentication-Results` as written.
    pub authentication_results: Option<String>,
    /// `Original-Envelope-Id`.
    pub original_envelope_id: Option<String>,
    /// `Incidents`: how many times this was seen (aggregated reports).
    pub incidents: Option<u64>,
}

/// Everything [`super::parse_bounce`] found in one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BounceReport {
    /// What the message is.
    pub kind: ReportKind,
    /// The report's own `Subject`.
    pub subject: Option<String>,
    /// The report's own `From` address.
    pub from: Option<String>,
    /// `Reporting-MTA` (DSN) without its type.
    pub reporting_mta: Option<String>,
    /// `Original-Envelope-Id` (the ENVID the sender gave, RFC 3461 section 4.4).
    pub envelope_id: Option<String>,
    /// `Arrival-Date` (DSN per-message field).
    pub arrival_date: Option<String>,
    /// The original envelope sender, where the report names it (Postfix's
    /// `X-Postfix-Sender`, ARF's `Original-Mail-From`).
    pub original_sender: Option<String>,
    /// One entry per recipient the report is about.
    pub recipients: Vec<RecipientReport>,
    /// The returned original message's headers.
    pub original: OriginalMessage,
    /// The feedback report fields (ARF only).
    pub feedback: Option<FeedbackReport>,
    /// The address whose VERP token decided [`BounceReport::verp`].
    pub verp_address: Option<String>,
    /// The VERP outcome: None without a secret or without any candidate address,
    /// `Ok` for a valid token, `Err(Forged)` if only forged tokens were found,
    /// `Err(NotVerp)` if the candidate addresses hold no token.
    pub verp: Option<Result<VerpToken, VerpError>>,
}
