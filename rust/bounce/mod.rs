//! Inbound reports about sent mail: bounces, delivery status notifications, complaints and
//! automatic replies, parsed into one [`BounceReport`] that says which recipients failed,
//! how ([`Category`], hard or soft) and which sent message and recipient it is about (VERP
//! token, ENVID, original Message-ID).
//!
//! [`parse_bounce`] never panics and never fails: any input gives a report, of kind
//! [`ReportKind::Unknown`] when nothing is recognisable. In order, it recognises:
//! 1. an RFC 5965 feedback report (a `message/feedback-report` part): [`ReportKind::Arf`];
//! 2. an RFC 3464 DSN (a `message/delivery-status` or `message/global-delivery-status`
//!    part with at least one recipient): [`ReportKind::Dsn`];
//! 3. a non-standard bounce (mailer-daemon headers or failure text, recipients found in
//!    the text): [`ReportKind::Bounce`];
//! 4. an automatic reply (RFC 3834): [`ReportKind::AutoReply`].
//!
//! Modules, one job each:
//! * [`mail`]: the MIME reader (mail-parser) behind a small adapter;
//! * [`fields`]: the `Name: value` groups of DSN and ARF parts;
//! * [`dsn`], [`arf`]: RFC 3464 and RFC 5965 fields into the report;
//! * [`plain`]: heuristics for non-standard bounce texts;
//! * [`autoreply`]: RFC 3834 and older auto-reply markers;
//! * [`original`]: the returned original message's headers;
//! * [`classify`]: diagnostic texts and RFC 3463 codes into categories, hard or soft;
//! * [`verp`]: signed per-recipient envelope senders;
//! * [`report`]: the result types.

pub mod arf;
pub mod autoreply;
pub mod classify;
pub mod dsn;
pub mod fields;
pub mod mail;
pub mod original;
pub mod plain;
pub mod report;
pub mod verp;

#[cfg(test)]
mod corpus_tests;
#[cfg(test)]
mod fuzz_tests;

pub use classify::{classify, Category, Classification};
pub use report::{BounceReport, FeedbackReport, OriginalMessage, RecipientReport, ReportKind};
pub use verp::{make_verp_address, parse_verp_address, VerpError, VerpToken};

use mail_parser::{Message, PartType};

/// Largest input read: anything beyond is cut off (the parts that matter come first; a
/// 50 MB attachment returned with a bounce is not worth parsing).
pub const MAX_INPUT: usize = 4 << 20;

/// Options of [`parse_bounce`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ParseOptions<'a> {
    /// The VERP secret; without it no token is checked.
    pub verp_secret: Option<&'a [u8]>,
    /// The envelope recipient the report was delivered to (the bounce address), when the
    /// caller knows it (an SMTP/LMTP intake does): the first place to look for a token.
    pub envelope_recipient: Option<&'a str>,
}

/// Parse one inbound message. See the module documentation.
pub fn parse_bounce(raw: &[u8], options: &ParseOptions<'_>) -> BounceReport {
    let raw = &raw[..raw.len().min(MAX_INPUT)];
    let mut report = BounceReport::default();
    let mut delivered_to = Vec::new();
    if let Some(msg) = mail::parse(raw) {
        read_message(&msg, &mut report);
        if options.verp_secret.is_some() {
            delivered_to = delivery_addresses(&msg);
        }
    }
    if let Some(secret) = options.verp_secret {
        resolve_verp(
            &mut report,
            secret,
            options.envelope_recipient,
            delivered_to,
        );
    }
    report
}

fn read_message(msg: &Message<'_>, report: &mut BounceReport) {
    report.subject = msg.subject().map(mail::unfold).filter(|s| !s.is_empty());
    report.from = mail::first_address(msg.from());
    let parts = read_parts(msg, report);
    if parts.is_arf {
        report.kind = ReportKind::Arf;
        // Redacted complaints name no recipient: the returned copy's To is the complainer.
        if report.recipients.is_empty() {
            for to in report.original.to.clone() {
                report.recipients.push(complaint_from_original(to));
            }
        }
    } else if parts.dsn_recipients > 0 {
        report.kind = ReportKind::Dsn;
    } else {
        // No standard report part (or an empty one): heuristics on headers and text.
        let text = match parts.human_part {
            Some(i) => mail::part_text(&msg.parts[i]),
            None => msg.body_text(0).unwrap_or_default(),
        };
        read_plain(msg, &text, report);
    }
}

/// What the report parts of a message held.
struct Parts {
    dsn_recipients: usize,
    is_arf: bool,
    /// Index of the first text/plain part: the human-readable notice.
    human_part: Option<usize>,
}

/// Read the message's own parts into `report`: delivery-status and feedback-report fields,
/// and the returned original. Only this message's parts: a report inside a message/rfc822
/// part is the returned original, not a report about our mail.
fn read_parts(msg: &Message<'_>, report: &mut BounceReport) -> Parts {
    let mut parts = Parts {
        dsn_recipients: 0,
        is_arf: false,
        human_part: None,
    };
    for (index, part) in msg.parts.iter().enumerate() {
        let ctype = mail::content_type(part);
        match ctype.as_str() {
            "message/delivery-status" | "message/global-delivery-status" => {
                parts.dsn_recipients += dsn::read_delivery_status(&mail::part_text(part), report);
            }
            "message/feedback-report" => {
                parts.is_arf |= arf::read_feedback_report(&mail::part_text(part), report);
            }
            "text/rfc822-headers" | "message/global-headers" if report.original.is_empty() => {
                report.original = original::from_header_text(&mail::part_text(part));
            }
            _ => {}
        }
        match &part.body {
            PartType::Message(inner) if report.original.is_empty() => {
                report.original = original::from_message(inner);
            }
            PartType::Text(_) if parts.human_part.is_none() && ctype == "text/plain" => {
                parts.human_part = Some(index);
            }
            _ => {}
        }
    }
    parts
}

/// A message without report parts: a non-standard bounce, an auto-reply, or neither.
fn read_plain(msg: &Message<'_>, text: &str, report: &mut BounceReport) {
    if report.original.is_empty() {
        report.original = original::from_bounce_text(text);
    }
    let failed_header: Vec<String> = mail::raw_headers(msg, "X-Failed-Recipients")
        .flat_map(|v| v.split(','))
        .filter_map(fields::clean_address)
        .collect();
    let from_name = msg
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.name.as_deref());
    let bounce_headers = plain::bounce_headers(
        report.from.as_deref(),
        from_name,
        report.subject.as_deref(),
        !failed_header.is_empty(),
    ) || mail::content_type(msg.root_part()) == "multipart/report";
    let auto_reply = autoreply::is_auto_reply(msg);
    // Mailer-daemon headers decide; failure words alone only when nothing says auto-reply
    // (a vacation notice may well say "could not be delivered to me in person").
    if !(bounce_headers || (plain::failure_text(text) && !auto_reply)) {
        if auto_reply {
            report.kind = ReportKind::AutoReply;
        }
        return;
    }
    report.kind = ReportKind::Bounce;
    let mut own: Vec<String> = mail::addresses(msg.to());
    own.extend(report.from.clone());
    let delayed = plain::is_delay_notice(report.subject.as_deref(), text);
    for found in plain::failed_recipients(text, &failed_header, &own) {
        let mut class = classify(None, None, &found.diagnostic);
        if delayed {
            class.permanent = false;
        }
        report.recipients.push(RecipientReport {
            status: classify::find_enhanced_code(&found.diagnostic),
            reply_code: classify::find_reply_code(&found.diagnostic),
            address: Some(found.address),
            original_recipient: None,
            action: Some(if delayed { "delayed" } else { "failed" }.to_owned()),
            diagnostic: Some(found.diagnostic).filter(|d| !d.is_empty()),
            diagnostic_type: None,
            remote_mta: None,
            last_attempt_date: None,
            will_retry_until: None,
            category: class.category,
            permanent: class.permanent,
        });
    }
}

fn complaint_from_original(address: String) -> RecipientReport {
    RecipientReport {
        address: Some(address),
        original_recipient: None,
        action: None,
        status: None,
        reply_code: None,
        diagnostic: None,
        diagnostic_type: None,
        remote_mta: None,
        last_attempt_date: None,
        will_retry_until: None,
        category: Category::Complaint,
        permanent: true,
    }
}

/// Headers of the report that may carry the address it was delivered to, most telling
/// first (an MTA's own delivery headers before the sender-written `To`).
const DELIVERY_HEADERS: &[&str] = &[
    "Delivered-To",
    "X-Original-To",
    "Envelope-To",
    "X-Envelope-To",
    "To",
];

/// The addresses of the report's delivery headers, in [`DELIVERY_HEADERS`] order.
fn delivery_addresses(msg: &Message<'_>) -> Vec<String> {
    let mut found = Vec::new();
    for name in DELIVERY_HEADERS {
        if name.eq_ignore_ascii_case("To") {
            // parsed as an address list (it may hold display names and groups)
            found.extend(mail::addresses(msg.to()));
            continue;
        }
        for value in mail::raw_headers(msg, name) {
            found.extend(value.split(',').filter_map(fields::clean_address));
        }
    }
    found
}

/// Find the VERP token: the first valid one among the candidate addresses wins; else a
/// forged one is reported (so it can be counted); else "not VERP".
fn resolve_verp(
    report: &mut BounceReport,
    secret: &[u8],
    envelope_recipient: Option<&str>,
    delivered_to: Vec<String>,
) {
    let mut candidates: Vec<String> = Vec::new();
    candidates.extend(envelope_recipient.and_then(fields::clean_address));
    candidates.extend(delivered_to);
    candidates.extend(report.original_sender.clone());
    candidates.extend(report.original.return_path.clone());
    if candidates.is_empty() {
        return;
    }
    let mut forged: Option<String> = None;
    for candidate in candidates {
        match verp::parse_verp_address(secret, &candidate) {
            Ok(token) => {
                report.verp = Some(Ok(token));
                report.verp_address = Some(candidate);
                return;
            }
            Err(VerpError::Forged) if forged.is_none() => forged = Some(candidate),
            Err(_) => {}
        }
    }
    report.verp = Some(Err(if forged.is_some() {
        VerpError::Forged
    } else {
        VerpError::NotVerp
    }));
    report.verp_address = forged;
}
