//! Body transfer encodings (RFC 2045): 7bit, quoted-printable and base64, with newline
//! normalisation to CRLF.
//!
//! Text may arrive with `\n`, `\r\n` or lone `\r` line breaks; each of them is one line
//! break and becomes CRLF, so a bare CR or LF never reaches the output. No line break is
//! added at the end: RFC 2046 5.1.1 says "The CRLF preceding the boundary delimiter line is
//! conceptually attached to the boundary", so a body part whose encoded text ends where the
//! text ends decodes to exactly that text ("Hi" stays "Hi", not "Hi\n"). A message made of
//! one text part is the exception: DATA needs its last line ended, so there the caller asks
//! for the last line to be ended (`end_last_line`), in every transfer encoding alike. Lines
//! that are only `.` need nothing here: dot-stuffing is the protocol layer's job.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// RFC 5322 2.1.1: lines "SHOULD be no more than 78 characters, excluding the CRLF".
/// Text with longer lines is sent quoted-printable, which wraps at 76.
pub const MAX_7BIT_LINE: usize = 78;

/// A Content-Transfer-Encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferEncoding {
    /// ASCII text with short lines, sent as is.
    SevenBit,
    /// RFC 2045 6.7.
    QuotedPrintable,
    /// RFC 2045 6.8, in 76-column lines.
    Base64,
}

impl TransferEncoding {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SevenBit => "7bit",
            Self::QuotedPrintable => "quoted-printable",
            Self::Base64 => "base64",
        }
    }
}

/// Call `f` with each line of `text` (without its line break). `\r\n`, `\r` and `\n` each
/// end a line; a final line without a break is reported too, an empty tail is not.
pub fn for_each_line(text: &[u8], mut f: impl FnMut(&[u8])) {
    let mut rest = text;
    while !rest.is_empty() {
        match memchr::memchr2(b'\r', b'\n', rest) {
            Some(i) => {
                f(&rest[..i]);
                let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = &rest[i + skip..];
            }
            None => {
                f(rest);
                break;
            }
        }
    }
}

/// True when `text` ends with a line break (CR or LF).
fn ends_with_break(text: &[u8]) -> bool {
    matches!(text.last(), Some(b'\r' | b'\n'))
}

/// `text` with every line break as CRLF and a final CRLF when non-empty (the wire form of
/// a whole message, whose last line DATA needs ended).
pub fn normalize_newlines(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 32 + 2);
    write_crlf_lines(text, &mut out);
    out
}

fn write_crlf_lines(text: &[u8], out: &mut Vec<u8>) {
    for_each_line(text, |line| {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    });
}

/// What a text body looks like, to choose its transfer encoding.
#[derive(Debug, Default, Clone, Copy)]
struct TextStats {
    /// Only printable ASCII, TAB and line breaks.
    clean: bool,
    /// The longest line, in octets.
    max_line: usize,
    /// A line starts with "From " (mbox-style MTAs would mangle it to ">From ").
    from_line: bool,
    /// Octets that quoted-printable must escape.
    escapes: usize,
    /// Number of lines.
    lines: usize,
}

fn text_stats(text: &[u8]) -> TextStats {
    let mut st = TextStats::default();
    for_each_line(text, |line| {
        st.lines += 1;
        st.max_line = st.max_line.max(line.len());
        st.from_line |= line.starts_with(b"From ");
    });
    // Branch-free counts in chunks with 8-bit counters, which the compiler vectorizes:
    // octets outside printable ASCII, TAB and line breaks; and "=" signs.
    let (mut unclean, mut equals) = (0usize, 0usize);
    for chunk in text.chunks(255) {
        let (mut u, mut e) = (0u8, 0u8);
        for &b in chunk {
            u += u8::from(
                (b.wrapping_sub(0x20) > 0x5e) & (b != b'\t') & (b != b'\r') & (b != b'\n'),
            );
            e += u8::from(b == b'=');
        }
        unclean += usize::from(u);
        equals += usize::from(e);
    }
    st.clean = unclean == 0;
    st.escapes = unclean + equals;
    st
}

/// Choose the transfer encoding of a text body (any newline convention): 7bit for clean
/// ASCII with lines of at most 78 octets and no line starting with "From ", otherwise the
/// smaller of quoted-printable and base64.
pub fn choose_text_encoding(text: &[u8]) -> TransferEncoding {
    let st = text_stats(text);
    if st.clean && st.max_line <= MAX_7BIT_LINE && !st.from_line {
        return TransferEncoding::SevenBit;
    }
    let n = text.len() + st.lines;
    let qp_estimate = n + 2 * st.escapes + n / 25;
    let b64_estimate = n / 57 * 78 + 80;
    if qp_estimate <= b64_estimate {
        TransferEncoding::QuotedPrintable
    } else {
        TransferEncoding::Base64
    }
}

/// Write a text body in the given transfer encoding, with CRLF line breaks. The decoded
/// body is exactly `text` with CRLF line breaks; with `end_last_line` (a body that is the
/// whole message) a non-empty text that does not end with a line break gets one. (Base64
/// lines always end with CRLF, which decoders skip.)
pub fn write_text(text: &[u8], te: TransferEncoding, out: &mut Vec<u8>, end_last_line: bool) {
    let open_end = !end_last_line && !ends_with_break(text);
    match te {
        TransferEncoding::SevenBit => {
            out.reserve(text.len() + text.len() / 32 + 2);
            write_crlf_lines(text, out);
        }
        TransferEncoding::QuotedPrintable => encode_qp(text, out),
        TransferEncoding::Base64 => {
            let mut lines = normalize_newlines(text);
            if open_end {
                lines.truncate(lines.len().saturating_sub(2));
            }
            encode_base64(&lines, out);
            return;
        }
    }
    if open_end && !text.is_empty() {
        // Every line was written with its CRLF: the last one had none in `text`.
        out.truncate(out.len() - 2);
    }
}

/// [`choose_text_encoding`] then [`write_text`].
pub fn encode_text(text: &[u8], out: &mut Vec<u8>, end_last_line: bool) -> TransferEncoding {
    let te = choose_text_encoding(text);
    write_text(text, te, out, end_last_line);
    te
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Quoted-printable (RFC 2045 6.7) of a text: each line break of the input (CRLF, CR or LF)
/// becomes a hard CRLF, lines are soft-broken to at most 76 octets, `=`, controls, 8-bit
/// octets and whitespace at the end of a line are escaped, and so is the `F` of a line
/// that starts with "From ". Every line, the last too, ends with a hard CRLF here
/// ([`write_text`] drops the last one when the text had none).
pub fn encode_qp(text: &[u8], out: &mut Vec<u8>) {
    out.reserve(text.len() + text.len() / 8 + 8);
    for_each_line(text, |line| qp_line(line, out));
}

/// Octets that quoted-printable writes as they are (RFC 2045 6.7 rules 2 and 3): printable
/// ASCII except "=", and SP / TAB (which must still be escaped at the end of a line).
const fn qp_literal_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 33;
    while b <= 126 {
        t[b] = b != b'=' as usize;
        b += 1;
    }
    t[b' ' as usize] = true;
    t[b'\t' as usize] = true;
    t
}
const QP_LITERAL: [bool; 256] = qp_literal_table();

/// The end of the run of [`QP_LITERAL`] octets starting at `from`. Eight octets at a time
/// (SWAR): a word is all printable ASCII without "=" when no octet is below 0x20, none is
/// 0x7F or above, and none equals "="; TAB falls back to the octet loop.
fn literal_run_end(line: &[u8], from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let mut j = from;
    while j + 8 <= line.len() {
        let w = u64::from_le_bytes(line[j..j + 8].try_into().expect("8 octets"));
        let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
        let special = below_space
            | (w & HIGH)
            | has_zero(w ^ (ONES * 0x7f))
            | has_zero(w ^ (ONES * u64::from(b'=')));
        if special != 0 {
            break;
        }
        j += 8;
    }
    while j < line.len() && QP_LITERAL[line[j] as usize] {
        j += 1;
    }
    j
}

fn qp_escape(b: u8, out: &mut Vec<u8>) {
    out.extend_from_slice(&[b'=', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
}

/// One line (without its break) as quoted-printable, then a hard CRLF. Runs of literal
/// octets are copied whole; soft breaks keep every line at most 76 characters, counting the
/// "=" (RFC 2045 6.7 rule 5), and never split an escape.
fn qp_line(line: &[u8], out: &mut Vec<u8>) {
    const SOFT_BREAK: &[u8] = b"=\r\n";
    let n = line.len();
    let mut col = 0usize;
    let mut i = 0usize;
    'outer: while i < n {
        // "From " at the start of a physical line: escape the F (mbox-style MTAs would
        // otherwise turn it into ">From ").
        if col == 0 && line[i] == b'F' && line[i..].starts_with(b"From ") {
            qp_escape(b'F', out);
            col = 3;
            i += 1;
            continue;
        }
        let mut j = literal_run_end(line, i);
        // Whitespace at the end of a line must be escaped (rule 3).
        if j == n && j > i && matches!(line[j - 1], b' ' | b'\t') {
            j -= 1;
        }
        if j > i {
            let mut k = i;
            while k < j {
                // The line's last chunk needs no "=": it may use column 76.
                let room = if j == n && j - k <= 76 - col {
                    76 - col
                } else {
                    75 - col
                };
                if room == 0 {
                    out.extend_from_slice(SOFT_BREAK);
                    col = 0;
                    if line[k..].starts_with(b"From ") {
                        i = k;
                        continue 'outer;
                    }
                    continue;
                }
                let take = room.min(j - k);
                out.extend_from_slice(&line[k..k + take]);
                col += take;
                k += take;
            }
            i = j;
            continue;
        }
        let limit = if i + 1 == n { 76 } else { 75 };
        if col + 3 > limit {
            out.extend_from_slice(SOFT_BREAK);
            col = 0;
        }
        qp_escape(line[i], out);
        col += 3;
        i += 1;
    }
    out.extend_from_slice(b"\r\n");
}

/// Base64 (RFC 2045 6.8) in lines of 76 characters, each ending with CRLF.
pub fn encode_base64(data: &[u8], out: &mut Vec<u8>) {
    out.reserve(data.len().div_ceil(57) * 78);
    for chunk in data.chunks(57) {
        let start = out.len();
        out.resize(start + 76, 0);
        let written = STANDARD
            .encode_slice(chunk, &mut out[start..])
            .expect("76 octets hold the base64 of 57");
        out.truncate(start + written);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(text: &str) -> (TransferEncoding, String) {
        let mut out = Vec::new();
        let te = encode_text(text.as_bytes(), &mut out, true);
        (te, String::from_utf8(out).unwrap())
    }

    fn assert_wire_clean(s: &str) {
        let b = s.as_bytes();
        for (i, &c) in b.iter().enumerate() {
            if c == b'\r' {
                assert_eq!(b.get(i + 1), Some(&b'\n'), "bare CR in {s:?}");
            }
            if c == b'\n' {
                assert!(i > 0 && b[i - 1] == b'\r', "bare LF in {s:?}");
            }
        }
        for line in s.split("\r\n") {
            assert!(line.len() <= MAX_7BIT_LINE, "line too long: {line:?}");
        }
    }

    #[test]
    fn newline_table() {
        for (input, want) in [
            ("", ""),
            ("a", "a\r\n"),
            ("a\n", "a\r\n"),
            ("a\r\n", "a\r\n"),
            ("a\r", "a\r\n"),
            ("a\rb\nc\r\nd", "a\r\nb\r\nc\r\nd\r\n"),
            ("\n\n", "\r\n\r\n"),
            ("\r\r\n\n", "\r\n\r\n\r\n"),
            (".\n..\n", ".\r\n..\r\n"),
        ] {
            assert_eq!(
                normalize_newlines(input.as_bytes()),
                want.as_bytes(),
                "{input:?}"
            );
        }
    }

    #[test]
    fn text_ends_where_the_input_ends() {
        use TransferEncoding::{Base64 as B64, QuotedPrintable as QP, SevenBit as SEVEN};
        // RFC 2046 5.1.1: the CRLF before a boundary belongs to the delimiter, so an
        // encoded part adds no line break of its own.
        for (input, te, want) in [
            ("Hi", SEVEN, "Hi"),
            ("Hi\n", SEVEN, "Hi\r\n"),
            ("a\rb\r", SEVEN, "a\r\nb\r\n"),
            ("\n", SEVEN, "\r\n"),
            ("", SEVEN, ""),
            ("Text part ✓", QP, "Text part =E2=9C=93"),
            ("x \n y ", QP, "x=20\r\n y=20"),
            ("ü\r\n", QP, "=C3=BC\r\n"),
            ("Привет", B64, "0J/RgNC40LLQtdGC\r\n"),
            ("Привет\n", B64, "0J/RgNC40LLQtdGCDQo=\r\n"),
            ("", B64, ""),
        ] {
            let mut out = Vec::new();
            write_text(input.as_bytes(), te, &mut out, false);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{input:?} {te:?}");
        }
        // The whole body of a message: the last line is ended, in every encoding.
        for (input, te, want) in [
            ("Hi", SEVEN, "Hi\r\n"),
            ("Hi\r", SEVEN, "Hi\r\n"),
            ("", SEVEN, ""),
            ("✓", QP, "=E2=9C=93\r\n"),
            ("Привет", B64, "0J/RgNC40LLQtdGCDQo=\r\n"),
        ] {
            let mut out = Vec::new();
            write_text(input.as_bytes(), te, &mut out, true);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{input:?} {te:?}");
        }
    }

    #[test]
    fn choose_encoding_table() {
        let long = "x".repeat(79);
        let ok78 = "y".repeat(78);
        for (input, want) in [
            ("hello\nworld", TransferEncoding::SevenBit),
            ("", TransferEncoding::SevenBit),
            (".\n", TransferEncoding::SevenBit),
            (ok78.as_str(), TransferEncoding::SevenBit),
            (long.as_str(), TransferEncoding::QuotedPrintable),
            ("Grüße", TransferEncoding::QuotedPrintable),
            ("From here\n", TransferEncoding::QuotedPrintable),
            ("bell\x07", TransferEncoding::QuotedPrintable),
            ("nul\0", TransferEncoding::QuotedPrintable),
            ("Привет, как дела? Всё хорошо.", TransferEncoding::Base64),
            ("日本語のテキストです", TransferEncoding::Base64),
        ] {
            let (te, out) = enc(input);
            assert_eq!(te, want, "{input:?}");
            assert_wire_clean(&out);
        }
    }

    #[test]
    fn qp_table() {
        for (input, want) in [
            ("a=b", "a=3Db\r\n"),
            ("trailing \nx\t", "trailing=20\r\nx=09\r\n"),
            ("mid space", "mid space\r\n"),
            ("ü", "=C3=BC\r\n"),
            ("From me", "=46rom me\r\n"),
            ("a\r\n.\r\nb", "a\r\n.\r\nb\r\n"),
            ("", ""),
        ] {
            let mut out = Vec::new();
            encode_qp(input.as_bytes(), &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{input:?}");
        }
    }

    #[test]
    fn qp_soft_breaks_keep_escapes_whole() {
        let input = format!("{}ü{}", "a".repeat(74), "b".repeat(200));
        let mut out = Vec::new();
        encode_qp(input.as_bytes(), &mut out);
        let s = String::from_utf8(out).unwrap();
        assert_wire_clean(&s);
        // decoding: drop soft breaks, then unescape
        let joined = s.replace("=\r\n", "");
        assert!(joined.starts_with(&"a".repeat(74)));
        assert!(joined.contains("=C3=BC"));
        let exact76 = "z".repeat(76);
        let mut out = Vec::new();
        encode_qp(exact76.as_bytes(), &mut out);
        assert_eq!(out, format!("{exact76}\r\n").as_bytes());
    }

    #[test]
    fn base64_lines() {
        for n in [0usize, 1, 56, 57, 58, 114, 1000] {
            let data: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
            let mut out = Vec::new();
            encode_base64(&data, &mut out);
            let s = String::from_utf8(out).unwrap();
            assert_wire_clean(&s);
            let joined: String = s.split("\r\n").collect();
            assert_eq!(STANDARD.decode(joined).unwrap(), data);
            assert!(s.split("\r\n").all(|l| l.len() <= 76));
        }
    }

    /// Decode quoted-printable (RFC 2045 6.7), for the property test.
    fn qp_decode(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < s.len() {
            if s[i] == b'=' {
                if s[i + 1..].starts_with(b"\r\n") {
                    i += 3;
                    continue;
                }
                let hex = std::str::from_utf8(&s[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(s[i]);
                i += 1;
            }
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn qp_round_trip_words(words in proptest::collection::vec(
            proptest::sample::select(vec![
                "From ", "F", "rom", " ", "\t", "=", "\r\n", "\n", "\r", ".", "é", "x",
                "0123456789012345678901234567890123456789012345678901234567890123456789",
            ]),
            0..80,
        )) {
            let text = words.concat();
            let mut out = Vec::new();
            encode_qp(text.as_bytes(), &mut out);
            for line in out.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                proptest::prop_assert!(line.len() <= 76);
                proptest::prop_assert!(!line.ends_with(b" ") && !line.ends_with(b"\t"));
                proptest::prop_assert!(!line.starts_with(b"From "));
            }
            proptest::prop_assert_eq!(qp_decode(&out), normalize_newlines(text.as_bytes()));
        }

        #[test]
        fn qp_round_trip(text in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::num::u8::ANY,
                proptest::sample::select(b" \t\r\n.=F".to_vec()),
                proptest::sample::select(b"From ".to_vec()),
            ],
            0..600,
        )) {
            let mut out = Vec::new();
            encode_qp(&text, &mut out);
            for line in out.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                proptest::prop_assert!(line.len() <= 76);
                proptest::prop_assert!(!line.ends_with(b" ") && !line.ends_with(b"\t"));
                proptest::prop_assert!(!line.starts_with(b"From "));
                proptest::prop_assert!(line.iter().all(|&b| (33..=126).contains(&b) || b == b' ' || b == b'\t'));
            }
            proptest::prop_assert_eq!(qp_decode(&out), normalize_newlines(&text));
        }
    }
}
