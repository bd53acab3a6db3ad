//! Non-standard bounces: plain text from mailer daemons that send no RFC 3464 part (old
//! Exim, qmail, Sendmail, Postfix with DSN off, Exchange and webmail NDRs). The failed
//! recipients and their diagnostics are found heuristically, from the shapes these
//! formats share:
//!
//! * an address alone at the start of a line, optionally in `<>` and followed by `:` or
//!   `...` (qmail, Postfix, Exim, Sendmail, Exchange), with its diagnostic on the rest of
//!   the line and the lines below it up to a blank line or the next address;
//! * Exim's `X-Failed-Recipients` header;
//! * otherwise an address inside a sentence that says delivery failed ("wasn't delivered
//!   to a@b"), with the first line that carries an SMTP reply code as the diagnostic.
//!
//! Nothing after the copy of the original message (see [`super::original::copy_start`]) is
//! read: the original's own addresses are not failures.

use super::classify::floor_char_boundary;
use super::original::copy_start;

/// Longest bounce text read (a human-readable notice is a few KB; the rest is the copy).
const MAX_TEXT: usize = 64 * 1024;
/// Longest diagnostic kept per recipient.
const MAX_DIAGNOSTIC: usize = 1000;

/// One failed recipient found in a bounce text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The address as written.
    pub address: String,
    /// The words that say why (may be empty).
    pub diagnostic: String,
}

/// Local parts of the mail system's own addresses: never a failed recipient.
fn is_system_address(addr: &str) -> bool {
    let local = addr.split('@').next().unwrap_or("").to_ascii_lowercase();
    matches!(
        local.as_str(),
        "mailer-daemon"
            | "mailerdaemon"
            | "mail-daemon"
            | "postmaster"
            | "double-bounce"
            | "noreply"
            | "no-reply"
    )
}

/// A plausible address at the start of `s` (after an optional `<`): its text, and the
/// index just after it (after a closing `>` when there was an opening one).
fn address_at_start(s: &str) -> Option<(&str, usize)> {
    let (body, open) = match s.strip_prefix('<') {
        Some(rest) => (rest, 1),
        None => (s, 0),
    };
    let end = body
        .find(|c: char| {
            c.is_whitespace() || matches!(c, '<' | '>' | '(' | ')' | ',' | ';' | '"' | '[' | ']')
        })
        .unwrap_or(body.len());
    // A trailing ':' or '.' belongs to the sentence ("<a@b>:", "a@b...").
    let addr = body[..end].trim_end_matches([':', '.']);
    if !is_plausible_address(addr) {
        return None;
    }
    let mut after = open + addr.len();
    if open == 1 && s[after..].starts_with('>') {
        after += 1;
    } else if open == 1 {
        return None;
    }
    Some((addr, after))
}

fn is_plausible_address(addr: &str) -> bool {
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && !domain.is_empty()
        && domain.len() <= 253
        && !local.contains(':')
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
        && domain.bytes().any(|b| b.is_ascii_alphabetic())
        && !domain.starts_with(['.', '-'])
}

/// Whether the rest of a line after an address makes it a recipient line (and not a
/// sentence that starts with an address).
fn recipient_line_rest(rest: &str) -> bool {
    let r = rest.trim_start();
    r.is_empty()
        || r.starts_with(':')
        || r.starts_with("...")
        || r.starts_with('(')
        || r.starts_with("<mailto:")
        || r.starts_with('[')
        || r.starts_with('-')
        || r.to_ascii_lowercase().starts_with("on behalf of")
}

/// Failed recipients with their diagnostics, from the human-readable text of a bounce.
/// `failed_header` holds the addresses of an `X-Failed-Recipients` header, which are kept
/// even when the text does not mention them; `own` are addresses never to report (the
/// bounce's own From and To).
pub fn failed_recipients(text: &str, failed_header: &[String], own: &[String]) -> Vec<Found> {
    let text = &text[..floor_char_boundary(text, MAX_TEXT)];
    let text = &text[..copy_start(text).unwrap_or(text.len())];
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    let skip = |a: &str| is_system_address(a) || own.iter().any(|o| o.eq_ignore_ascii_case(a));

    let mut found: Vec<Found> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim_start();
        let Some((addr, after)) =
            address_at_start(t).filter(|(_, after)| recipient_line_rest(&t[*after..]))
        else {
            i += 1;
            continue;
        };
        let mut diagnostic = clean_rest(&t[after..]).to_owned();
        let indent = indentation(lines[i]);
        let mut j = i + 1;
        // The lines that follow, up to a blank line or the next recipient line; a line
        // indented deeper is a continuation even if it starts with an address (Postfix
        // folds "    <x@example.org>: Recipient address rejected: ...").
        while j < lines.len()
            && !lines[j].trim().is_empty()
            && (indentation(lines[j]) > indent || !is_recipient_line(lines[j]))
        {
            push_line(&mut diagnostic, lines[j]);
            j += 1;
        }
        // Nothing said yet: Exchange and qmail put it in the next paragraph.
        if diagnostic.is_empty() {
            let mut k = j;
            while k < lines.len() && lines[k].trim().is_empty() {
                k += 1;
            }
            let mut taken = 0;
            while k < lines.len()
                && !lines[k].trim().is_empty()
                && !is_recipient_line(lines[k])
                && taken < 5
            {
                push_line(&mut diagnostic, lines[k]);
                k += 1;
                taken += 1;
            }
        }
        if !skip(addr) {
            merge(&mut found, addr, diagnostic);
        }
        i = j.max(i + 1);
    }

    if found.is_empty() {
        for line in &lines {
            let lower = line.to_ascii_lowercase();
            if !FAILURE_SENTENCES.iter().any(|s| lower.contains(s)) {
                continue;
            }
            for word in line.split(|c: char| c.is_whitespace() || c == ',') {
                let word = word.trim_matches(|c: char| {
                    matches!(c, '<' | '>' | '(' | ')' | '"' | '\'' | '.' | ':' | ';')
                });
                if is_plausible_address(word) && !skip(word) {
                    merge(&mut found, word, String::new());
                }
            }
        }
    }
    for addr in failed_header {
        if !skip(addr) {
            merge(&mut found, addr, String::new());
        }
    }

    // Recipients without words of their own get the text's first SMTP-looking reply.
    if found.iter().any(|f| f.diagnostic.is_empty()) {
        let global = global_diagnostic(&lines);
        for f in found.iter_mut().filter(|f| f.diagnostic.is_empty()) {
            f.diagnostic.clone_from(&global);
        }
    }
    found
}

/// Sentences that put a failed address inside them.
const FAILURE_SENTENCES: &[&str] = &[
    "wasn't delivered to",
    "was not delivered to",
    "could not be delivered to",
    "couldn't be delivered to",
    "delivery to the following recipient",
    "delivery has failed to",
    "undeliverable to",
    "failed to deliver to",
    "delivery to ",
    "permanent error",
    "user unknown",
];

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_recipient_line(line: &str) -> bool {
    let t = line.trim_start();
    address_at_start(t).is_some_and(|(_, after)| recipient_line_rest(&t[after..]))
}

/// The rest of a recipient line without its separator (`:`, `...`).
fn clean_rest(rest: &str) -> &str {
    rest.trim()
        .trim_start_matches("...")
        .trim_start_matches(':')
        .trim()
        .trim_start_matches('<')
        .trim()
}

fn push_line(diagnostic: &mut String, line: &str) {
    let line = line.trim();
    if line.is_empty() || diagnostic.len() >= MAX_DIAGNOSTIC {
        return;
    }
    if !diagnostic.is_empty() {
        diagnostic.push(' ');
    }
    let room = MAX_DIAGNOSTIC - diagnostic.len();
    diagnostic.push_str(&line[..floor_char_boundary(line, room)]);
}

/// Add or update an address (case-insensitively): keep the diagnostic with an SMTP code,
/// else the longer one (Exchange names each recipient twice, once with the server reply).
fn merge(found: &mut Vec<Found>, addr: &str, diagnostic: String) {
    if let Some(f) = found
        .iter_mut()
        .find(|f| f.address.eq_ignore_ascii_case(addr))
    {
        let has_code = |d: &str| {
            super::classify::find_reply_code(d).is_some()
                || super::classify::find_enhanced_code(d).is_some()
        };
        if (has_code(&diagnostic) && !has_code(&f.diagnostic))
            || (has_code(&diagnostic) == has_code(&f.diagnostic)
                && diagnostic.len() > f.diagnostic.len())
        {
            f.diagnostic = diagnostic;
        }
        return;
    }
    if found.len() < 1000 {
        found.push(Found {
            address: addr.to_owned(),
            diagnostic,
        });
    }
}

/// The first line (with its continuation) that carries an SMTP reply or enhanced code, or
/// the paragraph after "the response from the remote server was" style lines.
fn global_diagnostic(lines: &[&str]) -> String {
    for (i, line) in lines.iter().enumerate() {
        let lower = line.to_ascii_lowercase();
        if lower.contains("response from the remote server")
            || lower.contains("remote server returned")
            || lower.contains("remote host said")
        {
            let mut d = String::new();
            let rest = line.split_once(':').map(|(_, r)| r).unwrap_or("");
            let rest = if lower.contains("remote server returned") {
                line
            } else {
                rest
            };
            push_line(&mut d, rest);
            for next in lines
                .iter()
                .skip(i + 1)
                .skip_while(|l| l.trim().is_empty())
                .take_while(|l| !l.trim().is_empty())
                .take(4)
            {
                push_line(&mut d, next);
            }
            if !d.is_empty() {
                return d;
            }
        }
    }
    for line in lines {
        let t = line.trim().trim_start_matches("<<<").trim();
        if super::classify::find_reply_code(t).is_some_and(|_| t.starts_with(['4', '5']))
            || (super::classify::find_enhanced_code(t).is_some() && t.len() > 8)
        {
            let mut d = String::new();
            push_line(&mut d, t);
            return d;
        }
    }
    String::new()
}

/// Subjects that mailer daemons give their bounces (lower case, matched as substrings).
const BOUNCE_SUBJECTS: &[&str] = &[
    "undelivered mail",
    "undeliverable",
    "undeliverable mail",
    "delivery status notification (failure)",
    "delivery status notification (delay)",
    "mail delivery failed",
    "mail delivery failure",
    "delivery failure",
    "delivery failed",
    "delivery has failed",
    "returned mail",
    "failure notice",
    "could not be delivered",
    "message not delivered",
    "mail system error",
    "nondeliverable",
    "non remis",
    "unzustellbar",
    "no entregado",
    "delayed mail",
    "delivery delayed",
    "warning: could not send message",
];

/// Whether the headers look like a mailer daemon's bounce: its From address, its subject
/// or Exim's `X-Failed-Recipients`.
pub fn bounce_headers(
    from: Option<&str>,
    from_name: Option<&str>,
    subject: Option<&str>,
    has_failed_header: bool,
) -> bool {
    if has_failed_header
        || from.is_some_and(|f| {
            let local = f.split('@').next().unwrap_or("").to_ascii_lowercase();
            matches!(
                local.as_str(),
                "mailer-daemon" | "mailerdaemon" | "mail-daemon" | "postmaster"
            )
        })
    {
        return true;
    }
    if from_name.is_some_and(|n| {
        let n = n.to_ascii_lowercase();
        n.contains("mail delivery") || n.contains("mailer-daemon") || n.contains("mail system")
    }) {
        return true;
    }
    subject.is_some_and(|s| {
        let s = s.to_ascii_lowercase();
        BOUNCE_SUBJECTS.iter().any(|p| s.contains(p))
    })
}

/// Whether the text is a delay warning rather than a final failure.
pub fn is_delay_notice(subject: Option<&str>, text: &str) -> bool {
    let s = subject.unwrap_or("").to_ascii_lowercase();
    if s.contains("delay") || s.contains("still being retried") || s.contains("warning") {
        return true;
    }
    let head = &text[..floor_char_boundary(text, 4096)];
    let t = head.to_ascii_lowercase();
    [
        "will continue to try",
        "still trying",
        "will be retried",
        "will retry",
        "has been delayed",
        "not yet been delivered",
    ]
    .iter()
    .any(|p| t.contains(p))
}

/// Words in a text that say delivery failed (used when the headers do not say bounce).
pub fn failure_text(text: &str) -> bool {
    let head = &text[..floor_char_boundary(text, 8192)];
    let t = head.to_ascii_lowercase();
    [
        "could not be delivered",
        "couldn't be delivered",
        "wasn't delivered",
        "was not delivered",
        "delivery has failed",
        "delivery to the following recipient",
        "permanent error",
        "permanent fatal error",
        "undeliverable",
        "i'm afraid i wasn't able to deliver",
        "unable to deliver",
        "delivery failed",
        "address not found",
    ]
    .iter()
    .any(|p| t.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(String, String)> {
        failed_recipients(text, &[], &["bounces@sender.example".to_owned()])
            .into_iter()
            .map(|f| (f.address, f.diagnostic))
            .collect()
    }

    #[test]
    fn qmail() {
        let text = "Hi. This is the qmail-send program at mx.example.net.\n\
            I'm afraid I wasn't able to deliver your message to the following addresses.\n\
            This is a permanent error; I've given up. Sorry it didn't work out.\n\n\
            <nobody@example.net>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n\
            <full@example.net>:\n192.0.2.1 does not like recipient.\nRemote host said: 552 5.2.2 Mailbox full\nGiving up on 192.0.2.1.\n\n\
            --- Below this line is a copy of the message.\n\nReturn-Path: <bounces@sender.example>\nTo: other@example.net\n";
        let f = found(text);
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(
            f[0],
            (
                "nobody@example.net".into(),
                "Sorry, no mailbox here by that name. (#5.1.1)".into()
            )
        );
        assert!(f[1].1.contains("552 5.2.2 Mailbox full"), "{f:?}");
    }

    #[test]
    fn postfix_text_and_sendmail() {
        let text = "This is the mail system at host mx.example.com.\n\n\
            <x@example.org>: host mx.example.org[192.0.2.7] said: 550 5.1.1\n    <x@example.org>: Recipient address rejected: User unknown (in reply to\n    RCPT TO command)\n";
        let f = found(text);
        assert_eq!(f.len(), 1);
        assert!(
            f[0].1
                .starts_with("host mx.example.org[192.0.2.7] said: 550 5.1.1"),
            "{f:?}"
        );
        assert!(f[0].1.ends_with("RCPT TO command)"));

        let text = "   ----- The following addresses had permanent fatal errors -----\n<gone@example.org>\n    (reason: 550 5.1.1 <gone@example.org>... User unknown)\n\n\
               ----- Transcript of session follows -----\n... while talking to mx.example.org.:\n>>> RCPT To:<gone@example.org>\n<<< 550 5.1.1 <gone@example.org>... User unknown\n";
        let f = found(text);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].0, "gone@example.org");
        assert!(f[0].1.contains("(reason: 550 5.1.1"));
    }

    #[test]
    fn exchange_names_twice_and_keeps_the_server_reply() {
        let text = "Delivery has failed to these recipients or groups:\n\n\
            john@contoso.example<mailto:john@contoso.example>\n\
            The email address you entered couldn't be found.\n\n\
            Diagnostic information for administrators:\n\nGenerating server: BN6PR.example\n\n\
            john@contoso.example\nRemote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup'\n\n\
            Original message headers:\n\nFrom: <bounces@sender.example>\nTo: <john@contoso.example>\n";
        let f = found(text);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].1.contains("550 5.1.10"), "{f:?}");
    }

    #[test]
    fn sentence_and_header_fallbacks() {
        let text = "** Address not found **\n\nYour message wasn't delivered to lost@example.com because the address couldn't be found.\n\n\
            The response from the remote server was:\n550 5.1.1 The email account that you tried to reach does not exist.\n";
        let f = found(text);
        assert_eq!(
            f,
            vec![(
                "lost@example.com".into(),
                "550 5.1.1 The email account that you tried to reach does not exist.".into()
            )]
        );
        let f = failed_recipients(
            "A message could not be delivered.\n",
            &["a@example.com".into()],
            &[],
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].address, "a@example.com");
    }

    #[test]
    fn system_and_own_addresses_are_skipped() {
        let text = "MAILER-DAEMON@mx.example.net\n<bounces@sender.example>: whatever\n";
        assert!(found(text).is_empty());
    }

    #[test]
    fn header_evidence() {
        assert!(bounce_headers(
            Some("MAILER-DAEMON@x.example"),
            None,
            None,
            false
        ));
        assert!(bounce_headers(
            None,
            Some("Mail Delivery System"),
            None,
            false
        ));
        assert!(bounce_headers(
            None,
            None,
            Some("Undelivered Mail Returned to Sender"),
            false
        ));
        assert!(bounce_headers(None, None, None, true));
        assert!(!bounce_headers(
            Some("ann@example.com"),
            Some("Ann"),
            Some("Lunch?"),
            false
        ));
    }
}
