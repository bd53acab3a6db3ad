//! Command framing: the exact bytes of every SMTP command fastsmtp sends.
//!
//! Injection is impossible by construction: the framing functions take only [`Address`]
//! and [`Domain`] values (validated once, when made), numbers, and fixed keywords, never a
//! raw string. A validated value holds no CR, LF, NUL, other control character (C1 such as
//! U+0085 included), Unicode line separator, invisible character, space, `<` or `>`, so it
//! can neither end the command line early (a CRLF inside a recipient would let a caller
//! smuggle a whole extra command or transaction) nor break out of the angle brackets of a
//! path into ESMTP parameters. An address is checked by the one envelope address check
//! that the MIME path uses too ([`crate::mime::address::check_path`]).
//!
//! Every function appends to the caller's output buffer; nothing here allocates.

use std::fmt::Write as _;

use super::error::{Error, Result};
use crate::mime::address::check_path;

/// RFC 5321 4.5.3.1.2: "The maximum total length of a domain name or number is 255 octets."
pub const MAX_DOMAIN: usize = 255;

/// True for octets that may appear in a domain argument: printable ASCII except space,
/// `<` and `>`.
fn allowed(b: u8) -> bool {
    b > b' ' && b != 0x7f && b != b'<' && b != b'>'
}

/// A mailbox for `MAIL FROM:<...>` / `RCPT TO:<...>`, validated for safe framing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address(String);

impl Address {
    /// Validate `address` as a recipient (the empty null path is not allowed).
    /// `field` names it in the error.
    pub fn recipient(address: &str, field: &str) -> Result<Self> {
        Self::parse(address, false, || field.to_owned())
    }

    /// Validate `address` as a reverse-path: like a recipient, but may be `""` (the null
    /// reverse-path `<>` of bounces).
    pub fn sender(address: &str, field: &str) -> Result<Self> {
        Self::parse(address, true, || field.to_owned())
    }

    /// Validate with the one envelope address check
    /// ([`crate::mime::address::check_path`]), naming the field (computed only on error)
    /// in the error.
    /// An address the MIME builder already passed through the same check
    /// ([`crate::mime::address::check_path`]) when it built the message: not checked
    /// again on a batch's hot path (debug builds still do).
    pub(crate) fn already_checked(address: &str) -> Self {
        debug_assert!(check_path(address, true).is_ok(), "{address:?}");
        Address(address.to_owned())
    }

    pub fn parse(address: &str, null_ok: bool, field: impl FnOnce() -> String) -> Result<Self> {
        match check_path(address, null_ok) {
            Ok(()) => Ok(Address(address.to_owned())),
            Err(why) => Err(Error::invalid(why, field())),
        }
    }

    /// The address text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when the address is not ASCII, so the transaction needs SMTPUTF8 (RFC 6531).
    pub fn needs_smtputf8(&self) -> bool {
        !self.0.is_ascii()
    }
}

/// A domain or address literal for `EHLO`/`HELO`, validated for safe framing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Domain(String);

impl Domain {
    /// Validate a client hostname (ASCII, no space or control characters).
    pub fn new(domain: &str) -> Result<Self> {
        if domain.is_empty() || domain.len() > MAX_DOMAIN {
            return Err(Error::local(format!(
                "invalid local hostname {domain:?}: bad length"
            )));
        }
        if !domain.bytes().all(|b| allowed(b) && b.is_ascii()) {
            return Err(Error::local(format!("invalid local hostname {domain:?}")));
        }
        Ok(Domain(domain.to_owned()))
    }

    /// The domain text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// ESMTP parameters of a MAIL command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailParams {
    /// RFC 1870 `SIZE=<n>`.
    pub size: Option<usize>,
    /// RFC 6152 `BODY=8BITMIME`.
    pub eight_bit_mime: bool,
    /// RFC 6531 `SMTPUTF8`.
    pub smtputf8: bool,
}

/// `EHLO <domain>`
pub fn ehlo(out: &mut Vec<u8>, domain: &Domain) {
    line(out, &["EHLO ", domain.as_str()]);
}

/// `HELO <domain>`
pub fn helo(out: &mut Vec<u8>, domain: &Domain) {
    line(out, &["HELO ", domain.as_str()]);
}

/// `MAIL FROM:<sender>[ SIZE=n][ BODY=8BITMIME][ SMTPUTF8]`
pub fn mail(out: &mut Vec<u8>, sender: &Address, params: MailParams) {
    out.extend_from_slice(b"MAIL FROM:<");
    out.extend_from_slice(sender.as_str().as_bytes());
    out.push(b'>');
    if let Some(size) = params.size {
        out.extend_from_slice(b" SIZE=");
        push_number(out, size);
    }
    if params.eight_bit_mime {
        out.extend_from_slice(b" BODY=8BITMIME");
    }
    if params.smtputf8 {
        out.extend_from_slice(b" SMTPUTF8");
    }
    out.extend_from_slice(b"\r\n");
}

/// `RCPT TO:<recipient>`
pub fn rcpt(out: &mut Vec<u8>, recipient: &Address) {
    line(out, &["RCPT TO:<", recipient.as_str(), ">"]);
}

/// `DATA`
pub fn data(out: &mut Vec<u8>) {
    out.extend_from_slice(b"DATA\r\n");
}

/// The end of the DATA phase, after a CRLF-terminated dot-stuffed body: `.`
pub fn end_of_data(out: &mut Vec<u8>) {
    out.extend_from_slice(b".\r\n");
}

/// `BDAT <size> LAST`; the caller appends exactly `size` octets of the chunk after it
/// (RFC 3030: raw, not dot-stuffed).
pub fn bdat_last(out: &mut Vec<u8>, size: usize) {
    out.extend_from_slice(b"BDAT ");
    push_number(out, size);
    out.extend_from_slice(b" LAST\r\n");
}

/// `RSET`
pub fn rset(out: &mut Vec<u8>) {
    out.extend_from_slice(b"RSET\r\n");
}

/// `NOOP`
pub fn noop(out: &mut Vec<u8>) {
    out.extend_from_slice(b"NOOP\r\n");
}

/// `QUIT`
pub fn quit(out: &mut Vec<u8>) {
    out.extend_from_slice(b"QUIT\r\n");
}

/// `STARTTLS`
pub fn starttls(out: &mut Vec<u8>) {
    out.extend_from_slice(b"STARTTLS\r\n");
}

/// `AUTH <mechanism>[ <initial-response>]`; the mechanism is one of fastsmtp's fixed names
/// and the response is base64 (or `=` for an empty one), so neither can carry a line end.
pub fn auth(out: &mut Vec<u8>, mechanism: &'static str, initial_response: Option<&str>) {
    debug_assert!(initial_response.is_none_or(is_base64_token));
    out.extend_from_slice(b"AUTH ");
    out.extend_from_slice(mechanism.as_bytes());
    if let Some(ir) = initial_response {
        out.push(b' ');
        out.extend_from_slice(ir.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// One line answering a 334 challenge: base64, empty, or `*` (cancel).
pub fn auth_response(out: &mut Vec<u8>, response: &str) {
    debug_assert!(response.is_empty() || response == "*" || is_base64_token(response));
    out.extend_from_slice(response.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn is_base64_token(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

fn line(out: &mut Vec<u8>, parts: &[&str]) {
    for p in parts {
        out.extend_from_slice(p.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

fn push_number(out: &mut Vec<u8>, n: usize) {
    let mut s = String::new();
    let _ = write!(s, "{n}");
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Address {
        Address::recipient(s, "to").unwrap()
    }

    #[test]
    fn framing_table() {
        let d = Domain::new("client.example").unwrap();
        let a = addr("a@example.org");
        let u = addr("ü@example.org");
        type Frame = Box<dyn Fn(&mut Vec<u8>)>;
        let cases: Vec<(Frame, &[u8])> = vec![
            (Box::new(move |o| ehlo(o, &d)), b"EHLO client.example\r\n"),
            (
                Box::new(|o| helo(o, &Domain::new("[127.0.0.1]").unwrap())),
                b"HELO [127.0.0.1]\r\n",
            ),
            (
                Box::new({
                    let a = a.clone();
                    move |o| mail(o, &a, MailParams::default())
                }),
                b"MAIL FROM:<a@example.org>\r\n",
            ),
            (
                Box::new(|o| {
                    mail(
                        o,
                        &Address::sender("", "from").unwrap(),
                        MailParams::default(),
                    )
                }),
                b"MAIL FROM:<>\r\n",
            ),
            (
                Box::new({
                    let a = a.clone();
                    move |o| {
                        mail(
                            o,
                            &a,
                            MailParams {
                                size: Some(1234),
                                eight_bit_mime: true,
                                smtputf8: false,
                            },
                        )
                    }
                }),
                b"MAIL FROM:<a@example.org> SIZE=1234 BODY=8BITMIME\r\n",
            ),
            (
                Box::new(move |o| {
                    mail(
                        o,
                        &u,
                        MailParams {
                            size: Some(0),
                            eight_bit_mime: false,
                            smtputf8: true,
                        },
                    )
                }),
                "MAIL FROM:<ü@example.org> SIZE=0 SMTPUTF8\r\n".as_bytes(),
            ),
            (
                Box::new(move |o| rcpt(o, &a)),
                b"RCPT TO:<a@example.org>\r\n",
            ),
            (Box::new(data), b"DATA\r\n"),
            (Box::new(end_of_data), b".\r\n"),
            (Box::new(|o| bdat_last(o, 4)), b"BDAT 4 LAST\r\n"),
            (Box::new(|o| bdat_last(o, 0)), b"BDAT 0 LAST\r\n"),
            (Box::new(rset), b"RSET\r\n"),
            (Box::new(noop), b"NOOP\r\n"),
            (Box::new(quit), b"QUIT\r\n"),
            (Box::new(starttls), b"STARTTLS\r\n"),
            (
                Box::new(|o| auth(o, "PLAIN", Some("AGEAYg=="))),
                b"AUTH PLAIN AGEAYg==\r\n",
            ),
            (Box::new(|o| auth(o, "LOGIN", None)), b"AUTH LOGIN\r\n"),
            (Box::new(|o| auth_response(o, "*")), b"*\r\n"),
            (Box::new(|o| auth_response(o, "")), b"\r\n"),
        ];
        for (frame, expected) in cases {
            let mut out = Vec::new();
            frame(&mut out);
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(expected)
            );
        }
    }

    #[test]
    fn injection_is_refused() {
        for bad in [
            "a@b\r\nRCPT TO:<evil@x>",
            "a@b\n",
            "a@b\r",
            "a\0@b",
            "a b@c",
            "a@b> SIZE=1",
            "<a@b",
            "a\t@b",
            "a\x7f@b",
            "",
            "no-at-sign",
            "@b",
            "a@",
            "b@example.org\u{85}",
            "b@example.org\u{2028}",
            "b\u{2029}@example.org",
            "b\u{200b}@example.org",
            "b@exa\u{200d}mple.org",
            "\u{feff}b@example.org",
            "b\u{202e}@example.org",
            "b\u{a0}@example.org",
            "b\u{9b}@example.org",
        ] {
            assert!(
                Address::recipient(bad, "to[0]").is_err(),
                "accepted {bad:?}"
            );
        }
        assert!(Address::sender("", "sender").is_ok());
        assert!(Address::sender("a\r\n@b", "sender").is_err());
        let long = format!("{}@{}", "a".repeat(64), "b".repeat(189));
        assert_eq!(long.len(), 254);
        assert!(Address::recipient(&long, "to").is_ok());
        assert!(Address::recipient(&format!("{long}c"), "to").is_err());
        assert!(Address::recipient("jörg@bücher.de", "to").is_ok());
        for bad in ["", "a b", "a\r\nb", "é.example", &"a".repeat(256)] {
            assert!(Domain::new(bad).is_err(), "accepted {bad:?}");
        }
        let err = Address::recipient("a b", "recipients[3]").unwrap_err();
        assert!(
            matches!(err, Error::InvalidMessage { field: Some(ref f), .. } if f == "recipients[3]")
        );
    }

    #[test]
    fn smtputf8_detection() {
        assert!(addr("ü@example.org").needs_smtputf8());
        assert!(!addr("u@example.org").needs_smtputf8());
    }
}
