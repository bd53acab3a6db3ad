//! The original message a report returns, to map a bounce back to what was sent: its
//! `Message-ID`, `From`, `To`, `Subject` and `Return-Path`.
//!
//! It comes as a `message/rfc822` part (RFC 3464 section 2: the third part of a
//! multipart/report "may be a message/rfc822 [...] or text/rfc822-headers"; RFC 6533 adds
//! `message/global` and `message/global-headers`), or, in non-standard bounces, as text
//! after a line such as qmail's "--- Below this line is a copy of the message.".

use mail_parser::Message;

use super::fields::clean_address;
use super::mail;
use super::report::OriginalMessage;

/// What a parsed (nested or header-only) message says about itself.
pub fn from_message(msg: &Message<'_>) -> OriginalMessage {
    OriginalMessage {
        message_id: msg
            .message_id()
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty()),
        from: mail::first_address(msg.from()),
        to: mail::addresses(msg.to()),
        subject: msg.subject().map(mail::unfold).filter(|s| !s.is_empty()),
        return_path: mail::raw_headers(msg, "Return-Path").find_map(clean_address),
    }
}

/// Headers-only text (`text/rfc822-headers`).
pub fn from_header_text(text: &str) -> OriginalMessage {
    match mail::parse_headers(text.as_bytes()) {
        Some(msg) => from_message(&msg),
        None => OriginalMessage::default(),
    }
}

/// Lines after which non-standard bounces copy the original message (lower case, matched
/// at the start of a trimmed line).
const COPY_MARKERS: &[&str] = &[
    "--- below this line is a copy of the message", // qmail
    "------ this is a copy of the message",         // Exim
    "----- original message -----",
    "----- original message follows",
    "original message headers", // Microsoft
    "----- message header follows -----",
    "------ original message",
    "--- original message",
    "-----original message-----",
    "the original message was:",
    "the headers of the original message",
];

/// Where the copy of the original message starts in a bounce text (the marker line's
/// start), if a marker is present.
pub fn copy_start(text: &str) -> Option<usize> {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim().trim_start_matches('>').trim();
        if t.len() >= 10 {
            let lower = t.get(..t.len().min(60)).unwrap_or(t).to_ascii_lowercase();
            if COPY_MARKERS.iter().any(|m| lower.starts_with(m)) {
                return Some(at);
            }
        }
        at += line.len();
    }
    None
}

/// Headers of an original message copied into a bounce text after a marker line.
pub fn from_bounce_text(text: &str) -> OriginalMessage {
    let Some(start) = copy_start(text) else {
        return OriginalMessage::default();
    };
    // Skip the marker line and the blank lines after it; the headers start at the next
    // line that looks like "Name: value".
    let rest = &text[start..];
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        let t = line.trim_end();
        let looks_like_header = t.split_once(':').is_some_and(|(n, _)| {
            !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic()) && !n.starts_with('-')
        });
        if looks_like_header {
            return from_header_text(&rest[offset..]);
        }
        offset += line.len();
    }
    OriginalMessage::default()
}
