//! Line-ending normalization and the DATA dot-stuffing codec.
//!
//! **Bare CR and LF are normalized, not rejected**: every CR, LF and CRLF in a body becomes
//! one CRLF, and a body that does not end with a line end gets a final CRLF. So a bare CR or
//! LF never reaches the wire (RFC 5321 2.3.8 forbids them; a server that takes a bare LF as
//! a line end enables SMTP smuggling), and `BDAT` sizes count the normalized body.
//!
//! Dot-stuffing (RFC 5321 4.5.2): "Before sending a line of mail text, the SMTP client
//! checks the first character of the line. If it is a period, one additional period is
//! inserted at the beginning of the line." [`DotStuffer`] does this as a streaming codec:
//! its state (at the start of a line? was the last byte a CR?) carries across chunks, so a
//! body can be encoded in pieces split anywhere, including between a CR and its LF.
//! Runs between line ends are found with `memchr` and copied whole.

use std::borrow::Cow;
use std::sync::LazyLock;

use memchr::{memchr2, memchr_iter, memmem};

/// Streaming encoder for the DATA phase: normalizes line ends and doubles leading dots.
#[derive(Debug, Clone, Copy)]
pub struct DotStuffer {
    at_line_start: bool,
    after_cr: bool,
    stuff: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl DotStuffer {
    /// A dot-stuffing encoder at the start of a body.
    pub fn new() -> Self {
        DotStuffer {
            at_line_start: true,
            after_cr: false,
            stuff: true,
        }
    }

    /// An encoder that only normalizes line ends (for BDAT, which is never dot-stuffed).
    pub fn normalizer() -> Self {
        DotStuffer {
            stuff: false,
            ..Self::new()
        }
    }

    /// Encode the next chunk of the body, appending to `out`.
    pub fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < input.len() {
            if self.after_cr {
                self.after_cr = false;
                if input[i] == b'\n' {
                    // The LF of a CRLF split across chunks: its CRLF is already out.
                    i += 1;
                    continue;
                }
            }
            if self.at_line_start && self.stuff && input[i] == b'.' {
                out.push(b'.');
            }
            match memchr2(b'\r', b'\n', &input[i..]) {
                None => {
                    out.extend_from_slice(&input[i..]);
                    self.at_line_start = false;
                    return;
                }
                Some(j) => {
                    out.extend_from_slice(&input[i..i + j]);
                    out.extend_from_slice(b"\r\n");
                    self.at_line_start = true;
                    self.after_cr = input[i + j] == b'\r';
                    i += j + 1;
                }
            }
        }
    }

    /// End the body: add the final CRLF if the last line lacks one. The encoder is then
    /// ready for a new body. The DATA terminator `.\r\n` is not added.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        *self = DotStuffer {
            stuff: self.stuff,
            ..Self::new()
        };
    }
}

/// The whole body dot-stuffed (see [`DotStuffer`]); the `.\r\n` terminator is not added.
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 64 + 2);
    let mut s = DotStuffer::new();
    s.encode(body, &mut out);
    s.finish(&mut out);
    out
}

/// The `"\n."` searcher, built once: `memmem::find_iter` would build one per chunk, which
/// cost as much as searching a 1 KB body.
static LINE_START_DOT: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\n."));

/// Dot-stuffing of a body already in wire form (only CRLF line ends, as every
/// [`crate::protocol::connection::Transaction`] body is): only lines that start with "."
/// need work, and one `memmem` search for `"\n."` finds them, so a body without any is
/// copied whole. Its state carries across chunks like [`DotStuffer`]'s.
#[derive(Debug, Clone, Copy)]
pub struct WireStuffer {
    at_line_start: bool,
}

impl Default for WireStuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl WireStuffer {
    /// An encoder at the start of a body.
    pub fn new() -> Self {
        WireStuffer {
            at_line_start: true,
        }
    }

    /// Encode the next chunk of the body, appending to `out`.
    pub fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let Some(&last) = input.last() else { return };
        if self.at_line_start && input[0] == b'.' {
            out.push(b'.');
        }
        let mut from = 0;
        for i in LINE_START_DOT.find_iter(input) {
            out.extend_from_slice(&input[from..=i]);
            out.push(b'.');
            from = i + 1;
        }
        out.extend_from_slice(&input[from..]);
        self.at_line_start = last == b'\n';
    }

    /// End the body (a final CRLF if the last line lacks one, as [`DotStuffer::finish`]).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        self.at_line_start = true;
    }
}

/// Checks, chunk by chunk, that a body is already in wire form: every CR is followed by
/// LF, every LF preceded by CR, and the body is empty or ends with CRLF.
///
/// Fast on real messages (a line end every ~78 octets): each LF is found with `memchr` and
/// its CR checked; CRs are only counted (SIMD), since with every LF preceded by a CR,
/// "no CR without its LF" is the same as "as many CRs as LFs".
#[derive(Debug, Clone, Copy, Default)]
pub struct LineEndCheck {
    prev_cr: bool,
    bad: bool,
    crs: usize,
    lfs: usize,
    last: Option<u8>,
}

impl LineEndCheck {
    /// Check the next chunk.
    pub fn update(&mut self, chunk: &[u8]) {
        let Some(&last) = chunk.last() else { return };
        if self.bad {
            return;
        }
        for i in memchr_iter(b'\n', chunk) {
            let after_cr = if i == 0 {
                self.prev_cr
            } else {
                chunk[i - 1] == b'\r'
            };
            if !after_cr {
                self.bad = true;
                return;
            }
            self.lfs += 1;
        }
        self.crs += memchr_iter(b'\r', chunk).count();
        self.prev_cr = last == b'\r';
        self.last = Some(last);
    }

    /// True when everything checked so far is in wire form and complete.
    pub fn finish(&self) -> bool {
        !self.bad && self.crs == self.lfs && self.last.is_none_or(|b| b == b'\n')
    }
}

/// True when `body` is already in wire form: only CRLF line ends, ending with CRLF (or
/// empty).
pub fn is_normalized(body: &[u8]) -> bool {
    let mut check = LineEndCheck::default();
    check.update(body);
    check.finish()
}

/// `body` with every CR, LF or CRLF as CRLF and a final CRLF (borrowed when already so).
pub fn normalize(body: &[u8]) -> Cow<'_, [u8]> {
    if is_normalized(body) {
        return Cow::Borrowed(body);
    }
    let mut out = Vec::with_capacity(body.len() + body.len() / 32 + 2);
    let mut s = DotStuffer::normalizer();
    s.encode(body, &mut out);
    s.finish(&mut out);
    Cow::Owned(out)
}

/// Undo dot-stuffing of a CRLF body (the inverse of [`dot_stuff`] on normalized input):
/// one leading dot is removed from every line that starts with one. For tests and fuzzing.
pub fn dot_unstuff(wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(wire.len());
    let mut at_line_start = true;
    for &b in wire {
        if !(at_line_start && b == b'.') {
            out.push(b);
        }
        at_line_start = b == b'\n';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"a", b"a\r\n"),
            (b"a\r\n", b"a\r\n"),
            (b".", b"..\r\n"),
            (b".\r\n", b"..\r\n"),
            (b"..\r\n", b"...\r\n"),
            (b"a.\r\n.b\r\n", b"a.\r\n..b\r\n"),
            (b"a\nb", b"a\r\nb\r\n"),
            (b"a\rb", b"a\r\nb\r\n"),
            (b"a\r\rb", b"a\r\n\r\nb\r\n"),
            (b"a\n\nb", b"a\r\n\r\nb\r\n"),
            (b"a\n\r\nb", b"a\r\n\r\nb\r\n"),
            (b"a\r\n\rb", b"a\r\n\r\nb\r\n"),
            (b"\n.", b"\r\n..\r\n"),
            (b"\r.\r\n", b"\r\n..\r\n"),
            (b"x\r\n.\r\n", b"x\r\n..\r\n"),
            (b"\r", b"\r\n"),
            (b"\n", b"\r\n"),
        ];
        for &(input, expected) in cases {
            assert_eq!(
                dot_stuff(input),
                expected,
                "for {:?}",
                String::from_utf8_lossy(input)
            );
            // Every split point, and byte by byte, give the same output.
            for split in 0..=input.len() {
                let mut out = Vec::new();
                let mut s = DotStuffer::new();
                s.encode(&input[..split], &mut out);
                s.encode(&input[split..], &mut out);
                s.finish(&mut out);
                assert_eq!(out, expected, "split {split} of {input:?}");
            }
            let mut out = Vec::new();
            let mut s = DotStuffer::new();
            for b in input {
                s.encode(std::slice::from_ref(b), &mut out);
            }
            s.finish(&mut out);
            assert_eq!(out, expected, "bytewise {input:?}");
            assert_eq!(dot_unstuff(expected), normalize(input).as_ref());
        }
    }

    #[test]
    fn normalization() {
        assert!(is_normalized(b""));
        assert!(is_normalized(b"a\r\n"));
        assert!(is_normalized(b"\r\n\r\n"));
        assert!(is_normalized(b".a\r\n"));
        assert!(!is_normalized(b"a"));
        assert!(!is_normalized(b"a\n"));
        assert!(!is_normalized(b"a\r\r\n"));
        assert!(!is_normalized(b"a\nb\r\n"));
        assert!(!is_normalized(b"a\rb\r\n"));
        assert!(matches!(normalize(b"a\r\n"), Cow::Borrowed(_)));
        // Chunked: the same verdict at every split point.
        for body in [
            &b"a\r\nb\r\n"[..],
            b"a\rb\r\n",
            b"a\nb\r\n",
            b"\r\n",
            b"a\r",
            b"a\r\r\n",
            b"x",
        ] {
            for split in 0..=body.len() {
                let mut c = LineEndCheck::default();
                c.update(&body[..split]);
                c.update(&body[split..]);
                assert_eq!(c.finish(), is_normalized(body), "{body:?} at {split}");
            }
        }
        assert_eq!(normalize(b".a\nb").as_ref(), b".a\r\nb\r\n");
    }

    #[test]
    fn wire_stuffer_matches_dot_stuffer_on_wire_form() {
        for body in [
            &b""[..],
            b".\r\n",
            b"a\r\n.b\r\n..\r\n.\r\n",
            b"x\r\n\r\n.",
            b"no dots\r\nat all\r\n",
        ] {
            let mut want = Vec::new();
            let mut d = DotStuffer::new();
            d.encode(body, &mut want);
            d.finish(&mut want);
            for split in 0..=body.len() {
                let mut got = Vec::new();
                let mut w = WireStuffer::new();
                w.encode(&body[..split], &mut got);
                w.encode(&body[split..], &mut got);
                w.finish(&mut got);
                assert_eq!(got, want, "{body:?} at {split}");
            }
        }
    }

    #[test]
    fn finish_resets() {
        let mut s = DotStuffer::new();
        let mut out = Vec::new();
        s.encode(b"x\r", &mut out);
        s.finish(&mut out);
        s.encode(b"\n.", &mut out);
        s.finish(&mut out);
        assert_eq!(out, b"x\r\n\r\n..\r\n");
    }
}
