//! VERP addresses: a per-recipient envelope sender such as
//! `bounces+aebagbaf7xqn4zkl2mrtgi2tsnq@bounces.example.com` whose token says which job and
//! which recipient a bounce is about, signed so that nobody without the secret can make a
//! token that suppresses an address.
//!
//! Token layout (before base32): `version (1) | job (LEB128) | recipient (LEB128) | tag (10)`.
//! * The tag is HMAC-SHA256 over a context string and the bytes before it, truncated to 80
//!   bits. RFC 2104 section 5: the output may be truncated to its leftmost t bits with "t
//!   not less than half the length of the hash output [...] and not less than 80 bits";
//!   80 bits against an online forger (every guess costs them a bounce through an MTA) is
//!   ample and keeps the local part short. The context string keeps these tags apart from
//!   any other use the caller makes of the same secret.
//! * Small numbers take one or two bytes (LEB128): job 1,000,000 and recipient 5,000 make
//!   a 26-character token.
//! * Base32 (RFC 4648 section 6) in lower case, without padding, decoded case-insensitively:
//!   some MTAs lower-case (or upper-case) local parts, so the token must survive both. Its
//!   alphabet has no `+`, `-`, `=` or `.`, so the token is whatever follows the last `+` or
//!   `-` of the local part.
//!
//! [`parse_verp_address`] tells a forged or altered token (right shape, wrong tag: worth a
//! counter and an alert) from an address that is not VERP at all.

use std::sync::LazyLock;

use data_encoding::{Encoding, Specification};
use ring::hmac;

/// Layout version of the token; a new layout gets a new number.
const VERSION: u8 = 1;
/// Truncated HMAC length in bytes (80 bits, the RFC 2104 minimum).
const TAG_LEN: usize = 10;
/// Domain separation for the HMAC input.
const CONTEXT: &[u8] = b"fastsmtp-verp-v1\0";
/// RFC 5321 section 4.5.3.1.1: the maximum total length of a local part is 64 octets.
const MAX_LOCAL_PART: usize = 64;

/// Lower-case RFC 4648 base32 without padding, decoding upper case too.
static BASE32: LazyLock<Encoding> = LazyLock::new(|| {
    let mut spec = Specification::new();
    spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
    spec.translate.from.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    spec.translate.to.push_str("abcdefghijklmnopqrstuvwxyz");
    spec.encoding().expect("a valid base32 specification")
});

/// The job and recipient a valid token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerpToken {
    /// The caller's job (batch) id.
    pub job: u64,
    /// The recipient's index or id within the job.
    pub recipient: u64,
}

/// Why an address gave no [`VerpToken`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerpError {
    /// No token shape at all: an ordinary address.
    NotVerp,
    /// A token of the right shape whose signature does not verify: forged or altered.
    Forged,
}

/// Why [`make_verp_address`] could not make an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerpBuildError {
    /// The secret is empty.
    EmptySecret,
    /// The prefix or domain is empty or holds characters not allowed there.
    BadPart(&'static str),
    /// The local part would exceed 64 octets (RFC 5321 section 4.5.3.1.1).
    TooLong(usize),
}

impl std::fmt::Display for VerpBuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerpBuildError::EmptySecret => f.write_str("the VERP secret must not be empty"),
            VerpBuildError::BadPart(what) => write!(f, "invalid VERP {what}"),
            VerpBuildError::TooLong(n) => write!(
                f,
                "VERP local part would be {n} octets; RFC 5321 allows at most {MAX_LOCAL_PART}"
            ),
        }
    }
}

fn tag(secret: &[u8], payload: &[u8]) -> [u8; TAG_LEN] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(CONTEXT);
    ctx.update(payload);
    let full = ctx.sign();
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&full.as_ref()[..TAG_LEN]);
    out
}

/// Compare tags without an early exit, so the time taken does not tell a forger how many
/// leading bytes were right (ring's `hmac::verify` needs the untruncated tag).
fn tags_equal(a: &[u8; TAG_LEN], b: &[u8]) -> bool {
    b.len() == TAG_LEN && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn push_leb128(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A LEB128 number at the start of `b`, and the bytes it took. Rejects over-long
/// encodings (a trailing zero group), so each number has exactly one token.
fn read_leb128(b: &[u8]) -> Option<(u64, usize)> {
    let mut n: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7f);
        if i == 9 && bits > 1 {
            return None; // more than 64 bits
        }
        n |= bits << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return None;
            }
            return Some((n, i + 1));
        }
    }
    None
}

/// The token (base32 text) for `job` and `recipient` signed with `secret`.
pub fn make_token(secret: &[u8], job: u64, recipient: u64) -> String {
    let mut payload = Vec::with_capacity(1 + 20 + TAG_LEN);
    payload.push(VERSION);
    push_leb128(&mut payload, job);
    push_leb128(&mut payload, recipient);
    let t = tag(secret, &payload);
    payload.extend_from_slice(&t);
    BASE32.encode(&payload)
}

/// Check and decode a token (the text after the separator).
pub fn parse_token(secret: &[u8], token: &str) -> Result<VerpToken, VerpError> {
    // Shortest: version + two one-byte numbers + tag = 13 bytes = 21 characters.
    if !(21..=52).contains(&token.len()) {
        return Err(VerpError::NotVerp);
    }
    let bytes = BASE32
        .decode(token.as_bytes())
        .map_err(|_| VerpError::NotVerp)?;
    if bytes.len() < 3 + TAG_LEN || bytes[0] != VERSION {
        return Err(VerpError::NotVerp);
    }
    // From here the shape is ours: any mismatch means the token was made or changed by
    // someone without the secret.
    let (payload, given) = bytes.split_at(bytes.len() - TAG_LEN);
    let expected = tag(secret, payload);
    if !tags_equal(&expected, given) {
        return Err(VerpError::Forged);
    }
    let (job, a) = read_leb128(&payload[1..]).ok_or(VerpError::Forged)?;
    let (recipient, b) = read_leb128(&payload[1 + a..]).ok_or(VerpError::Forged)?;
    if 1 + a + b != payload.len() {
        return Err(VerpError::Forged);
    }
    Ok(VerpToken { job, recipient })
}

/// `local_prefix+TOKEN@domain` for `job` and `recipient`.
///
/// The prefix may hold letters, digits and `.`, `_`, `-`, `+` (a dot-atom, RFC 5322 section
/// 3.2.3, narrowed to what every MTA passes through unchanged); the domain letters, digits,
/// `-` and `.`.
pub fn make_verp_address(
    secret: &[u8],
    local_prefix: &str,
    domain: &str,
    job: u64,
    recipient: u64,
) -> Result<String, VerpBuildError> {
    if secret.is_empty() {
        return Err(VerpBuildError::EmptySecret);
    }
    let prefix_ok = !local_prefix.is_empty()
        && !local_prefix.starts_with('.')
        && !local_prefix.contains("..")
        && local_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'));
    if !prefix_ok {
        return Err(VerpBuildError::BadPart("local prefix"));
    }
    let domain_ok = !domain.is_empty()
        && domain.len() <= 253
        && !domain.starts_with(['.', '-'])
        && !domain.ends_with(['.', '-'])
        && !domain.contains("..")
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
    if !domain_ok {
        return Err(VerpBuildError::BadPart("domain"));
    }
    let token = make_token(secret, job, recipient);
    let local_len = local_prefix.len() + 1 + token.len();
    if local_len > MAX_LOCAL_PART {
        return Err(VerpBuildError::TooLong(local_len));
    }
    Ok(format!("{local_prefix}+{token}@{domain}"))
}

/// The job and recipient of a VERP address made with `secret`. `<...>` around the address
/// and any case changes are tolerated; the prefix and domain are not checked (route only
/// your bounce domain to the parser).
pub fn parse_verp_address(secret: &[u8], address: &str) -> Result<VerpToken, VerpError> {
    let address = address.trim().trim_start_matches('<').trim_end_matches('>');
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err(VerpError::NotVerp);
    };
    if domain.is_empty() {
        return Err(VerpError::NotVerp);
    }
    let Some(sep) = local.rfind(['+', '-']) else {
        return Err(VerpError::NotVerp);
    };
    if sep == 0 {
        return Err(VerpError::NotVerp);
    }
    parse_token(secret, &local[sep + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"correct horse battery staple";

    #[test]
    fn round_trip_and_case() {
        for (job, rcpt) in [
            (0, 0),
            (1, 2),
            (1_000_000, 5_000),
            (u64::MAX, u64::MAX),
            (127, 128),
        ] {
            let a = make_verp_address(SECRET, "bounces", "bounces.example.com", job, rcpt).unwrap();
            assert!(
                a.starts_with("bounces+") && a.ends_with("@bounces.example.com"),
                "{a}"
            );
            let want = Ok(VerpToken {
                job,
                recipient: rcpt,
            });
            assert_eq!(parse_verp_address(SECRET, &a), want);
            assert_eq!(parse_verp_address(SECRET, &a.to_uppercase()), want);
            assert_eq!(parse_verp_address(SECRET, &format!("<{a}>")), want);
            let local = a.split('@').next().unwrap();
            assert!(local.len() <= 64, "{local}");
        }
        let a = make_verp_address(SECRET, "bounces", "b.example", 1_000_000, 5_000).unwrap();
        assert_eq!(a.split('@').next().unwrap().len(), "bounces+".len() + 26);
    }

    #[test]
    fn forged_and_not_verp() {
        let a = make_verp_address(SECRET, "bounces", "bounces.example.com", 42, 7).unwrap();
        assert_eq!(
            parse_verp_address(b"another secret", &a),
            Err(VerpError::Forged)
        );
        // Change each token character in turn: every change is caught as a forgery (or,
        // where it breaks the base32 itself, as not VERP) and never decodes.
        let (local, domain) = a.split_once('@').unwrap();
        let start = local.find('+').unwrap() + 1;
        for i in start..local.len() {
            for c in ['a', 'q', '2', '7'] {
                let mut altered = local.to_owned();
                if altered.as_bytes()[i] == c as u8 {
                    continue;
                }
                altered.replace_range(i..=i, &c.to_string());
                let got = parse_verp_address(SECRET, &format!("{altered}@{domain}"));
                assert!(got.is_err(), "{altered}: {got:?}");
            }
        }
        // The version byte is intact when the first character is: a changed later character
        // is a forgery, not a stranger.
        let mut altered = local.to_owned();
        let last = local.len() - 3;
        let swap = if &local[last..=last] == "a" { "b" } else { "a" };
        altered.replace_range(last..=last, swap);
        assert_eq!(
            parse_verp_address(SECRET, &format!("{altered}@{domain}")),
            Err(VerpError::Forged)
        );
        for plain in [
            "john.smith@example.com",
            "john-smith@example.com",
            "bounces+short@example.com",
            "nobody",
            "+aebagbaf7xqn4zkl2mrtgi2tsnqaaaa@x",
            "bounces+aebagbaf7xqn4zkl2mrtgi2tsnq@",
            "bounces+!!!!!!!!!!!!!!!!!!!!!!!!!!!!@example.com",
        ] {
            assert_eq!(
                parse_verp_address(SECRET, plain),
                Err(VerpError::NotVerp),
                "{plain}"
            );
        }
    }

    #[test]
    fn build_errors() {
        assert_eq!(
            make_verp_address(b"", "b", "x.example", 1, 1),
            Err(VerpBuildError::EmptySecret)
        );
        for bad in ["", ".b", "a..b", "a b", "a@b", "a\r\nb", "ä"] {
            assert_eq!(
                make_verp_address(SECRET, bad, "x.example", 1, 1),
                Err(VerpBuildError::BadPart("local prefix")),
                "{bad:?}"
            );
        }
        for bad in [
            "",
            "-x.example",
            "x..example",
            "x example",
            "x.example.",
            "x@y",
        ] {
            assert_eq!(
                make_verp_address(SECRET, "b", bad, 1, 1),
                Err(VerpBuildError::BadPart("domain")),
                "{bad:?}"
            );
        }
        let long = "b".repeat(40);
        assert!(matches!(
            make_verp_address(SECRET, &long, "x.example", u64::MAX, u64::MAX),
            Err(VerpBuildError::TooLong(_))
        ));
    }

    #[test]
    fn leb128_is_canonical() {
        assert_eq!(read_leb128(&[0x80, 0x00]), None); // zero written in two bytes
        assert_eq!(read_leb128(&[0x80]), None); // unterminated
        assert_eq!(read_leb128(&[0xff; 11]), None);
        assert_eq!(read_leb128(&[0x00]), Some((0, 1)));
        let mut v = Vec::new();
        push_leb128(&mut v, u64::MAX);
        assert_eq!(read_leb128(&v), Some((u64::MAX, 10)));
        let mut over = v.clone();
        over[9] = 0x02; // bit 64
        assert_eq!(read_leb128(&over), None);
    }
}
