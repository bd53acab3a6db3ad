//! Header field writing: folding, RFC 2047 encoded-words, quoting of display names,
//! RFC 2231 parameters, and the rules for caller-supplied header names.
//!
//! Folding (RFC 5322 2.2.3) only ever inserts CRLF before whitespace that is already in
//! the value, so unfolding gives back the value exactly; a token that cannot be broken
//! (a URL in List-Unsubscribe, a Message-ID) stays whole on its own line. Lines are folded
//! at 78 columns where possible and are never longer than 998 octets: a value that cannot
//! be folded under that limit is written as encoded-words, which can always be split.

use super::address::{Mailbox, ATEXT};
use super::error::{check_no_ctl, MimeError, Result};

/// RFC 5322 2.1.1: lines SHOULD be at most 78 characters, excluding the CRLF.
pub const FOLD_AT: usize = 78;
/// RFC 5322 2.1.1: lines MUST be at most 998 characters, excluding the CRLF.
pub const MAX_LINE: usize = 998;
/// Longest caller-supplied header name we accept, so that a header's first line always has
/// room for a value.
pub const MAX_NAME: usize = 76;
/// RFC 2047 2: "An 'encoded-word' may not be more than 75 characters long".
const MAX_WORD: usize = 75;
/// `=?utf-8?q?` + `?=`.
const WORD_OVERHEAD: usize = 12;

/// One header field being written: tracks the column to fold at whitespace.
pub struct HeaderLine<'a> {
    out: &'a mut Vec<u8>,
    col: usize,
    start_col: usize,
}

impl<'a> HeaderLine<'a> {
    /// Write `Name:` and return the line, ready for tokens.
    pub fn start(out: &'a mut Vec<u8>, name: &str) -> Self {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        let col = name.len() + 1;
        HeaderLine {
            out,
            col,
            start_col: col,
        }
    }

    /// Append `token` after the whitespace `ws`. When `ws` is not empty and the token would
    /// pass column 78, fold first: CRLF goes before `ws`, which starts the next line.
    pub fn token(&mut self, ws: &[u8], token: &[u8]) {
        if !ws.is_empty()
            && self.col > self.start_col
            && self.col + ws.len() + token.len() > FOLD_AT
        {
            self.out.extend_from_slice(b"\r\n");
            self.col = 0;
        }
        self.out.extend_from_slice(ws);
        self.out.extend_from_slice(token);
        self.col += ws.len() + token.len();
    }

    /// [`HeaderLine::token`] for a token given in pieces (written without joining them).
    pub fn token_parts(&mut self, ws: &[u8], parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if !ws.is_empty() && self.col > self.start_col && self.col + ws.len() + len > FOLD_AT {
            self.out.extend_from_slice(b"\r\n");
            self.col = 0;
        }
        self.out.extend_from_slice(ws);
        for p in parts {
            self.out.extend_from_slice(p);
        }
        self.col += ws.len() + len;
    }

    /// The current column (octets since the last line break).
    pub fn column(&self) -> usize {
        self.col
    }

    /// End the field with CRLF.
    pub fn finish(self) {
        self.out.extend_from_slice(b"\r\n");
    }
}

/// Write `Name: value` for an unstructured value (Subject, most extra headers).
///
/// ASCII text is folded at its whitespace. Text with non-ASCII or control characters,
/// with `=?` (which a reader would take for an encoded-word), with leading or trailing
/// whitespace, or with a word too long to fit in 998 octets is written as RFC 2047
/// encoded-words, which decode to exactly the value.
pub fn write_unstructured(out: &mut Vec<u8>, name: &str, value: &str) {
    // The usual Subject: printable ASCII that fits on the first line as it is. Folding
    // and encoded-words would write exactly this.
    let b = value.as_bytes();
    if !b.is_empty()
        && name.len() + 2 + b.len() <= FOLD_AT
        && b[0] != b' '
        && b[b.len() - 1] != b' '
        && b.iter().all(|&c| matches!(c, b' '..=b'~'))
        && memchr::memmem::find(b, b"=?").is_none()
    {
        out.reserve(name.len() + b.len() + 4);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(b);
        out.extend_from_slice(b"\r\n");
        return;
    }
    let mut h = HeaderLine::start(out, name);
    if needs_encoded_words(value, name.len()) {
        write_encoded_words(&mut h, value);
    } else {
        let mut first = true;
        for (ws, word) in split_words(value.as_bytes()) {
            let ws: &[u8] = if first { b" " } else { ws };
            first = false;
            h.token(ws, word);
        }
    }
    h.finish();
}

/// Split into `(whitespace before, word)` pairs (the first pair's whitespace is empty).
fn split_words(v: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut i = 0;
    std::iter::from_fn(move || {
        if i >= v.len() {
            return None;
        }
        let ws_start = i;
        while i < v.len() && matches!(v[i], b' ' | b'\t') {
            i += 1;
        }
        let word_start = i;
        while i < v.len() && !matches!(v[i], b' ' | b'\t') {
            i += 1;
        }
        Some((&v[ws_start..word_start], &v[word_start..i]))
    })
}

fn needs_encoded_words(value: &str, name_len: usize) -> bool {
    let b = value.as_bytes();
    if b.is_empty() {
        return false;
    }
    if matches!(b[0], b' ' | b'\t') || matches!(b[b.len() - 1], b' ' | b'\t') {
        return true;
    }
    if !b.iter().all(|&c| matches!(c, b' '..=b'~' | b'\t')) || value.contains("=?") {
        return true;
    }
    let longest = split_words(b)
        .map(|(ws, w)| ws.len() + w.len())
        .max()
        .unwrap_or(0);
    name_len + 2 + longest > MAX_LINE
}

/// RFC 2047 5 (3): in a phrase, a "Q"-encoded word may only contain ALPHA, DIGIT and
/// `!*+-/=_` (with `=` and `_` being syntax). Using that set everywhere keeps one encoder
/// valid in Subject, unstructured headers and display names alike.
fn q_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'!' | b'*' | b'+' | b'-' | b'/')
}

fn q_width(b: u8) -> usize {
    if q_safe(b) || b == b' ' {
        1
    } else {
        3
    }
}

/// Write `text` as RFC 2047 encoded-words (`=?utf-8?q?...?=` or `=?utf-8?b?...?=`,
/// whichever is shorter, with a bias to the readable Q), each at most 75 characters, split only between characters so no
/// word holds part of a UTF-8 sequence. Adjacent encoded-words are separated by folding
/// whitespace, which decoders drop, so the decoded text is exactly `text`.
pub fn write_encoded_words(h: &mut HeaderLine<'_>, text: &str) {
    if text.is_empty() {
        return;
    }
    let q_len: usize = text.bytes().map(q_width).sum();
    let b_len = text.len().div_ceil(3) * 4;
    // Q keeps mostly-ASCII text readable; prefer it unless B is clearly shorter.
    let use_q = q_len <= b_len + b_len / 3;
    // Text that fits in one encoded-word is written as one (folded onto its own line when
    // needed): some decoders (Python's email, in phrases) do not drop the whitespace
    // between adjacent encoded-words as RFC 2047 6.2 says. Longer text starts on the
    // header's first line.
    let whole = if use_q { q_len } else { b_len };
    let first_room = if whole + WORD_OVERHEAD <= MAX_WORD {
        MAX_WORD
    } else {
        FOLD_AT
            .saturating_sub(h.column() + 1)
            .clamp(WORD_OVERHEAD + 12, MAX_WORD)
    };
    let mut room = first_room - WORD_OVERHEAD;
    let mut raw: Vec<u8> = Vec::with_capacity(64);
    let mut word: Vec<u8> = Vec::with_capacity(MAX_WORD);
    let mut used = 0usize;
    let mut buf = [0u8; 4];
    for c in text.chars() {
        let bytes = c.encode_utf8(&mut buf).as_bytes();
        let width = |raw_len: usize, used: usize| {
            if use_q {
                used + bytes.iter().map(|&b| q_width(b)).sum::<usize>()
            } else {
                (raw_len + bytes.len()).div_ceil(3) * 4
            }
        };
        let grown = width(raw.len(), used);
        if grown > room && !raw.is_empty() {
            flush_word(h, &mut word, &mut raw, use_q);
            room = MAX_WORD - WORD_OVERHEAD;
            used = width(0, 0);
        } else {
            used = grown;
        }
        raw.extend_from_slice(bytes);
    }
    if !raw.is_empty() {
        flush_word(h, &mut word, &mut raw, use_q);
    }
}

fn flush_word(h: &mut HeaderLine<'_>, word: &mut Vec<u8>, raw: &mut Vec<u8>, use_q: bool) {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    word.clear();
    if use_q {
        word.extend_from_slice(b"=?utf-8?q?");
        for &b in raw.iter() {
            if q_safe(b) {
                word.push(b);
            } else if b == b' ' {
                word.push(b'_');
            } else {
                word.extend_from_slice(&[b'=', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
            }
        }
    } else {
        word.extend_from_slice(b"=?utf-8?b?");
        word.extend_from_slice(STANDARD.encode(&raw[..]).as_bytes());
    }
    word.extend_from_slice(b"?=");
    h.token(b" ", word);
    raw.clear();
}

/// RFC 5322 3.2.3 `atext` (what may appear unquoted in a display name).
fn is_ascii_atext(b: u8) -> bool {
    ATEXT[b as usize]
}

/// Words of atext separated by single spaces, without `=?` (which would read as an
/// encoded-word): a display name that can be written as it is.
fn is_plain_words(b: &[u8]) -> bool {
    if b.is_empty() || b[0] == b' ' || b[b.len() - 1] == b' ' {
        return false;
    }
    let mut prev = 0u8;
    for &c in b {
        let ok = if c == b' ' {
            prev != b' '
        } else {
            is_ascii_atext(c) && !(prev == b'=' && c == b'?')
        };
        if !ok {
            return false;
        }
        prev = c;
    }
    true
}

/// Write a display name (RFC 5322 `phrase`): as atoms when it is plain words, as a quoted
/// string when it is printable ASCII with specials (`"Lee, Ann"`), else as encoded-words.
pub fn write_phrase(h: &mut HeaderLine<'_>, name: &str) {
    let b = name.as_bytes();
    if is_plain_words(b) {
        for word in name.split(' ') {
            h.token(b" ", word.as_bytes());
        }
        return;
    }
    let printable = b.iter().all(|&c| matches!(c, b' '..=b'~'));
    if printable && !name.contains("=?") && name.len() < 900 {
        let mut q = Vec::with_capacity(name.len() + 4);
        q.push(b'"');
        for &c in b {
            if c == b'"' || c == b'\\' {
                q.push(b'\\');
            }
            q.push(c);
        }
        q.push(b'"');
        h.token(b" ", &q);
        return;
    }
    write_encoded_words(h, name);
}

/// Write an address-list header (From, To, Cc, Reply-To), folding between addresses and
/// between the words of display names.
pub fn write_address_header(out: &mut Vec<u8>, name: &str, boxes: &[&Mailbox]) {
    let mut h = HeaderLine::start(out, name);
    for (i, m) in boxes.iter().enumerate() {
        let (open, close): (&[u8], &[u8]) = match &m.name {
            Some(display) => {
                write_phrase(&mut h, display);
                (b"<", b">")
            }
            None => (b"", b""),
        };
        let comma: &[u8] = if i + 1 < boxes.len() { b"," } else { b"" };
        let parts = [open, m.addr_spec().as_bytes(), close, comma];
        h.token_parts(b" ", &parts);
    }
    h.finish();
}

/// RFC 2045 5.1 `tspecials` and RFC 2231 7: characters a parameter value may carry
/// unencoded in an extended value are `attribute-char`s: any CHAR except SPACE, CTLs,
/// `*`, `'`, `%` and tspecials.
fn is_attribute_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b)
}

/// Append `; attr="value"` to a Content-Type / Content-Disposition line. A value that is
/// not short printable ASCII (or holds `"` or `\`) is written per RFC 2231 as
/// `attr*=utf-8''%XX...`, split into `attr*0*`, `attr*1*`... continuations of at most
/// about 60 columns, each split between characters.
pub fn write_param(h: &mut HeaderLine<'_>, attr: &str, value: &str) {
    h.token(b"", b";");
    let plain = value.len() + attr.len() + 3 <= 70
        && value
            .bytes()
            .all(|c| matches!(c, b' '..=b'~') && c != b'"' && c != b'\\');
    if plain {
        let mut t = Vec::with_capacity(attr.len() + value.len() + 3);
        t.extend_from_slice(attr.as_bytes());
        t.extend_from_slice(b"=\"");
        t.extend_from_slice(value.as_bytes());
        t.push(b'"');
        h.token(b" ", &t);
        return;
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut pieces: Vec<Vec<u8>> = vec![b"utf-8''".to_vec()];
    let mut buf = [0u8; 4];
    for c in value.chars() {
        let bytes = c.encode_utf8(&mut buf).as_bytes();
        let width: usize = bytes
            .iter()
            .map(|&b| if is_attribute_char(b) { 1 } else { 3 })
            .sum();
        if pieces.last().map_or(0, Vec::len) + width > 60 {
            pieces.push(Vec::new());
        }
        let piece = pieces.last_mut().expect("never empty");
        for &b in bytes {
            if is_attribute_char(b) {
                piece.push(b);
            } else {
                piece.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
            }
        }
    }
    let single = pieces.len() == 1;
    let last = pieces.len() - 1;
    for (i, piece) in pieces.iter().enumerate() {
        let mut t = Vec::with_capacity(attr.len() + piece.len() + 8);
        t.extend_from_slice(attr.as_bytes());
        if single {
            t.extend_from_slice(b"*=");
        } else {
            t.extend_from_slice(format!("*{i}*=").as_bytes());
        }
        t.extend_from_slice(piece);
        if i != last {
            t.push(b';');
        }
        h.token(b" ", &t);
    }
}

/// Headers that the builder writes itself, or that would contradict the message's own
/// structure or envelope. They may not be set through `headers`:
/// * From, To, Cc, Reply-To, Subject, Date, Message-ID: set from their own fields
///   (RFC 5322 3.6 allows each at most once);
/// * Bcc: never written (the point of Bcc);
/// * MIME-Version and every `Content-*` header: the MIME structure is the builder's;
/// * Return-Path: added by the delivering server; use `envelope_sender`.
pub const RESERVED: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "return-path",
];

/// Check an extra header's name: RFC 5322 2.2 `field-name = 1*ftext`,
/// `ftext = %d33-57 / %d59-126` (printable ASCII except ":"), at most 76 octets, and not
/// one of the reserved structural headers (see [`RESERVED`]).
pub fn check_extra_header_name(name: &str, field: &str) -> Result<()> {
    check_no_ctl(field, name)?;
    if name.is_empty() {
        return Err(MimeError::invalid(field, "empty header name"));
    }
    if !name.bytes().all(|b| matches!(b, 33..=57 | 59..=126)) {
        return Err(MimeError::invalid(
            field,
            format!("header name {name:?} must be printable ASCII without ':' or spaces"),
        ));
    }
    if name.len() > MAX_NAME {
        return Err(MimeError::invalid(
            field,
            "header name longer than 76 octets",
        ));
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED.contains(&lower.as_str()) || lower.starts_with("content-") {
        return Err(MimeError::invalid(
            field,
            format!("header {name:?} is set by fastsmtp from the message's own fields and cannot be given in headers"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unstructured(name: &str, value: &str) -> String {
        let mut out = Vec::new();
        write_unstructured(&mut out, name, value);
        String::from_utf8(out).unwrap()
    }

    /// Minimal RFC 2047 decoder for tests: unfold, then decode adjacent words.
    fn decode(header: &str) -> String {
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine as _;
        let value = header
            .split_once(':')
            .unwrap()
            .1
            .trim_end_matches("\r\n")
            .replace("\r\n", "");
        let value = value.strip_prefix(' ').unwrap_or(&value).to_string();
        if !value.starts_with("=?") {
            return value;
        }
        let mut bytes = Vec::new();
        for word in value.split(' ') {
            let inner = word
                .strip_prefix("=?utf-8?")
                .unwrap()
                .strip_suffix("?=")
                .unwrap();
            let (enc, text) = inner.split_at(2);
            if enc == "q?" {
                let t = text.as_bytes();
                let mut i = 0;
                while i < t.len() {
                    match t[i] {
                        b'_' => bytes.push(b' '),
                        b'=' => {
                            bytes.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                            i += 2;
                        }
                        c => bytes.push(c),
                    }
                    i += 1;
                }
            } else {
                bytes.extend(STANDARD.decode(text).unwrap());
            }
        }
        String::from_utf8(bytes).expect("a word split a UTF-8 sequence")
    }

    fn check_lines(s: &str, max: usize) {
        for line in s.trim_end_matches("\r\n").split("\r\n") {
            assert!(
                line.len() <= max,
                "line of {} > {max}: {line:?}",
                line.len()
            );
        }
    }

    #[test]
    fn unstructured_table() {
        let long_words = "word ".repeat(40);
        let long_words = long_words.trim_end();
        let url = format!(
            "<https://example.com/unsubscribe?token={}>",
            "t".repeat(100)
        );
        let huge = "x".repeat(1200);
        let cases = [
            "Hello world",
            "",
            long_words,
            "Grüße aus München",
            "emoji 📦 parcel",
            "looks =?like?= a word",
            " leading space",
            "trailing space ",
            "tab\tinside",
            url.as_str(),
            huge.as_str(),
            "日本語のテキストです。日本語のテキストです。日本語のテキストです。",
        ];
        for value in cases {
            let s = unstructured("Subject", value);
            assert!(s.ends_with("\r\n"));
            assert_eq!(decode(&s), value, "{s}");
            check_lines(
                &s,
                if value.len() > 100 && !value.contains(' ') {
                    MAX_LINE
                } else {
                    FOLD_AT
                },
            );
            assert!(s.is_ascii());
        }
        // A URL is never broken: it sits whole on one line.
        let s = unstructured(
            "List-Unsubscribe",
            &format!("{url}, <mailto:u@example.com>"),
        );
        assert!(s.contains(&url));
        assert!(s.contains("\r\n <mailto:u@example.com>"));
    }

    #[test]
    fn encoded_words_are_short_and_whole() {
        for text in [
            "ä".repeat(100),
            "€".repeat(60),
            "a€".repeat(50),
            "🙂".repeat(40),
        ] {
            let s = unstructured("Subject", &text);
            check_lines(&s, FOLD_AT);
            for w in s.split([' ', '\n']).filter(|w| w.starts_with("=?")) {
                assert!(w.trim_end().len() <= 75, "{w}");
            }
            assert_eq!(decode(&s), text);
        }
    }

    #[test]
    fn phrase_table() {
        for (name, want) in [
            ("Ann Lee", "To: Ann Lee <a@x.org>\r\n"),
            ("Lee, Ann", "To: \"Lee, Ann\" <a@x.org>\r\n"),
            (
                "J. R. \"Bob\" Dobbs",
                "To: \"J. R. \\\"Bob\\\" Dobbs\" <a@x.org>\r\n",
            ),
            ("back\\slash", "To: \"back\\\\slash\" <a@x.org>\r\n"),
            ("  spaced  ", "To: \"  spaced  \" <a@x.org>\r\n"),
            ("Jörg", "To: =?utf-8?q?J=C3=B6rg?= <a@x.org>\r\n"),
        ] {
            let m = Mailbox::new(Some(name.into()), "a", "x.org");
            let mut out = Vec::new();
            write_address_header(&mut out, "To", &[&m]);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    #[test]
    fn address_list_folds_between_addresses() {
        let boxes: Vec<Mailbox> = (0..10)
            .map(|i| Mailbox::new(Some(format!("Person {i}")), &format!("p{i}"), "example.com"))
            .collect();
        let refs: Vec<&Mailbox> = boxes.iter().collect();
        let mut out = Vec::new();
        write_address_header(&mut out, "To", &refs);
        let s = String::from_utf8(out).unwrap();
        check_lines(&s, FOLD_AT);
        assert_eq!(s.replace("\r\n ", " ").matches(", Person").count(), 9);
    }

    #[test]
    fn param_table() {
        let write = |v: &str| {
            let mut out = Vec::new();
            let mut h = HeaderLine::start(&mut out, "Content-Disposition");
            h.token(b" ", b"attachment");
            write_param(&mut h, "filename", v);
            h.finish();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            write("report.pdf"),
            "Content-Disposition: attachment; filename=\"report.pdf\"\r\n"
        );
        assert_eq!(
            write("résumé.pdf"),
            "Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf\r\n"
        );
        assert!(write("a\"b").contains("filename*=utf-8''a%22b"));
        let long = write(&"ü".repeat(40));
        assert!(long.contains("filename*0*=utf-8''"));
        assert!(long.contains("filename*1*="));
        check_lines(&long, FOLD_AT);
    }

    #[test]
    fn header_name_table() {
        for (name, ok) in [
            ("X-Tag", true),
            ("List-Unsubscribe", true),
            ("Sender", true),
            ("In-Reply-To", true),
            ("", false),
            ("X Tag", false),
            ("X:Tag", false),
            ("X-Tägg", false),
            ("X-\r\nBcc", false),
            ("Content-Type", false),
            ("content-transfer-encoding", false),
            ("MIME-Version", false),
            ("BCC", false),
            ("From", false),
            ("Subject", false),
            ("Message-ID", false),
            ("Return-Path", false),
        ] {
            let r = check_extra_header_name(name, "headers[x]");
            assert_eq!(r.is_ok(), ok, "{name:?}: {r:?}");
        }
        assert!(check_extra_header_name(&"X".repeat(77), "f").is_err());
    }
}
