//! SASL client mechanisms for SMTP AUTH (RFC 4954): PLAIN, LOGIN, XOAUTH2 and CRAM-MD5.
//!
//! An [`AuthExchange`] writes the `AUTH` command and then one response line per 334
//! challenge. Whether credentials may be sent at all (TLS active, or plaintext explicitly
//! allowed) is decided by the connection before an exchange is made.
//!
//! Line limits (RFC 4954 4): the `AUTH` command line, initial response included, must fit
//! the 512-octet command line limit, so a long initial response (an OAuth2 token) is sent
//! after an empty 334 challenge instead; a response line may be up to 12288 octets.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;

use super::command;
use super::error::{Error, Result};

/// RFC 5321 4.5.3.1.4: command line limit, CRLF included.
const MAX_COMMAND_LINE: usize = 512;
/// RFC 4954 4: limit of a client response line, CRLF excluded.
const MAX_RESPONSE_LINE: usize = 12288;

/// A SASL mechanism fastsmtp can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616 PLAIN.
    Plain,
    /// The de-facto LOGIN mechanism (draft-murchison-sasl-login).
    Login,
    /// Google/Microsoft XOAUTH2 (OAuth 2.0 bearer token).
    XOAuth2,
    /// RFC 2195 CRAM-MD5.
    CramMd5,
}

impl Mechanism {
    /// Parse a mechanism name (any case).
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Plain, Self::Login, Self::XOAuth2, Self::CramMd5]
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// The IANA mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::Login => "LOGIN",
            Self::XOAuth2 => "XOAUTH2",
            Self::CramMd5 => "CRAM-MD5",
        }
    }
}

/// RFC 4616: `message = [authzid] UTF8NUL authcid UTF8NUL passwd`, base64-encoded.
pub fn plain_response(username: &str, password: &str) -> String {
    STANDARD.encode(format!("\0{username}\0{password}"))
}

/// XOAUTH2: `base64("user=" user "^Aauth=Bearer " token "^A^A")`.
pub fn xoauth2_response(username: &str, token: &str) -> String {
    STANDARD.encode(format!("user={username}\x01auth=Bearer {token}\x01\x01"))
}

/// RFC 2195: `base64(username SP hex(HMAC-MD5(secret, challenge)))`, where the challenge
/// is the base64-decoded 334 text. `None` when the challenge is not valid base64.
pub fn cram_md5_response(username: &str, secret: &str, challenge_b64: &str) -> Option<String> {
    let challenge = STANDARD.decode(challenge_b64.trim()).ok()?;
    let mut mac = Hmac::<Md5>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(&challenge);
    let digest = mac.finalize().into_bytes();
    let mut text = String::with_capacity(username.len() + 33);
    text.push_str(username);
    text.push(' ');
    for b in digest.iter() {
        text.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        text.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    Some(STANDARD.encode(text))
}

/// One AUTH exchange in progress.
#[derive(Debug)]
pub struct AuthExchange {
    mechanism: Mechanism,
    username: String,
    secret: String,
    /// 334 challenges answered so far.
    challenges: u32,
    /// The credentials (initial response or first answer) were sent.
    credentials_sent: bool,
}

impl AuthExchange {
    /// Check the credentials fit the mechanism and the line limits.
    pub fn new(mechanism: Mechanism, username: &str, secret: &str) -> Result<Self> {
        let forbidden: &[char] = match mechanism {
            Mechanism::Plain => &['\0'],
            Mechanism::XOAuth2 => &['\x01'],
            Mechanism::Login | Mechanism::CramMd5 => &[],
        };
        if username.contains(forbidden) || secret.contains(forbidden) {
            return Err(Error::local(format!(
                "credentials contain a character {} cannot carry",
                mechanism.name()
            )));
        }
        let longest = match mechanism {
            Mechanism::Plain => plain_response(username, secret).len(),
            Mechanism::XOAuth2 => xoauth2_response(username, secret).len(),
            Mechanism::Login => STANDARD.encode(username.max(secret)).len(),
            Mechanism::CramMd5 => STANDARD.encode(format!("{username} {:032}", 0)).len(),
        };
        if longest > MAX_RESPONSE_LINE {
            return Err(Error::local(
                "credentials too long for an AUTH response line",
            ));
        }
        Ok(AuthExchange {
            mechanism,
            username: username.to_owned(),
            secret: secret.to_owned(),
            challenges: 0,
            credentials_sent: false,
        })
    }

    /// The mechanism in use.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Write the AUTH command, with an initial response where the mechanism has one and it
    /// fits the command line.
    pub fn start(&mut self, out: &mut Vec<u8>) {
        let name = self.mechanism.name();
        let initial = match self.mechanism {
            Mechanism::Plain => Some(plain_response(&self.username, &self.secret)),
            Mechanism::XOAuth2 => Some(xoauth2_response(&self.username, &self.secret)),
            Mechanism::Login | Mechanism::CramMd5 => None,
        };
        match initial {
            Some(ir) if "AUTH ".len() + name.len() + 1 + ir.len() + 2 <= MAX_COMMAND_LINE => {
                command::auth(out, name, Some(&ir));
                self.credentials_sent = true;
            }
            _ => command::auth(out, name, None),
        }
    }

    /// Answer a 334 challenge (its text, base64) with one line.
    pub fn respond(&mut self, challenge: &str, out: &mut Vec<u8>) {
        self.challenges += 1;
        let response = match self.mechanism {
            Mechanism::Plain if !self.credentials_sent => {
                Some(plain_response(&self.username, &self.secret))
            }
            Mechanism::XOAuth2 if !self.credentials_sent => {
                Some(xoauth2_response(&self.username, &self.secret))
            }
            // After the token, a 334 carries a JSON error: the client answers with an empty
            // line and the server then sends the final (failure) reply.
            Mechanism::XOAuth2 => Some(String::new()),
            Mechanism::Login if self.challenges == 1 => Some(STANDARD.encode(&self.username)),
            Mechanism::Login if self.challenges == 2 => Some(STANDARD.encode(&self.secret)),
            Mechanism::CramMd5 if self.challenges == 1 => {
                cram_md5_response(&self.username, &self.secret, challenge)
            }
            _ => None,
        };
        match response {
            Some(r) => {
                self.credentials_sent = true;
                command::auth_response(out, &r);
            }
            // A challenge we have no answer for: cancel (RFC 4954 4), the server replies 501.
            None => command::auth_response(out, "*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mech: Mechanism, user: &str, secret: &str, challenges: &[&str]) -> String {
        let mut x = AuthExchange::new(mech, user, secret).unwrap();
        let mut out = Vec::new();
        x.start(&mut out);
        for c in challenges {
            x.respond(c, &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn encodings() {
        assert_eq!(
            plain_response("tim", "tanstaaftanstaaf"),
            "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"
        );
        // RFC 2195 section 2 example.
        assert_eq!(
            cram_md5_response(
                "tim",
                "tanstaaftanstaaf",
                "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"
            )
            .unwrap(),
            "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"
        );
        assert_eq!(cram_md5_response("tim", "x", "!!!"), None);
        assert_eq!(
            xoauth2_response("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"),
            "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
        );
    }

    #[test]
    fn exchanges() {
        assert_eq!(
            run(Mechanism::Plain, "u", "p", &[]),
            "AUTH PLAIN AHUAcA==\r\n"
        );
        assert_eq!(
            run(Mechanism::Plain, "u", "p", &[""]),
            "AUTH PLAIN AHUAcA==\r\n*\r\n"
        );
        assert_eq!(
            run(
                Mechanism::Login,
                "u",
                "p",
                &["VXNlcm5hbWU6", "UGFzc3dvcmQ6", "x"]
            ),
            "AUTH LOGIN\r\ndQ==\r\ncA==\r\n*\r\n"
        );
        assert_eq!(
            run(Mechanism::XOAuth2, "u", "t", &["eyJzdGF0dXMiOiI0MDEifQ=="]),
            "AUTH XOAUTH2 dXNlcj11AWF1dGg9QmVhcmVyIHQBAQ==\r\n\r\n"
        );
        assert_eq!(
            run(
                Mechanism::CramMd5,
                "tim",
                "tanstaaftanstaaf",
                &["PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"]
            ),
            "AUTH CRAM-MD5\r\ndGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw\r\n"
        );
    }

    #[test]
    fn long_initial_response_waits_for_challenge() {
        let token = "t".repeat(1000);
        let out = run(Mechanism::XOAuth2, "u", &token, &[""]);
        let lines: Vec<&str> = out.split("\r\n").collect();
        assert_eq!(lines[0], "AUTH XOAUTH2");
        assert_eq!(lines[1], xoauth2_response("u", &token));
        assert!(lines.iter().all(|l| l.len() + 2 <= MAX_RESPONSE_LINE));
        // Short enough: initial response, within 512 octets.
        let out = run(Mechanism::Plain, "u", &"p".repeat(360), &[]);
        assert!(out.starts_with("AUTH PLAIN ") && out.len() <= 512);
        let out = run(Mechanism::Plain, "u", &"p".repeat(400), &[""]);
        assert!(out.starts_with("AUTH PLAIN\r\n"));
    }

    #[test]
    fn refuses_unencodable() {
        assert!(AuthExchange::new(Mechanism::Plain, "a\0b", "p").is_err());
        assert!(AuthExchange::new(Mechanism::XOAuth2, "a", "t\x01").is_err());
        assert!(AuthExchange::new(Mechanism::Plain, "a", &"p".repeat(10_000)).is_err());
        assert_eq!(Mechanism::parse("cram-md5"), Some(Mechanism::CramMd5));
        assert_eq!(Mechanism::parse("GSSAPI"), None);
    }
}
