//! RFC 3464 delivery status notifications: the fields of a `message/delivery-status`
//! (or RFC 6533 `message/global-delivery-status`) part.
//!
//! RFC 3464 section 2.2 (per-message fields): `[ original-envelope-id-field CRLF ]
//! reporting-mta-field CRLF [ dsn-gateway-field CRLF ] [ received-from-mta-field CRLF ]
//! [ arrival-date-field CRLF ] *( extension-field CRLF )`.
//! Section 2.3 (per-recipient fields): `[ original-recipient-field CRLF ]
//! final-recipient-field CRLF action-field CRLF status-field CRLF [ remote-mta-field CRLF ]
//! [ diagnostic-code-field CRLF ] [ last-attempt-date-field CRLF ] [ final-log-id-field CRLF ]
//! [ will-retry-until-field CRLF ] *( extension-field CRLF )`.
//!
//! Real DSNs bend this: some MTAs leave out the blank line after the per-message group, or
//! put `Reporting-MTA` in every group; so a group is per-recipient when it has a
//! `Final-Recipient` (or `Original-Recipient`), and per-message fields are taken from
//! wherever they first appear.

use super::classify::{classify, find_reply_code, parse_status, Category};
use super::fields::{self, address_value, first_word, get, typed_value, Group};
use super::report::{BounceReport, RecipientReport};

/// Per-recipient and per-message fields of a delivery-status body, added to `report`.
/// Returns how many recipients were found.
pub fn read_delivery_status(text: &str, report: &mut BounceReport) -> usize {
    let groups = fields::parse_groups(text);
    let mut found = 0;
    for group in &groups {
        if report.reporting_mta.is_none() {
            report.reporting_mta = get(group, "Reporting-MTA").map(|v| typed_value(v).1.to_owned());
        }
        if report.envelope_id.is_none() {
            report.envelope_id = get(group, "Original-Envelope-Id").map(str::to_owned);
        }
        if report.arrival_date.is_none() {
            report.arrival_date = get(group, "Arrival-Date").map(str::to_owned);
        }
        if report.original_sender.is_none() {
            // Postfix names the original envelope sender (our VERP address) here.
            report.original_sender = get(group, "X-Postfix-Sender").and_then(address_value);
        }
        let is_recipient_group =
            get(group, "Final-Recipient").is_some() || get(group, "Original-Recipient").is_some();
        if is_recipient_group {
            report.recipients.push(recipient(group));
            found += 1;
        }
    }
    found
}

fn recipient(group: &Group) -> RecipientReport {
    let original_recipient = get(group, "Original-Recipient").and_then(address_value);
    let address = get(group, "Final-Recipient")
        .and_then(address_value)
        .or_else(|| original_recipient.clone());
    let action = get(group, "Action")
        .map(first_word)
        .filter(|a| !a.is_empty());
    let status = get(group, "Status").and_then(parse_status);
    let (diagnostic_type, diagnostic) = match get(group, "Diagnostic-Code") {
        Some(v) => {
            let (kind, text) = typed_value(v);
            (kind, Some(text.to_owned()).filter(|t| !t.is_empty()))
        }
        None => (None, None),
    };
    let diag_text = diagnostic.as_deref().unwrap_or("");
    let reply_code = match diagnostic_type.as_deref() {
        // RFC 3464 section 2.3.6: for type "smtp" the diagnostic is the reply itself.
        Some("smtp") => diag_text
            .get(..3)
            .and_then(|c| c.parse().ok())
            .filter(|c| (200..600).contains(c)),
        _ => None,
    }
    .or_else(|| find_reply_code(diag_text));
    // A comment after the status code ("4.0.0 (host name lookup failure)") is text too.
    let status_comment = get(group, "Status")
        .and_then(|v| v.split_once('('))
        .map(|(_, c)| c.trim_end_matches(')'))
        .unwrap_or("");
    let text;
    let classify_text = if status_comment.is_empty() {
        diag_text
    } else {
        text = format!("{diag_text} ({status_comment})");
        &text
    };
    let mut class = classify(status, reply_code, classify_text);
    // The action overrides what the codes alone suggest (RFC 3464 section 2.3.3).
    match action.as_deref() {
        Some("delivered" | "relayed" | "expanded") => {
            class.category = Category::Delivered;
            class.permanent = false;
        }
        Some("delayed") => class.permanent = false,
        _ => {}
    }
    RecipientReport {
        address,
        original_recipient,
        action,
        status,
        reply_code,
        diagnostic,
        diagnostic_type,
        remote_mta: get(group, "Remote-MTA").map(|v| typed_value(v).1.to_owned()),
        last_attempt_date: get(group, "Last-Attempt-Date").map(str::to_owned),
        will_retry_until: get(group, "Will-Retry-Until").map(str::to_owned),
        category: class.category,
        permanent: class.permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3464_multi_recipient_fields() {
        // The delivery-status body of RFC 3464's "Multi-Recipient DSN" example (appendix).
        let body = "Reporting-MTA: dns; cs.utk.edu\n\n\
            Original-Recipient: rfc822;arathib@vnet.ibm.com\n\
            Final-Recipient: rfc822;arathib@vnet.ibm.com\n\
            Action: failed\n\
            Status: 5.0.0 (permanent failure)\n\
            Diagnostic-Code: smtp;  550 'arathib@vnet.IBM.COM' is not a\n    registered gateway user\n\
            Remote-MTA: dns; vnet.ibm.com\n\n\
            Original-Recipient: rfc822;johnh@hpnjld.njd.hp.com\n\
            Final-Recipient: rfc822;johnh@hpnjld.njd.hp.com\n\
            Action: delayed\n\
            Status: 4.0.0 (hpnjld.njd.jp.com: host name lookup failure)\n\n\
            Original-Recipient: rfc822;wsnell@sdcc13.ucsd.edu\n\
            Final-Recipient: rfc822;wsnell@sdcc13.ucsd.edu\n\
            Action: failed\n\
            Status: 5.0.0\n\
            Diagnostic-Code: smtp; 550 user unknown\n\
            Remote-MTA: dns; sdcc13.ucsd.edu\n";
        let mut r = BounceReport::default();
        assert_eq!(read_delivery_status(body, &mut r), 3);
        assert_eq!(r.reporting_mta.as_deref(), Some("cs.utk.edu"));
        let a = &r.recipients[0];
        assert_eq!(a.address.as_deref(), Some("arathib@vnet.ibm.com"));
        assert_eq!(a.action.as_deref(), Some("failed"));
        assert_eq!(a.status.map(|s| s.to_string()).as_deref(), Some("5.0.0"));
        assert_eq!(a.reply_code, Some(550));
        assert_eq!(
            a.diagnostic.as_deref(),
            Some("550 'arathib@vnet.IBM.COM' is not a registered gateway user")
        );
        assert_eq!(a.remote_mta.as_deref(), Some("vnet.ibm.com"));
        assert_eq!((a.category, a.permanent), (Category::Other, true));
        let b = &r.recipients[1];
        assert_eq!((b.action.as_deref(), b.permanent), (Some("delayed"), false));
        assert_eq!(b.category, Category::DnsFailure);
        let c = &r.recipients[2];
        assert_eq!((c.category, c.permanent), (Category::BadMailbox, true));
    }

    #[test]
    fn success_and_missing_blank_line() {
        let body = "Reporting-MTA: dns; mx.example\r\nFinal-Recipient: rfc822; a@example.org\r\n\
                    Action: delivered\r\nStatus: 2.0.0\r\n";
        let mut r = BounceReport::default();
        assert_eq!(read_delivery_status(body, &mut r), 1);
        assert_eq!(r.reporting_mta.as_deref(), Some("mx.example"));
        assert_eq!(r.recipients[0].category, Category::Delivered);
        assert!(!r.recipients[0].permanent);
    }
}
