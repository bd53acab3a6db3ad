//! The EHLO reply: which SMTP service extensions the server offers.
//!
//! RFC 5321 4.1.1.1:
//! ```text
//! ehlo-ok-rsp  = ( "250" SP Domain [ SP ehlo-greet ] CRLF )
//!              / ( "250-" Domain [ SP ehlo-greet ] CRLF
//!                 *( "250-" ehlo-line CRLF )
//!                 "250" SP ehlo-line CRLF )
//! ehlo-line    = ehlo-keyword *( SP ehlo-param )
//! ```
//! Keywords are case-insensitive. Unknown keywords are ignored; a malformed parameter (a
//! SIZE that is not a number) degrades to "offered without a limit" rather than failing the
//! connection.

use super::reply::Reply;

/// What the server's EHLO reply offered (everything off after HELO).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// RFC 2920 command pipelining.
    pub pipelining: bool,
    /// RFC 3030 CHUNKING (BDAT).
    pub chunking: bool,
    /// RFC 1870 SIZE: `None` when not offered, `Some(0)` when offered without a limit.
    pub size: Option<u64>,
    /// RFC 6152 8BITMIME.
    pub eight_bit_mime: bool,
    /// RFC 6531 SMTPUTF8.
    pub smtputf8: bool,
    /// RFC 3207 STARTTLS.
    pub starttls: bool,
    /// RFC 4954 AUTH mechanisms, upper-case, in the server's order, without duplicates.
    pub auth: Vec<String>,
    /// RFC 2034 ENHANCEDSTATUSCODES.
    pub enhanced_status_codes: bool,
    /// RFC 3461 DSN.
    pub dsn: bool,
    /// False when the server refused EHLO and HELO was used.
    pub esmtp: bool,
}

impl Capabilities {
    /// What a server that only answered HELO offers: nothing.
    pub fn helo() -> Self {
        Self::default()
    }

    /// Parse a positive EHLO reply (its first line is the server's domain and greeting).
    pub fn from_ehlo(reply: &Reply) -> Self {
        let mut caps = Capabilities {
            esmtp: true,
            ..Self::default()
        };
        for line in reply.lines().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            // The pre-RFC "AUTH=LOGIN PLAIN" form, still sent by some servers.
            let (keyword, first_param) = match keyword.split_once('=') {
                Some((k, p)) if k.eq_ignore_ascii_case("AUTH") => (k, Some(p)),
                _ => (keyword, None),
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => caps.pipelining = true,
                "CHUNKING" => caps.chunking = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "STARTTLS" => caps.starttls = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "DSN" => caps.dsn = true,
                // RFC 1870: "SIZE" [SP size-limit]; 0 or absent means no fixed limit.
                "SIZE" => caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "AUTH" => {
                    for mech in first_param.into_iter().chain(words) {
                        let mech = mech.to_ascii_uppercase();
                        if !mech.is_empty() && !caps.auth.contains(&mech) {
                            caps.auth.push(mech);
                        }
                    }
                }
                _ => {}
            }
        }
        caps
    }

    /// True when `mechanism` (any case) was offered.
    pub fn offers_auth(&self, mechanism: &str) -> bool {
        self.auth.iter().any(|m| m.eq_ignore_ascii_case(mechanism))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::reply::parse_all;

    fn caps(data: &[u8]) -> Capabilities {
        Capabilities::from_ehlo(&parse_all(data, 65536).unwrap()[0])
    }

    #[test]
    fn postfix() {
        let c = caps(
            b"250-localhost\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n\
              250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n\
              250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n",
        );
        assert_eq!(
            c,
            Capabilities {
                pipelining: true,
                chunking: true,
                size: Some(10_240_000),
                eight_bit_mime: true,
                smtputf8: true,
                starttls: true,
                auth: vec!["PLAIN".into(), "LOGIN".into()],
                enhanced_status_codes: true,
                dsn: true,
                esmtp: true,
            }
        );
        assert!(c.offers_auth("plain") && !c.offers_auth("CRAM-MD5"));
    }

    #[test]
    fn variants() {
        assert_eq!(
            caps(b"250 mx.example.org\r\n"),
            Capabilities {
                esmtp: true,
                ..Default::default()
            }
        );
        assert_eq!(caps(b"250-x\r\n250 SIZE\r\n").size, Some(0));
        assert_eq!(caps(b"250-x\r\n250 size nonsense\r\n").size, Some(0));
        assert_eq!(caps(b"250-x\r\n250 SIZE 0\r\n").size, Some(0));
        assert!(caps(b"250-x\r\n250 pipelining\r\n").pipelining);
        assert_eq!(
            caps(b"250-x\r\n250 AUTH=login cram-md5\r\n").auth,
            vec!["LOGIN", "CRAM-MD5"]
        );
        assert!(!caps(b"250-x\r\n250-\r\n250    \r\n").pipelining);
        // The domain line is never a keyword.
        assert!(!caps(b"250-PIPELINING\r\n250 HELP\r\n").pipelining);
        assert!(!Capabilities::helo().esmtp);
    }
}
