//! Property tests (proptest): whatever the bytes, `parse_bounce` returns a report and
//! never panics; the VERP codec round-trips every job and recipient and rejects every
//! other secret.
//!
//! Cases per property: proptest's default (256) or `PROPTEST_CASES`, e.g.
//! `PROPTEST_CASES=100000 cargo test --release --no-default-features bounce::fuzz_tests`.

use proptest::prelude::*;

use super::verp::{make_verp_address, parse_verp_address, VerpError, VerpToken};
use super::{classify, fields, parse_bounce, ParseOptions};

/// Pieces of reports, glued in random order, to reach deep parser states more often than
/// random bytes would.
fn reportish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(
            b"Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n"
                .to_vec()
        ),
        Just(b"Content-Type: multipart/report; report-type=feedback-report; boundary=B\n".to_vec()),
        Just(b"Content-Type: message/delivery-status\r\n".to_vec()),
        Just(b"Content-Type: message/feedback-report\n".to_vec()),
        Just(b"Content-Type: message/rfc822\r\n".to_vec()),
        Just(b"Content-Type: text/rfc822-headers\r\n".to_vec()),
        Just(b"Content-Transfer-Encoding: base64\r\n".to_vec()),
        Just(b"Content-Transfer-Encoding: quoted-printable\r\n".to_vec()),
        Just(b"--B\r\n".to_vec()),
        Just(b"--B--\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"Final-Recipient: rfc822; a@example.org\r\n".to_vec()),
        Just(b"Action: failed\r\nStatus: 5.1.1\r\n".to_vec()),
        Just(b"Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n".to_vec()),
        Just(b"Feedback-Type: abuse\r\nOriginal-Rcpt-To: <b@example.org>\r\n".to_vec()),
        Just(b"From: MAILER-DAEMON@x.example\r\nSubject: Undelivered Mail\r\n".to_vec()),
        Just(b"X-Failed-Recipients: c@example.org\r\n".to_vec()),
        Just(b"<d@example.org>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n".to_vec()),
        Just(b"--- Below this line is a copy of the message.\r\n".to_vec()),
        Just(b"Subject: =?utf-8?b?w6k=?= =?x?q?=ZZ?=\r\n".to_vec()),
        Just(b"To: bounces+ahuqoemer66ea5v6nfqquca@b.example\r\n".to_vec()),
        Just(b"   folded\r\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..16),
        "[ -~]{0,30}".prop_map(String::into_bytes),
    ];
    prop::collection::vec(piece, 0..60).prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn any_bytes_parse(raw in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_bounce(&raw, &ParseOptions { verp_secret: Some(b"s"), envelope_recipient: None });
    }

    #[test]
    fn reportish_bytes_parse(raw in reportish()) {
        let report = parse_bounce(&raw, &ParseOptions { verp_secret: Some(b"s"), envelope_recipient: Some("x") });
        for r in &report.recipients {
            // permanent failures are never of a category that is always soft
            prop_assert!(!(r.permanent && matches!(r.category, super::Category::MailboxFull | super::Category::RateLimited)));
        }
    }

    #[test]
    fn field_and_code_readers_take_any_text(text in "\\PC{0,300}") {
        let _ = fields::parse_groups(&text);
        let _ = fields::address_value(&text);
        let _ = classify::find_enhanced_code(&text);
        let _ = classify::find_reply_code(&text);
        let _ = classify::classify(None, None, &text);
        let _ = parse_verp_address(b"k", &text);
    }

    #[test]
    fn verp_round_trips(job in any::<u64>(), recipient in any::<u64>(), secret in prop::collection::vec(any::<u8>(), 1..64)) {
        let address = make_verp_address(&secret, "b", "x.example", job, recipient).unwrap();
        prop_assert_eq!(parse_verp_address(&secret, &address), Ok(VerpToken { job, recipient }));
        prop_assert_eq!(parse_verp_address(&secret, &address.to_ascii_uppercase()), Ok(VerpToken { job, recipient }));
        let mut other = secret.clone();
        other[0] ^= 1;
        prop_assert_eq!(parse_verp_address(&other, &address), Err(VerpError::Forged));
    }
}
