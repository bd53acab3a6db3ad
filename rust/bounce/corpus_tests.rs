//! The sample corpus (`tests/bounces/*.eml`, shared with the Python table test) from the
//! Rust side: each sample's kind matches its `.json` twin, and no prefix of any sample, nor
//! any single-byte corruption of it, makes the parser panic.

use std::fs;
use std::path::PathBuf;

use super::{parse_bounce, ParseOptions};

fn corpus() -> Vec<(String, Vec<u8>, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bounces");
    let mut out = Vec::new();
    for entry in fs::read_dir(&dir).expect("tests/bounces exists") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("eml") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let raw = fs::read(&path).unwrap();
        let json = fs::read_to_string(path.with_extension("json")).unwrap();
        // The one field needed here, without a JSON dependency: "kind": "<value>".
        let kind = json
            .split("\"kind\"")
            .nth(1)
            .and_then(|rest| rest.split('"').nth(1))
            .unwrap_or_else(|| panic!("{name}.json has no kind"))
            .to_owned();
        out.push((name, raw, kind));
    }
    out.sort();
    assert!(out.len() >= 25, "corpus too small: {}", out.len());
    out
}

const SECRET: &[u8] = b"fastsmtp-corpus-secret";

#[test]
fn kinds_match_the_expectations() {
    for (name, raw, kind) in corpus() {
        let report = parse_bounce(
            &raw,
            &ParseOptions {
                verp_secret: Some(SECRET),
                envelope_recipient: None,
            },
        );
        assert_eq!(report.kind.as_str(), kind, "{name}");
    }
}

#[test]
fn prefixes_and_corruptions_never_panic() {
    let options = ParseOptions {
        verp_secret: Some(SECRET),
        envelope_recipient: Some("bounces+x@y"),
    };
    for (_name, raw, _kind) in corpus() {
        for cut in (0..raw.len()).step_by(13) {
            let _ = parse_bounce(&raw[..cut], &options);
        }
        for at in (0..raw.len()).step_by(31) {
            for byte in [b'\n', b'-', b':', b';', 0xff, b'=', b'"'] {
                let mut bad = raw.clone();
                bad[at] = byte;
                let _ = parse_bounce(&bad, &options);
            }
        }
    }
}
