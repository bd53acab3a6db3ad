//! RFC 5965 feedback reports (ARF): the fields of a `message/feedback-report` part.
//!
//! RFC 5965 section 3.1: the part holds `Feedback-Type`, `User-Agent` and `Version` (each
//! exactly once), optionally `Original-Envelope-Id`, `Original-Mail-From`, `Arrival-Date`,
//! `Reporting-MTA`, `Source-IP`, `Incidents` (at most once) and `Authentication-Results`,
//! `Original-Rcpt-To`, `Reported-Domain`, `Reported-URI` (any number). Older reports (ARF
//! before the RFC, still sent by some providers) say `Received-Date` for `Arrival-Date`.

use super::classify::Category;
use super::fields::{self, address_value, first_word, get, get_all, typed_value};
use super::report::{BounceReport, FeedbackReport, RecipientReport};

/// Read a feedback-report body into `report` (its `feedback` and one recipient per
/// `Original-Rcpt-To`). Returns false if the body has no `Feedback-Type`.
pub fn read_feedback_report(text: &str, report: &mut BounceReport) -> bool {
    // The fields are one group; tolerate stray blank lines by reading all groups as one.
    let all: Vec<fields::Field> = fields::parse_groups(text).into_iter().flatten().collect();
    let Some(feedback_type) = get(&all, "Feedback-Type")
        .map(first_word)
        .filter(|t| !t.is_empty())
    else {
        return false;
    };
    let fb = FeedbackReport {
        feedback_type,
        user_agent: get(&all, "User-Agent").map(str::to_owned),
        version: get(&all, "Version").map(str::to_owned),
        original_mail_from: get(&all, "Original-Mail-From").and_then(address_value),
        original_rcpt_to: get_all(&all, "Original-Rcpt-To")
            .filter_map(address_value)
            .collect(),
        arrival_date: get(&all, "Arrival-Date")
            .or_else(|| get(&all, "Received-Date"))
            .map(str::to_owned),
        reporting_mta: get(&all, "Reporting-MTA").map(|v| typed_value(v).1.to_owned()),
        source_ip: get(&all, "Source-IP").map(str::to_owned),
        reported_domain: get_all(&all, "Reported-Domain")
            .map(str::to_owned)
            .collect(),
        reported_uri: get_all(&all, "Reported-URI").map(str::to_owned).collect(),
        authentication_results: get(&all, "Authentication-Results").map(str::to_owned),
        original_envelope_id: get(&all, "Original-Envelope-Id").map(str::to_owned),
        incidents: get(&all, "Incidents").and_then(|v| v.trim().parse().ok()),
    };
    // A complaint is about the people who complained: hard, whatever the feedback type
    // (a "not-spam" report is the opposite and suppresses nobody).
    let complaint = fb.feedback_type != "not-spam";
    for address in &fb.original_rcpt_to {
        report.recipients.push(RecipientReport {
            address: Some(address.clone()),
            original_recipient: None,
            action: None,
            status: None,
            reply_code: None,
            diagnostic: None,
            diagnostic_type: None,
            remote_mta: None,
            last_attempt_date: None,
            will_retry_until: None,
            category: if complaint {
                Category::Complaint
            } else {
                Category::Other
            },
            permanent: complaint,
        });
    }
    report.reporting_mta = report
        .reporting_mta
        .take()
        .or_else(|| fb.reporting_mta.clone());
    report.arrival_date = report
        .arrival_date
        .take()
        .or_else(|| fb.arrival_date.clone());
    report.envelope_id = report
        .envelope_id
        .take()
        .or_else(|| fb.original_envelope_id.clone());
    report.original_sender = report
        .original_sender
        .take()
        .or_else(|| fb.original_mail_from.clone());
    report.feedback = Some(fb);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5965_fields() {
        let body = "Feedback-Type: abuse\r\nUser-Agent: SomeGenerator/1.0\r\nVersion: 1\r\n\
            Original-Mail-From: <somespammer@example.net>\r\nOriginal-Rcpt-To: <user@example.com>\r\n\
            Arrival-Date: Thu, 8 Mar 2005 14:00:00 EDT\r\nReporting-MTA: dns; mail.example.com\r\n\
            Source-IP: 192.0.2.1\r\nAuthentication-Results: mail.example.com;\r\n        spf=fail smtp.mail=somespammer@example.com\r\n\
            Reported-Domain: example.net\r\nReported-URI: http://example.net/earn_money.html\r\n\
            Reported-URI: mailto:user@example.com\r\nRemoval-Recipient: user@example.com\r\n";
        let mut r = BounceReport::default();
        assert!(read_feedback_report(body, &mut r));
        let fb = r.feedback.as_ref().unwrap();
        assert_eq!(fb.feedback_type, "abuse");
        assert_eq!(
            fb.original_mail_from.as_deref(),
            Some("somespammer@example.net")
        );
        assert_eq!(fb.original_rcpt_to, vec!["user@example.com"]);
        assert_eq!(fb.reported_uri.len(), 2);
        assert_eq!(fb.reporting_mta.as_deref(), Some("mail.example.com"));
        assert_eq!(
            fb.authentication_results.as_deref(),
            Some("mail.example.com; spf=fail smtp.mail=somespammer@example.com")
        );
        assert_eq!(r.recipients.len(), 1);
        assert_eq!(
            (r.recipients[0].category, r.recipients[0].permanent),
            (Category::Complaint, true)
        );
        assert_eq!(
            r.original_sender.as_deref(),
            Some("somespammer@example.net")
        );
    }

    #[test]
    fn no_feedback_type_is_not_a_report() {
        let mut r = BounceReport::default();
        assert!(!read_feedback_report("User-Agent: x\nVersion: 1\n", &mut r));
        assert!(r.feedback.is_none());
    }
}
