//! What a failure means: a [`Category`] and whether it is hard (permanent) or soft, from an
//! RFC 3463 enhanced status code, an SMTP reply code and the diagnostic text.
//!
//! Two tables drive it, both plain data in this file:
//! * [`code_category`]: enhanced status codes (RFC 3463 section 3, plus the later
//!   registrations such as RFC 7505's X.1.10 "null MX"), each marked *specific* (trusted
//!   over the text) or a *hint* (used only when the text says nothing better: `5.7.1` is
//!   used for blocklists, relay refusals, DMARC failures and content filters alike);
//! * [`PHRASES`]: phrases real MTAs put in their replies and bounce texts, in priority
//!   order (the first listed category among all phrases found wins, so "mailbox size limit"
//!   is a full mailbox, not a message that is too large).
//!
//! Hard or soft: RFC 3463 section 3.1 says a class 5 code is a "Permanent Failure" and class 4
//! a "Persistent Transient Failure". Where no code says, the text's own words ("permanent
//! error", "will retry") or the category decide. Some categories are soft whatever the
//! class: RFC 3463 section 3.3 describes X.2.2 (mailbox full) as a condition that "is expected
//! to be temporary" even when reported as permanent; rate limits, DNS and network trouble and
//! expired retries are facts about the moment, not the address.

use std::fmt;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use crate::protocol::EnhancedCode;

/// Why a message failed (or what else a report says about a recipient).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// The mailbox does not exist (X.1.1, "user unknown").
    BadMailbox,
    /// The mailbox exists but is disabled, suspended or expired (X.2.1).
    InactiveMailbox,
    /// The domain does not exist or takes no mail (X.1.2, null MX X.1.10).
    BadDomain,
    /// Over quota (X.2.2). Soft.
    MailboxFull,
    /// The message exceeds a size limit (X.3.4, X.2.3).
    MessageTooLarge,
    /// The sending IP or domain is blocked for its reputation (blocklists).
    SpamBlock,
    /// The message's content was refused (spam score, virus, attachment type).
    ContentRejected,
    /// Another policy refusal: authentication (SPF, DKIM, DMARC), TLS required, not allowed.
    Policy,
    /// Too much mail too fast; try later. Soft.
    RateLimited,
    /// A DNS lookup failed for now. Soft.
    DnsFailure,
    /// The server refused to relay (X.7.1 "Relay access denied").
    RelayDenied,
    /// The envelope sender was refused (X.1.7, X.1.8).
    BadSender,
    /// The connection failed, timed out or was lost (X.4.1, X.4.2). Soft.
    Network,
    /// The sending MTA gave up after retrying for too long (X.4.7). Soft.
    Expired,
    /// A temporary failure without more detail (greylisting, "try again later"). Soft.
    Transient,
    /// A recipient reported the message as spam (RFC 5965 feedback report). Hard.
    Complaint,
    /// Not a failure: the report says the message was delivered, relayed or expanded.
    Delivered,
    /// A failure nothing here recognises.
    Other,
}

impl Category {
    /// The snake_case name used in Python and in the test corpus.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::BadMailbox => "bad_mailbox",
            Category::InactiveMailbox => "inactive_mailbox",
            Category::BadDomain => "bad_domain",
            Category::MailboxFull => "mailbox_full",
            Category::MessageTooLarge => "message_too_large",
            Category::SpamBlock => "spam_block",
            Category::ContentRejected => "content_rejected",
            Category::Policy => "policy",
            Category::RateLimited => "rate_limited",
            Category::DnsFailure => "dns_failure",
            Category::RelayDenied => "relay_denied",
            Category::BadSender => "bad_sender",
            Category::Network => "network",
            Category::Expired => "expired",
            Category::Transient => "transient",
            Category::Complaint => "complaint",
            Category::Delivered => "delivered",
            Category::Other => "other",
        }
    }

    /// Every category, for tests and documentation.
    pub const ALL: [Category; 18] = [
        Category::BadMailbox,
        Category::InactiveMailbox,
        Category::BadDomain,
        Category::MailboxFull,
        Category::MessageTooLarge,
        Category::SpamBlock,
        Category::ContentRejected,
        Category::Policy,
        Category::RateLimited,
        Category::DnsFailure,
        Category::RelayDenied,
        Category::BadSender,
        Category::Network,
        Category::Expired,
        Category::Transient,
        Category::Complaint,
        Category::Delivered,
        Category::Other,
    ];

    /// Categories that are a fact of the moment, never of the address: soft even when the
    /// server used a class 5 code.
    fn always_soft(self) -> bool {
        matches!(
            self,
            Category::MailboxFull
                | Category::RateLimited
                | Category::DnsFailure
                | Category::Network
                | Category::Expired
                | Category::Transient
                | Category::Delivered
        )
    }

    /// Whether a failure of this category is permanent when nothing else says.
    fn hard_by_default(self) -> bool {
        !self.always_soft()
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of classifying one failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification {
    /// What kind of failure it is.
    pub category: Category,
    /// A hard failure: the receiving side will keep refusing this recipient the same way.
    pub permanent: bool,
}

/// How far an enhanced code's own meaning can be trusted over the text next to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trust {
    /// The code names the failure (X.1.1 is an unknown mailbox whatever the text says).
    Specific,
    /// The code is a catch-all that servers use for many causes; the text decides first.
    Hint,
}

/// The category of an enhanced status code's subject and detail (RFC 3463 section 3), or
/// None for codes that say nothing beyond their class.
fn code_category(code: EnhancedCode) -> Option<(Category, Trust)> {
    use Category::*;
    use Trust::*;
    let transient = code.class == 4;
    Some(match (code.subject, code.detail) {
        // X.1.x addressing status
        (1, 1) | (1, 3) => (BadMailbox, Specific), // bad mailbox address / syntax
        (1, 2) => (BadDomain, Specific),           // bad destination system address
        (1, 4) | (1, 5) => (BadMailbox, Hint),     // ambiguous / destination mailbox ok
        (1, 6) => (InactiveMailbox, Specific),     // mailbox has moved, no forwarding address
        (1, 7) | (1, 8) => (BadSender, Specific),  // bad sender's mailbox / system address
        // RFC 7505: recipient domain has a null MX; Exchange Online uses it for unknown users
        (1, 10) => (BadDomain, Hint),
        (1, 0) => (BadMailbox, Hint),
        // X.2.x mailbox status
        (2, 1) => (InactiveMailbox, Specific), // mailbox disabled, not accepting messages
        (2, 2) => (MailboxFull, Specific),
        (2, 3) => (MessageTooLarge, Specific), // message length exceeds administrative limit
        (2, 4) => (Other, Hint),               // mailing list expansion problem
        (2, 0) => (InactiveMailbox, Hint),
        // X.3.x mail system status
        (3, 1) => (Transient, Specific), // mail system full
        (3, 2) => (Transient, Specific), // system not accepting network messages
        (3, 4) => (MessageTooLarge, Specific),
        (3, 0) | (3, 3) | (3, 5) => (Other, Hint),
        // X.4.x network and routing status. Exchange Online answers "5.4.1 Recipient address
        // rejected: Access denied" for unknown recipients, so X.4.1 is only a hint.
        (4, 1) | (4, 2) => (Network, Hint),
        (4, 3) => (DnsFailure, Specific), // directory server failure
        (4, 4) if transient => (DnsFailure, Specific),
        (4, 4) => (BadDomain, Specific), // unable to route
        (4, 5) => (RateLimited, Hint),   // mail system congestion
        (4, 6) => (Other, Specific),     // routing loop detected
        (4, 7) => (Expired, Specific),   // delivery time expired
        (4, 0) => (Network, Hint),
        // X.5.x mail delivery protocol status
        (5, 3) => (RateLimited, Hint), // too many recipients
        (5, 0) | (5, 1) | (5, 2) | (5, 4) | (5, 5) => (Other, Hint),
        // X.6.x message content or media status
        (6, _) => (ContentRejected, Hint),
        // X.7.x security or policy status
        (7, 1) | (7, 0) => (Policy, Hint),
        (7, 2) | (7, 3) | (7, 4) | (7, 5) | (7, 6) | (7, 7) => (Policy, Hint),
        (7, 8) | (7, 9) | (7, 11) | (7, 14) | (7, 15) | (7, 16) => (Policy, Specific),
        (7, 10) | (7, 12) => (Policy, Specific), // encryption needed / required
        (7, 13) => (InactiveMailbox, Specific),  // RFC 3463 update: user account disabled
        (7, 17) | (7, 18) => (InactiveMailbox, Specific), // RFC 7293: mailbox/domain owner changed
        (7, 19) => (Policy, Hint),
        (7, 20..=27) => (Policy, Specific), // RFC 7372: DKIM, SPF, reverse DNS, DMARC
        (7, 28) => (RateLimited, Specific), // RFC 8689-era registry: mail flood detected
        (7, 29) | (7, 30) => (Policy, Specific),
        _ => return None,
    })
}

/// Phrases found in real replies and bounce texts, by priority (first category wins).
/// Matched ASCII-case-insensitively anywhere in the text.
const PHRASES: &[(&str, Category)] = {
    use Category::*;
    &[
        // Exchange Online's answer for a recipient its directory lacks (see code_category).
        ("recipient address rejected: access denied", BadMailbox),
        ("recipientnotfound", BadMailbox),
        // reputation blocks worded like rate limits or generic refusals
        ("unsolicited mail originating", SpamBlock),
        ("traffic not accepted", SpamBlock),
        // relay refusals before the generic "denied"/"rejected" words
        ("relay access denied", RelayDenied),
        ("relaying denied", RelayDenied),
        ("relay denied", RelayDenied),
        ("relay not permitted", RelayDenied),
        ("relaying not allowed", RelayDenied),
        ("relay not allowed", RelayDenied),
        ("relaying to", RelayDenied),
        ("unable to relay", RelayDenied),
        ("not permitted to relay", RelayDenied),
        ("not allowed to relay", RelayDenied),
        ("cannot relay", RelayDenied),
        ("we do not relay", RelayDenied),
        // quota before size ("mailbox size limit exceeded" is a full mailbox)
        ("mailbox full", MailboxFull),
        ("mailbox is full", MailboxFull),
        ("inbox is full", MailboxFull),
        ("full mailbox", MailboxFull),
        ("over quota", MailboxFull),
        ("overquota", MailboxFull),
        ("quota exceeded", MailboxFull),
        ("exceeded quota", MailboxFull),
        ("exceeds quota", MailboxFull),
        ("quota exceeded", MailboxFull),
        ("disk quota", MailboxFull),
        ("mail quota", MailboxFull),
        ("mailbox size limit", MailboxFull),
        ("mailbox has exceeded", MailboxFull),
        ("out of storage", MailboxFull),
        ("storage space", MailboxFull),
        ("exceeded storage", MailboxFull),
        ("insufficient storage", MailboxFull),
        ("user is over", MailboxFull),
        // sender problems before recipient problems ("sender address rejected: domain not found")
        ("sender address rejected", BadSender),
        ("sender rejected", BadSender),
        ("sender verify failed", BadSender),
        ("sender domain", BadSender),
        ("domain of sender", BadSender),
        ("invalid sender", BadSender),
        ("unknown sender", BadSender),
        // domains before mailboxes ("domain does not exist" before "does not exist")
        ("domain not found", BadDomain),
        ("domain does not exist", BadDomain),
        ("domain doesn't exist", BadDomain),
        ("no such domain", BadDomain),
        ("unknown domain", BadDomain),
        ("invalid domain", BadDomain),
        ("host or domain name not found", BadDomain),
        ("host not found", BadDomain),
        ("name or service not known", BadDomain),
        ("nxdomain", BadDomain),
        ("null mx", BadDomain),
        ("nullmx", BadDomain),
        ("no mx record", BadDomain),
        ("does not accept mail", BadDomain),
        ("non-existent host", BadDomain),
        ("unrouteable", BadDomain),
        ("unroutable", BadDomain),
        // DNS trouble of the moment
        ("host name lookup failure", DnsFailure),
        ("name server", DnsFailure),
        ("servfail", DnsFailure),
        ("dns lookup", DnsFailure),
        ("dns error", DnsFailure),
        ("dns failure", DnsFailure),
        ("dns query", DnsFailure),
        ("temporary failure in name resolution", DnsFailure),
        ("lookup failure", DnsFailure),
        // inactive before unknown ("account is disabled" vs "account does not exist")
        ("disabled", InactiveMailbox),
        ("deactivated", InactiveMailbox),
        ("inactive", InactiveMailbox),
        // not "suspended" alone: Postfix's "delivery temporarily suspended" is about the route
        ("account suspended", InactiveMailbox),
        ("account has been suspended", InactiveMailbox),
        ("mailbox suspended", InactiveMailbox),
        ("is suspended", InactiveMailbox),
        ("account expired", InactiveMailbox),
        ("account has expired", InactiveMailbox),
        ("no longer active", InactiveMailbox),
        ("no longer available", InactiveMailbox),
        ("account is locked", InactiveMailbox),
        // unknown mailboxes
        ("user unknown", BadMailbox),
        ("unknown user", BadMailbox),
        ("no such user", BadMailbox),
        ("no such mailbox", BadMailbox),
        ("no such recipient", BadMailbox),
        ("no mailbox", BadMailbox),
        ("mailbox unavailable", BadMailbox),
        ("mailbox is unavailable", BadMailbox),
        ("mailbox not found", BadMailbox),
        ("mailbox does not exist", BadMailbox),
        ("recipient not found", BadMailbox),
        ("recipient unknown", BadMailbox),
        ("unknown recipient", BadMailbox),
        ("invalid recipient", BadMailbox),
        ("invalid mailbox", BadMailbox),
        ("invalid address", BadMailbox),
        ("address not found", BadMailbox),
        ("addressee unknown", BadMailbox),
        ("user not found", BadMailbox),
        ("unknown local part", BadMailbox),
        ("unknown address", BadMailbox),
        ("not a valid mailbox", BadMailbox),
        ("bad destination mailbox", BadMailbox),
        ("couldn't be found", BadMailbox),
        ("could not be found", BadMailbox),
        ("doesn't have a", BadMailbox),
        ("does not exist", BadMailbox),
        ("doesn't exist", BadMailbox),
        ("not exist", BadMailbox),
        ("undeliverable address", BadMailbox),
        // size
        ("message too large", MessageTooLarge),
        ("message is too large", MessageTooLarge),
        ("message too big", MessageTooLarge),
        ("message size exceeds", MessageTooLarge),
        ("message length exceeds", MessageTooLarge),
        ("exceeds the maximum size", MessageTooLarge),
        ("size limit", MessageTooLarge),
        ("too big", MessageTooLarge),
        ("size exceeds", MessageTooLarge),
        // volume
        ("rate limit", RateLimited),
        ("ratelimit", RateLimited),
        ("rate-limit", RateLimited),
        ("too many messages", RateLimited),
        ("too many connections", RateLimited),
        ("too many concurrent", RateLimited),
        ("too many recipients", RateLimited),
        ("too many emails", RateLimited),
        ("throttl", RateLimited),
        ("sending rate", RateLimited),
        ("unusual rate", RateLimited),
        ("unexpected volume", RateLimited),
        ("exceeded the maximum number", RateLimited),
        // content before reputation ("message identified as spam" vs "spam source")
        ("identified as spam", ContentRejected),
        ("detected as spam", ContentRejected),
        ("considered spam", ContentRejected),
        ("classified as spam", ContentRejected),
        ("scored as spam", ContentRejected),
        ("looks like spam", ContentRejected),
        ("probability of spam", ContentRejected),
        ("spam detected", ContentRejected),
        ("spam content", ContentRejected),
        ("likely unsolicited", ContentRejected),
        ("content rejected", ContentRejected),
        ("message content", ContentRejected),
        ("content filter", ContentRejected),
        ("virus", ContentRejected),
        ("malware", ContentRejected),
        ("infected", ContentRejected),
        ("phishing", ContentRejected),
        ("attachment", ContentRejected),
        ("suspicious", ContentRejected),
        ("potential security", ContentRejected),
        // reputation
        ("blocklist", SpamBlock),
        ("blacklist", SpamBlock),
        ("block list", SpamBlock),
        ("black list", SpamBlock),
        ("dnsbl", SpamBlock),
        ("spamhaus", SpamBlock),
        ("spamcop", SpamBlock),
        ("barracuda", SpamBlock),
        ("listed at", SpamBlock),
        ("listed in", SpamBlock),
        ("listed on", SpamBlock),
        ("reputation", SpamBlock),
        ("blocked", SpamBlock),
        ("banned", SpamBlock),
        ("unsolicited", SpamBlock),
        ("spam", SpamBlock),
        // other policy: authentication, TLS, reverse DNS, permissions
        ("dmarc", Policy),
        ("spf", Policy),
        ("dkim", Policy),
        ("authentication", Policy),
        ("reverse dns", Policy),
        ("ptr record", Policy),
        ("tls required", Policy),
        ("must issue a starttls", Policy),
        ("encryption required", Policy),
        ("administrative prohibition", Policy),
        ("not authorized", Policy),
        ("not authorised", Policy),
        ("policy", Policy),
        ("access denied", Policy),
        ("not permitted", Policy),
        // the sending MTA gave up
        ("message expired", Expired),
        ("delivery time expired", Expired),
        ("retry timeout exceeded", Expired),
        ("retry time not reached", Expired),
        ("too long in queue", Expired),
        ("could not be delivered for", Expired),
        ("gave up", Expired),
        ("giving up", Expired),
        ("expired", Expired),
        // network
        ("connection timed out", Network),
        ("connection refused", Network),
        ("connection reset", Network),
        ("lost connection", Network),
        ("no route to host", Network),
        ("network is unreachable", Network),
        ("host unreachable", Network),
        ("unable to connect", Network),
        ("could not connect", Network),
        ("connect to", Network),
        ("timed out", Network),
        ("timeout", Network),
        // temporary, without more detail
        ("greylist", Transient),
        ("graylist", Transient),
        ("try again later", Transient),
        ("try later", Transient),
        ("please retry", Transient),
        ("temporarily", Transient),
        ("temporary", Transient),
        ("deferred", Transient),
        ("server busy", Transient),
        ("service unavailable", Transient),
    ]
};

static PHRASE_MATCHER: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::Standard)
        .build(PHRASES.iter().map(|(p, _)| p))
        .expect("the phrase table builds")
});

/// Longest text scanned for phrases: diagnostics are short; a 10 MB hostile "diagnostic"
/// must not cost 10 MB of scanning per recipient.
const MAX_SCAN: usize = 8 * 1024;

/// The highest-priority category among the phrases in `text`.
pub fn text_category(text: &str) -> Option<Category> {
    let bytes = text.as_bytes();
    let bytes = &bytes[..bytes.len().min(MAX_SCAN)];
    // One pass over the text finds every phrase (overlapping), the table order decides.
    PHRASE_MATCHER
        .find_overlapping_iter(bytes)
        .map(|m| m.pattern().as_usize())
        .min()
        .map(|i| PHRASES[i].1)
}

/// Whether the text itself says the failure is permanent (Some(true)) or temporary.
fn text_permanence(text: &str) -> Option<bool> {
    let lower = text[..floor_char_boundary(text, MAX_SCAN)].to_ascii_lowercase();
    const HARD: [&str; 4] = [
        "permanent error",
        "permanent failure",
        "permanent fatal",
        "fatal error",
    ];
    const SOFT: [&str; 5] = [
        "temporary error",
        "temporary failure",
        "will retry",
        "will be retried",
        "still trying",
    ];
    if HARD.iter().any(|p| lower.contains(p)) {
        Some(true)
    } else if SOFT.iter().any(|p| lower.contains(p)) {
        Some(false)
    } else {
        None
    }
}

/// The largest char boundary of `s` at or before `at` (`str::floor_char_boundary` is newer
/// than the crate's minimum Rust).
pub(crate) fn floor_char_boundary(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    let mut i = at;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Classify one failure from what is known of it: the enhanced status code (a DSN's
/// `Status` field or one found in the text), the SMTP reply code, and the diagnostic text.
pub fn classify(
    status: Option<EnhancedCode>,
    reply_code: Option<u16>,
    text: &str,
) -> Classification {
    let status = status.or_else(|| find_enhanced_code(text));
    let reply_code = reply_code.or_else(|| find_reply_code(text));
    let by_code = status.and_then(code_category);
    let category = match by_code {
        Some((c, Trust::Specific)) => c,
        _ => text_category(text)
            .or(by_code.map(|(c, _)| c))
            .unwrap_or_else(|| {
                match status
                    .map(|s| s.class)
                    .or(reply_code.map(|c| (c / 100) as u8))
                {
                    Some(4) => Category::Transient,
                    Some(2) => Category::Delivered,
                    _ => Category::Other,
                }
            }),
    };
    let class = status
        .map(|s| s.class)
        .or(reply_code.map(|c| (c / 100) as u8));
    let permanent = !category.always_soft()
        && match class {
            Some(5) => true,
            Some(4) | Some(2) => false,
            _ => text_permanence(text).unwrap_or_else(|| category.hard_by_default()),
        };
    Classification {
        category,
        permanent,
    }
}

/// Parse an RFC 3463 status code at the start of `s` (`"5.1.1"`, `"4.0.0 (comment)"`).
///
/// RFC 3463 section 2: `status-code = class "." subject "." detail`, `class = "2" / "4" /
/// "5"`, `subject = 1*3digit`, `detail = 1*3digit`.
pub fn parse_status(s: &str) -> Option<EnhancedCode> {
    let s = s.trim_start();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    code_at(&s.as_bytes()[..end], 0).map(|(c, _)| c)
}

/// `class.subject.detail` starting exactly at `at`, and the index after it.
fn code_at(b: &[u8], at: usize) -> Option<(EnhancedCode, usize)> {
    let class = *b.get(at)?;
    if !matches!(class, b'2' | b'4' | b'5') || b.get(at + 1) != Some(&b'.') {
        return None;
    }
    let (subject, i) = number_at(b, at + 2)?;
    if b.get(i) != Some(&b'.') {
        return None;
    }
    let (detail, end) = number_at(b, i + 1)?;
    Some((
        EnhancedCode {
            class: class - b'0',
            subject,
            detail,
        },
        end,
    ))
}

/// One to three digits at `at`, not followed by a fourth.
fn number_at(b: &[u8], at: usize) -> Option<(u16, usize)> {
    let digits = b[at.min(b.len())..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    if !(1..=3).contains(&digits) {
        return None;
    }
    let n = b[at..at + digits]
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    Some((n, at + digits))
}

/// The first enhanced status code standing alone in free text: not part of a dotted number
/// such as an IP address or a version (`192.5.1.1`, `5.1.1.2`).
pub fn find_enhanced_code(text: &str) -> Option<EnhancedCode> {
    let b = text.as_bytes();
    let b = &b[..b.len().min(MAX_SCAN)];
    let mut from = 0;
    while let Some(off) = memchr::memchr3(b'2', b'4', b'5', &b[from..]) {
        let at = from + off;
        from = at + 1;
        if at > 0 && (b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'.') {
            continue;
        }
        if let Some((code, end)) = code_at(b, at) {
            let dotted_on =
                b.get(end) == Some(&b'.') && b.get(end + 1).is_some_and(u8::is_ascii_digit);
            if !dotted_on && !b.get(end).is_some_and(u8::is_ascii_alphanumeric) {
                return Some(code);
            }
        }
    }
    None
}

/// The first SMTP reply code in free text: three digits starting with 4 or 5 (RFC 5321
/// section 4.2), standing alone and followed by a space, `-` or the end.
pub fn find_reply_code(text: &str) -> Option<u16> {
    let b = text.as_bytes();
    let b = &b[..b.len().min(MAX_SCAN)];
    let mut from = 0;
    while let Some(off) = memchr::memchr2(b'4', b'5', &b[from..]) {
        let at = from + off;
        from = at + 1;
        if at > 0 && (b[at - 1].is_ascii_alphanumeric() || matches!(b[at - 1], b'.' | b'#' | b'['))
        {
            continue;
        }
        let Some(digits) = b.get(at..at + 3) else {
            break;
        };
        if !(digits[1].is_ascii_digit() && digits[2].is_ascii_digit() && digits[1] <= b'5') {
            continue;
        }
        if matches!(
            b.get(at + 3),
            None | Some(b' ' | b'-' | b'\r' | b'\n' | b':' | b'\t')
        ) {
            return Some(
                u16::from(digits[0] - b'0') * 100
                    + u16::from(digits[1] - b'0') * 10
                    + u16::from(digits[2] - b'0'),
            );
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> EnhancedCode {
        parse_status(s).unwrap()
    }

    /// Diagnostic texts as MTAs and mailbox providers are documented to write them (typed
    /// for these tests, shortened where the rest is a help URL), with the expected result.
    /// (status field if any, diagnostic, category, hard?)
    const REAL_WORLD: &[(&str, &str, &str, bool)] = &[
        // Postfix
        ("5.1.1", "smtp; 550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in virtual mailbox table", "bad_mailbox", true),
        ("5.1.1", "X-Postfix; unknown user: \"nobody@example.org\"", "bad_mailbox", true),
        ("", "host mx.example.net[192.0.2.7] said: 550 5.1.1 <x@example.net>: Recipient address rejected: User unknown in local recipient table (in reply to RCPT TO command)", "bad_mailbox", true),
        ("5.4.4", "X-Postfix; Host or domain name not found. Name service error for name=nowhere.example type=MX: Host not found, try again", "bad_domain", true),
        ("4.4.3", "X-Postfix; Host or domain name not found. Name service error for name=example.com type=MX: Host not found, try again", "dns_failure", false),
        ("4.4.1", "X-Postfix; connect to mx.example.com[192.0.2.1]:25: Connection timed out", "network", false),
        ("4.4.2", "X-Postfix; lost connection with mx.example.com[192.0.2.1] while receiving the initial server greeting", "network", false),
        ("5.7.1", "smtp; 554 5.7.1 <x@example.com>: Relay access denied", "relay_denied", true),
        ("5.2.2", "smtp; 552 5.2.2 <x@example.com>: Recipient address rejected: Mailbox full", "mailbox_full", false),
        ("5.3.4", "smtp; 552 5.3.4 Message size exceeds fixed limit", "message_too_large", true),
        ("5.7.1", "smtp; 554 5.7.1 Service unavailable; Client host [192.0.2.9] blocked using zen.spamhaus.org", "spam_block", true),
        ("4.7.1", "smtp; 450 4.7.1 <x@example.com>: Recipient address rejected: Greylisted, see https://example.com/greylisting", "transient", false),
        ("5.1.8", "smtp; 553 5.1.8 <bounce@nowhere.example>: Sender address rejected: Domain not found", "bad_sender", true),
        ("4.4.7", "X-Postfix; delivery temporarily suspended: connect to mx.example.com[192.0.2.1]:25: Connection refused", "expired", false),
        // Gmail
        ("5.1.1", "smtp; 550-5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces.", "bad_mailbox", true),
        ("", "550-5.1.1 The email account that you tried to reach does not exist.", "bad_mailbox", true),
        ("", "552-5.2.2 The recipient's inbox is out of storage space. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaTemp", "mailbox_full", false),
        ("", "452-4.2.2 The email account that you tried to reach is over quota.", "mailbox_full", false),
        ("", "550-5.2.1 The email account that you tried to reach is disabled.", "inactive_mailbox", true),
        ("", "550-5.7.1 Our system has detected an unusual rate of unsolicited mail originating from your IP address.", "spam_block", true),
        ("", "421-4.7.28 Our system has detected an unusual rate of mail originating from your IP address.", "rate_limited", false),
        ("", "550-5.7.1 Our system has detected that this message is likely unsolicited mail.", "content_rejected", true),
        ("", "550-5.7.26 This mail has been blocked because the sender is unauthenticated. Gmail requires all senders to authenticate with either SPF or DKIM.", "policy", true),
        ("", "552-5.7.0 This message was blocked because its content presents a potential security issue.", "content_rejected", true),
        ("", "550-5.7.25 The IP address sending this message does not have a PTR record setup.", "policy", true),
        ("", "552-5.2.3 Your message exceeded Google's message size limits.", "message_too_large", true),
        // Microsoft (Exchange Online, Outlook.com)
        ("5.1.10", "smtp; 550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", "bad_mailbox", true),
        ("", "550 5.4.1 Recipient address rejected: Access denied. AS(201806281) [DM6NAM11FT.eop-nam11.prod.protection.outlook.com]", "bad_mailbox", true),
        ("", "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302)", "bad_mailbox", true),
        ("", "550 5.7.1 Unfortunately, messages from [192.0.2.5] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150).", "spam_block", true),
        ("", "451 4.7.500 Server busy. Please try again later from [192.0.2.5]. (S77719)", "transient", false),
        ("", "550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.", "spam_block", true),
        ("", "552 5.2.2 Requested mail action aborted: exceeded storage allocation", "mailbox_full", false),
        // Yahoo / AOL
        ("", "554 delivery error: dd This user doesn't have a yahoo.com account (x@yahoo.com) [0] - mta1234.mail.bf1.yahoo.com", "bad_mailbox", true),
        ("", "421 4.7.0 [TSS04] Messages from 192.0.2.3 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1", "rate_limited", false),
        ("", "554 5.7.9 Message not accepted for policy reasons.", "policy", true),
        ("", "552 1 Requested mail action aborted, mailbox not found", "bad_mailbox", true),
        // Exim
        ("", "SMTP error from remote mail server after RCPT TO:<x@example.net>: 550 Unrouteable address", "bad_domain", true),
        ("", "SMTP error from remote mail server after end of data: 550 Administrative prohibition", "policy", true),
        ("", "retry timeout exceeded", "expired", false),
        ("", "all relevant MX records point to non-existent hosts", "bad_domain", true),
        ("", "Mailbox quota exceeded", "mailbox_full", false),
        // qmail
        ("", "Sorry, no mailbox here by that name. (#5.1.1)", "bad_mailbox", true),
        ("", "Sorry, I couldn't find any host named nowhere.example. (#5.1.2)", "bad_domain", true),
        ("", "The users mailfolder is over the allowed quota (size). (#5.2.2)", "mailbox_full", false),
        ("", "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)", "network", false),
        // Sendmail
        ("5.1.1", "smtp; 550 5.1.1 <x@example.org>... User unknown", "bad_mailbox", true),
        ("4.0.0", "smtp; 426 connection timed out", "network", false),
        ("5.0.0", "smtp; 550 user unknown", "bad_mailbox", true),
        ("", "554 5.7.1 <x@example.org>... Message contains a virus", "content_rejected", true),
        // generic and the codes alone
        ("5.1.2", "", "bad_domain", true),
        ("5.2.1", "", "inactive_mailbox", true),
        ("5.7.1", "", "policy", true),
        ("4.0.0", "", "transient", false),
        ("5.0.0", "", "other", true),
        ("2.0.0", "", "delivered", false),
        ("", "550 Message rejected as spam by Content Filtering.", "content_rejected", true),
        ("", "550 5.7.1 Email rejected due to DMARC policy", "policy", true),
        ("", "421 Too many concurrent SMTP connections; please try again later.", "rate_limited", false),
        ("", "550 Domain example.invalid does not accept mail (nullMX)", "bad_domain", true),
        ("", "556 5.1.10 Recipient address has null MX", "bad_domain", true),
        ("5.1.10", "", "bad_domain", true),
        ("", "delivery temporarily suspended: lost connection with mx.example.com", "network", false),
        ("", "550 5.2.1 Mailbox suspended", "inactive_mailbox", true),
        ("", "delivery temporarily suspended", "transient", false),
        ("", "something nobody has ever written", "other", true),
        ("", "temporary failure, will retry", "transient", false),
    ];

    #[test]
    fn real_world_table() {
        let mut failures = Vec::new();
        for &(status, text, category, hard) in REAL_WORLD {
            let got = classify(parse_status(status), None, text);
            if got.category.as_str() != category || got.permanent != hard {
                failures.push(format!(
                    "{status:>6} {text:?}\n       want {category}/{hard}, got {}/{}",
                    got.category, got.permanent
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn status_codes() {
        assert_eq!(
            code("5.1.1"),
            EnhancedCode {
                class: 5,
                subject: 1,
                detail: 1
            }
        );
        assert_eq!(
            code("4.0.0 (unknown temporary failure)"),
            EnhancedCode {
                class: 4,
                subject: 0,
                detail: 0
            }
        );
        assert_eq!(
            code("5.7.708"),
            EnhancedCode {
                class: 5,
                subject: 7,
                detail: 708
            }
        );
        for bad in [
            "", "3.1.1", "5.1", "5..1", "5.1.1000", "5.1.x", "x5.1.1", "51.1.1",
        ] {
            assert_eq!(parse_status(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn codes_in_text() {
        let find = |t: &str| find_enhanced_code(t).map(|c| c.to_string());
        assert_eq!(find("550-5.1.1 no"), Some("5.1.1".into()));
        assert_eq!(
            find("host 192.5.1.1 said: 550 5.2.2 full"),
            Some("5.2.2".into())
        );
        assert_eq!(find("version 5.1.1.2 then 4.4.1."), Some("4.4.1".into()));
        assert_eq!(find("(#5.1.1)"), Some("5.1.1".into()));
        assert_eq!(find("x5.1.1 and 5.1.1a"), None);
        let reply = find_reply_code;
        assert_eq!(reply("host said: 550 5.1.1 x"), Some(550));
        assert_eq!(reply("550-5.1.1 x"), Some(550));
        assert_eq!(reply("port 25 then 4501 then 421"), Some(421));
        assert_eq!(reply("[450] 5555 #550"), None);
    }

    #[test]
    fn every_phrase_is_lowercase_and_reachable() {
        for (i, (phrase, category)) in PHRASES.iter().enumerate() {
            assert_eq!(*phrase, phrase.to_ascii_lowercase());
            // A phrase whose text contains an earlier phrase of another category is dead.
            let got = text_category(phrase);
            assert!(
                got == Some(*category)
                    || PHRASES[..i]
                        .iter()
                        .any(|(p, c)| p == phrase && c == category),
                "phrase {phrase:?} is shadowed: classifies as {got:?}"
            );
        }
    }

    #[test]
    fn huge_text_is_scanned_only_so_far() {
        let mut text = "x".repeat(MAX_SCAN);
        text.push_str(" user unknown");
        assert_eq!(text_category(&text), None);
        assert_eq!(classify(None, None, &text).category, Category::Other);
    }
}
