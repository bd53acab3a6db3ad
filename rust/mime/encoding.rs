//! Body transfer encodings (RFC 2045): 7bit, quoted-printable and base64, with newline
//! normalisation to CRLF.
//!
//! Text may arrive with `\n`, `\r\n` or lone `\r` line breaks; each of them is one line
//! break and becomes CRLF, so a bare CR or LF never reaches the output. A text body that
//! does not end with a line break gets one (as Python's `email` does), so every encoded
//! text body ends with CRLF. Lines that are only `.` need nothing here: dot-stuffing is the
//! protocol layer's job.

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

/// `text` with every line break as CRLF and a final CRLF when non-empty.
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
    let mut st = TextStats {
        clean: true,
        ..TextStats::default()
    };
    for_each_line(text, |line| {
        st.lines += 1;
        st.max_line = st.max_line.max(line.len());
        st.from_line |= line.starts_with(b"From ");
        for &b in line {
            if !matches!(b, b' '..=b'~' | b'\t') {
                st.clean = false;
                st.escapes += 1;
            } else if b == b'=' {
                st.escapes += 1;
            }
        }
    });
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

/// Write a text body in the given transfer encoding, with CRLF line breaks. The output
/// ends with CRLF unless `text` is empty.
pub fn write_text(text: &[u8], te: TransferEncoding, out: &mut Vec<u8>) {
    match te {
        TransferEncoding::SevenBit => {
            out.reserve(text.len() + text.len() / 32 + 2);
            write_crlf_lines(text, out);
        }
        TransferEncoding::QuotedPrintable => encode_qp(text, out),
        TransferEncoding::Base64 => encode_base64(&normalize_newlines(text), out),
    }
}

/// [`choose_text_encoding`] then [`write_text`].
pub fn encode_text(text: &[u8], out: &mut Vec<u8>) -> TransferEncoding {
    let te = choose_text_encoding(text);
    write_text(text, te, out);
    te
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Quoted-printable (RFC 2045 6.7) of a text: each line break of the input (CRLF, CR or LF)
/// becomes a hard CRLF, lines are soft-broken to at most 76 octets, `=`, controls, 8-bit
/// octets and whitespace at the end of a line are escaped, and so is the `F` of a line
/// that starts with "From ". The output ends with CRLF unless `text` is empty.
pub fn encode_qp(text: &[u8], out: &mut Vec<u8>) {
    out.reserve(text.len() + text.len() / 8 + 8);
    for_each_line(text, |line| {
        let mut col = 0usize;
        let n = line.len();
        for (i, &b) in line.iter().enumerate() {
            let last = i + 1 == n;
            let literal = match b {
                b'=' => false,
                b'!'..=b'~' => !(b == b'F' && col == 0 && line[i..].starts_with(b"From ")),
                b' ' | b'\t' => !last,
                _ => false,
            };
            let width = if literal { 1 } else { 3 };
            // RFC 2045 6.7 rule 5: encoded lines are at most 76 characters, counting the
            // "=" of a soft line break; the last chunk of a line needs no "=".
            let limit = if last { 76 } else { 75 };
            if col + width > limit {
                out.extend_from_slice(b"=\r\n");
                col = 0;
            }
            if literal {
                out.push(b);
            } else {
                out.extend_from_slice(&[b'=', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
            }
            col += width;
        }
        out.extend_from_slice(b"\r\n");
    });
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
        let te = encode_text(text.as_bytes(), &mut out);
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
}
