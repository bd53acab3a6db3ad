//! libFuzzer target: `parse_bounce` must return a report for any bytes, and the VERP
//! parser must never accept a token it did not make.
#![no_main]

use _fastsmtp::bounce::{parse_bounce, parse_verp_address, ParseOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let options = ParseOptions {
        verp_secret: Some(b"fuzz-secret"),
        envelope_recipient: std::str::from_utf8(data.get(..40).unwrap_or(data)).ok(),
    };
    let report = parse_bounce(data, &options);
    // A valid token can only come from the secret: random input must not forge one.
    assert!(!matches!(report.verp, Some(Ok(_))));
    if let Ok(text) = std::str::from_utf8(data) {
        assert!(parse_verp_address(b"fuzz-secret", text).is_err());
    }
});
