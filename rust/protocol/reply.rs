//! SMTP reply parsing: multi-line replies, RFC 3463 enhanced status codes, hostile input.
//!
//! [`ReplyParser`] is an incremental parser: bytes are [`fed`](ReplyParser::feed) as they
//! arrive, split anywhere, and complete replies are taken out one at a time with
//! [`next_reply`](ReplyParser::next_reply). The buffer remembers how far it has already
//! searched for a line end, so a reply trickling in one byte at a time is still parsed in
//! O(n), and consumed bytes are dropped in one move per feed, not per line.
//!
//! Limits against a hostile peer: a line longer than [`MAX_LINE`] octets (checked even
//! before its line end arrives), a reply longer than `max_reply_bytes`, a code that is not
//! three digits starting with 2-5, a continuation line whose code differs from the first
//! line's, or a fourth character other than `-`, space or the line end are all
//! [`Error::Remote`]. Lines end with CRLF; a bare LF is tolerated (it is what many
//! servers' error paths send), a bare CR is part of the text.

use std::fmt;

use memchr::memchr;

use super::error::{Error, Result};

/// Longest reply line accepted, in octets without the line end. RFC 5321 4.5.3.1.5 says 512
/// including CRLF; real servers exceed it with long texts, so we allow four times that.
pub const MAX_LINE: usize = 2048;

/// Default limit of one whole (multi-line) reply in octets.
pub const DEFAULT_MAX_REPLY_BYTES: usize = 65536;

/// An RFC 3463 enhanced status code `class.subject.detail`, such as `2.1.5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    pub class: u8,
    /// 0 to 999.
    pub subject: u16,
    /// 0 to 999.
    pub detail: u16,
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One complete SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code.
    pub code: u16,
    /// The enhanced status code of the first line, when there is one of the same class.
    pub enhanced: Option<EnhancedCode>,
    /// The text of all lines joined with `\n`, without codes and enhanced codes.
    pub text: String,
}

impl Reply {
    /// A reply from its parts (for tests and synthetic replies).
    pub fn new(code: u16, text: &str) -> Self {
        Reply {
            code,
            enhanced: None,
            text: text.to_owned(),
        }
    }

    /// 2xx or 3xx.
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// 2xx.
    pub fn is_completion(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 4xx.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// The text lines (the first is the EHLO domain in an EHLO reply).
    pub fn lines(&self) -> std::str::Split<'_, char> {
        self.text.split('\n')
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(e) = self.enhanced {
            write!(f, " {e}")?;
        }
        if !self.text.is_empty() {
            write!(f, " {}", self.text.replace('\n', " / "))?;
        }
        Ok(())
    }
}

/// RFC 3463 section 2:
/// ```text
/// status-code = class "." subject "." detail
/// class       = "2" / "4" / "5"
/// subject     = 1*3digit
/// detail      = 1*3digit
/// ```
/// followed by a space or the end of the line. Returns the code and the rest of the text
/// after the separating space. Only a code of the reply's own class is recognised (a `2.x.x`
/// in a 5xx reply is ordinary text).
fn split_enhanced(text: &[u8], reply_class: u8) -> Option<(EnhancedCode, &[u8])> {
    let class = *text.first()?;
    if !matches!(class, b'2' | b'4' | b'5') || class - b'0' != reply_class {
        return None;
    }
    let (subject, rest) = digits(text.get(2..)?, 3)?;
    if text.get(1) != Some(&b'.') || rest.first() != Some(&b'.') {
        return None;
    }
    let (detail, rest) = digits(&rest[1..], 3)?;
    let rest = match rest.split_first() {
        None => rest,
        Some((b' ', tail)) => tail,
        Some(_) => return None,
    };
    Some((
        EnhancedCode {
            class: class - b'0',
            subject,
            detail,
        },
        rest,
    ))
}

/// 1..=max leading ASCII digits as a number, and the rest.
fn digits(s: &[u8], max: usize) -> Option<(u16, &[u8])> {
    let n = s
        .iter()
        .take(max + 1)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if n == 0 || n > max {
        return None;
    }
    let value = s[..n]
        .iter()
        .fold(0u16, |acc, b| acc * 10 + u16::from(b - b'0'));
    Some((value, &s[n..]))
}

/// The reply being assembled from its lines.
#[derive(Debug)]
struct Partial {
    code: [u8; 3],
    enhanced: Option<EnhancedCode>,
    text: String,
    bytes: usize,
}

/// Incremental reply parser; see the module documentation.
#[derive(Debug)]
pub struct ReplyParser {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    pos: usize,
    /// Everything in `buf[pos..scanned]` is known to hold no `\n`.
    scanned: usize,
    partial: Option<Partial>,
    max_reply_bytes: usize,
}

impl Default for ReplyParser {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_REPLY_BYTES)
    }
}

impl ReplyParser {
    /// A parser refusing replies longer than `max_reply_bytes` octets in total.
    pub fn new(max_reply_bytes: usize) -> Self {
        ReplyParser {
            buf: Vec::new(),
            pos: 0,
            scanned: 0,
            partial: None,
            max_reply_bytes,
        }
    }

    /// Append bytes received from the server.
    pub fn feed(&mut self, data: &[u8]) {
        if self.pos > 0 {
            // Drop what was consumed: only an incomplete line (at most MAX_LINE) moves.
            self.buf.drain(..self.pos);
            self.scanned -= self.pos;
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Forget everything buffered, including a half-received reply (used after the 220 to
    /// STARTTLS: bytes sent before the TLS handshake must never be processed).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.pos = 0;
        self.scanned = 0;
        self.partial = None;
    }

    /// True when no byte of an unfinished reply is buffered.
    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len() && self.partial.is_none()
    }

    /// The next complete reply, `Ok(None)` when more bytes are needed.
    ///
    /// After an error the parser's state is unspecified; the connection treats it as fatal.
    pub fn next_reply(&mut self) -> Result<Option<Reply>> {
        loop {
            let Some(i) = memchr(b'\n', &self.buf[self.scanned..]) else {
                self.scanned = self.buf.len();
                if self.scanned - self.pos > MAX_LINE {
                    return Err(Error::remote(format!(
                        "reply line longer than {MAX_LINE} octets"
                    )));
                }
                return Ok(None);
            };
            let end = self.scanned + i;
            let start = self.pos;
            self.pos = end + 1;
            self.scanned = self.pos;
            let line_end = if end > start && self.buf[end - 1] == b'\r' {
                end - 1
            } else {
                end
            };
            if let Some(reply) = self.line(start, line_end)? {
                return Ok(Some(reply));
            }
        }
    }

    /// Process the line `buf[start..end]` (without its line end).
    fn line(&mut self, start: usize, end: usize) -> Result<Option<Reply>> {
        let line = &self.buf[start..end];
        if line.len() > MAX_LINE {
            return Err(Error::remote(format!(
                "reply line longer than {MAX_LINE} octets"
            )));
        }
        // RFC 5321 4.2:
        //   Reply-line     = *( Reply-code "-" [ textstring ] CRLF )
        //                    Reply-code [ SP textstring ] CRLF
        //   Reply-code     = %x32-35 %x30-35 %x30-39
        // (the middle digit is accepted up to 9: servers use x6x-x9x in the wild.)
        let code: [u8; 3] = match line {
            [a @ b'2'..=b'5', b @ b'0'..=b'9', c @ b'0'..=b'9', ..] => [*a, *b, *c],
            _ => {
                return Err(Error::remote(format!(
                    "malformed reply line {}",
                    preview(line)
                )))
            }
        };
        let last = match line.get(3) {
            None | Some(b' ') => true,
            Some(b'-') => false,
            Some(_) => {
                return Err(Error::remote(format!(
                    "malformed reply line {}",
                    preview(line)
                )))
            }
        };
        let text = line.get(4..).unwrap_or(&[]);
        let class = code[0] - b'0';
        match &mut self.partial {
            None => {
                let (enhanced, text) = match split_enhanced(text, class) {
                    Some((e, rest)) => (Some(e), rest),
                    None => (None, text),
                };
                self.partial = Some(Partial {
                    code,
                    enhanced,
                    text: utf8_text(text),
                    bytes: line.len(),
                });
            }
            Some(p) => {
                if p.code != code {
                    return Err(Error::remote(format!(
                        "reply code changed within a multi-line reply: {} then {}",
                        preview(&p.code),
                        preview(&code)
                    )));
                }
                p.bytes += line.len() + 2;
                if p.bytes > self.max_reply_bytes {
                    return Err(Error::remote(format!(
                        "reply longer than {} octets",
                        self.max_reply_bytes
                    )));
                }
                let text = match (p.enhanced, split_enhanced(text, class)) {
                    (Some(_), Some((_, rest))) => rest,
                    _ => text,
                };
                p.text.push('\n');
                push_utf8(&mut p.text, text);
            }
        }
        if !last {
            return Ok(None);
        }
        let Some(p) = self.partial.take() else {
            return Ok(None);
        };
        if p.bytes > self.max_reply_bytes {
            return Err(Error::remote(format!(
                "reply longer than {} octets",
                self.max_reply_bytes
            )));
        }
        let code = p
            .code
            .iter()
            .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
        Ok(Some(Reply {
            code,
            enhanced: p.enhanced,
            text: p.text,
        }))
    }
}

/// A short, printable rendering of hostile bytes for error messages.
fn preview(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(40)];
    let mut s = format!("{:?}", String::from_utf8_lossy(shown));
    if bytes.len() > shown.len() {
        s.push_str("...");
    }
    s
}

/// Parse every complete reply in `data`; trailing incomplete bytes are ignored.
pub fn parse_all(data: &[u8], max_reply_bytes: usize) -> Result<Vec<Reply>> {
    let mut parser = ReplyParser::new(max_reply_bytes);
    parser.feed(data);
    let mut replies = Vec::new();
    while let Some(r) = parser.next_reply()? {
        replies.push(r);
    }
    Ok(replies)
}

/// Reply text as a `String`, invalid UTF-8 replaced (as `from_utf8_lossy`).
fn utf8_text(text: &[u8]) -> String {
    // An exact-size copy: growing an empty String goes through the generic reserve path,
    // which cost more than the copy itself (four replies per message).
    match std::str::from_utf8(text) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(text).into_owned(),
    }
}

/// Append reply text, invalid UTF-8 replaced: plain validation first, which is faster
/// than `from_utf8_lossy` on the usual ASCII text.
fn push_utf8(out: &mut String, text: &[u8]) {
    match std::str::from_utf8(text) {
        Ok(s) => out.push_str(s),
        Err(_) => out.push_str(&String::from_utf8_lossy(text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(data: &[u8]) -> Reply {
        let replies = parse_all(data, DEFAULT_MAX_REPLY_BYTES).unwrap();
        assert_eq!(replies.len(), 1, "{replies:?}");
        replies.into_iter().next().unwrap()
    }

    /// Feed whole, and one byte at a time: both must give the same replies.
    fn both_ways(data: &[u8]) -> Result<Vec<Reply>> {
        let whole = parse_all(data, DEFAULT_MAX_REPLY_BYTES);
        let mut parser = ReplyParser::default();
        let mut bytewise = Vec::new();
        let bytewise = (|| {
            for b in data {
                parser.feed(std::slice::from_ref(b));
                while let Some(r) = parser.next_reply()? {
                    bytewise.push(r);
                }
            }
            Ok(bytewise)
        })();
        assert_eq!(whole, bytewise, "whole vs bytewise differ for {data:?}");
        whole
    }

    #[test]
    fn table() {
        let ok = |code, enh: Option<(u8, u16, u16)>, text: &str| Reply {
            code,
            enhanced: enh.map(|(class, subject, detail)| EnhancedCode {
                class,
                subject,
                detail,
            }),
            text: text.into(),
        };
        let cases: Vec<(&[u8], Vec<Reply>)> = vec![
            (b"250 OK\r\n", vec![ok(250, None, "OK")]),
            (b"250\r\n", vec![ok(250, None, "")]),
            (b"250 \r\n", vec![ok(250, None, "")]),
            (b"250 2.1.5 Ok\r\n", vec![ok(250, Some((2, 1, 5)), "Ok")]),
            (b"250 2.1.5\r\n", vec![ok(250, Some((2, 1, 5)), "")]),
            (
                b"550 5.7.1 <x@y>: Relay access denied\r\n",
                vec![ok(550, Some((5, 7, 1)), "<x@y>: Relay access denied")],
            ),
            // Enhanced code of another class is text.
            (b"550 2.1.5 odd\r\n", vec![ok(550, None, "2.1.5 odd")]),
            (
                b"354 End data with <CR><LF>.<CR><LF>\r\n",
                vec![ok(354, None, "End data with <CR><LF>.<CR><LF>")],
            ),
            (b"250 2.1.50x\r\n", vec![ok(250, None, "2.1.50x")]),
            (b"250 2.1234.5 x\r\n", vec![ok(250, None, "2.1234.5 x")]),
            (
                b"452 4.5.3 Too many\r\n",
                vec![ok(452, Some((4, 5, 3)), "Too many")],
            ),
            (
                b"250-mx.example.org\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 CHUNKING\r\n",
                vec![ok(
                    250,
                    None,
                    "mx.example.org\nPIPELINING\n8BITMIME\nCHUNKING",
                )],
            ),
            (
                b"550-5.1.1 first\r\n550 5.1.1 second\r\n",
                vec![ok(550, Some((5, 1, 1)), "first\nsecond")],
            ),
            (b"220-a\r\n220-\r\n220 b\r\n", vec![ok(220, None, "a\n\nb")]),
            // Bare LF tolerated; a bare CR is text.
            (
                b"250 a\n251 b\r\n",
                vec![ok(250, None, "a"), ok(251, None, "b")],
            ),
            (b"250 a\rb\r\n", vec![ok(250, None, "a\rb")]),
            // Several replies in one read.
            (
                b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n",
                vec![
                    ok(250, Some((2, 1, 0)), "Ok"),
                    ok(250, Some((2, 1, 5)), "Ok"),
                    ok(354, None, "go"),
                ],
            ),
            // Non-UTF-8 text is replaced, not an error.
            (b"250 caf\xe9\r\n", vec![ok(250, None, "caf\u{fffd}")]),
            // Incomplete input gives nothing yet.
            (b"250-a\r\n250 b", vec![]),
            (b"25", vec![]),
            (b"", vec![]),
        ];
        for (data, expected) in cases {
            assert_eq!(
                both_ways(data).unwrap(),
                expected,
                "for {:?}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn malformed() {
        let long_line = [b"250 ".as_slice(), &[b'x'; MAX_LINE], b"\r\n"].concat();
        let unterminated = [b"250 ".as_slice(), &[b'x'; MAX_LINE]].concat();
        let cases: Vec<&[u8]> = vec![
            b"hello\r\n",
            b"\r\n",
            b"25\r\n",
            b"2a0 x\r\n",
            b"150 x\r\n",
            b"650 x\r\n",
            b"250x\r\n",
            b"250_x\r\n",
            b"250-a\r\n251 b\r\n",
            b"250-a\r\n550 b\r\n",
            b"250-a\r\nxyz\r\n",
            &long_line,
            &unterminated,
        ];
        for data in cases {
            assert!(
                both_ways(data).is_err(),
                "accepted {:?}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn reply_limit() {
        let mut data = Vec::new();
        for _ in 0..100 {
            data.extend_from_slice(b"250-0123456789012345678901234567890123456789\r\n");
        }
        data.extend_from_slice(b"250 end\r\n");
        assert!(parse_all(&data, 1000).is_err());
        assert_eq!(parse_all(&data, 10_000).unwrap().len(), 1);
    }

    #[test]
    fn incomplete_then_complete() {
        let mut p = ReplyParser::default();
        p.feed(b"250-a\r");
        assert_eq!(p.next_reply().unwrap(), None);
        assert!(!p.is_empty());
        p.feed(b"\n250 b");
        assert_eq!(p.next_reply().unwrap(), None);
        p.feed(b"\r\n");
        assert_eq!(p.next_reply().unwrap(), Some(Reply::new(250, "a\nb")));
        assert_eq!(p.next_reply().unwrap(), None);
        assert!(p.is_empty());
    }

    #[test]
    fn clear_forgets_everything() {
        let mut p = ReplyParser::default();
        p.feed(b"250-a\r\n250 b\r\n220 c");
        p.next_reply().unwrap();
        p.clear();
        assert!(p.is_empty());
        p.feed(b"\r\n250 fresh\r\n");
        // The orphaned "\r\n" is an empty line: malformed.
        assert!(p.next_reply().is_err());
    }

    #[test]
    fn classification() {
        assert!(Reply::new(250, "").is_positive() && Reply::new(354, "").is_positive());
        assert!(Reply::new(421, "").is_transient() && !Reply::new(421, "").is_positive());
        assert!(Reply::new(554, "").is_permanent());
        assert_eq!(
            one(b"250 2.0.0 Ok: queued\r\n").to_string(),
            "250 2.0.0 Ok: queued"
        );
    }

    #[test]
    fn quadratic_guard() {
        // 2000 bytes of a line one at a time: the scan position must advance, not restart.
        let mut p = ReplyParser::default();
        p.feed(b"250 ");
        for _ in 0..2000 {
            p.feed(b"x");
            assert_eq!(p.next_reply().unwrap(), None);
            assert_eq!(p.scanned, p.buf.len());
        }
    }
}
