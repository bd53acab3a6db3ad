//! Templates made only of literal text and `{{ name }}` substitutions (most mail templates),
//! rendered by concatenation instead of minijinja's VM; a text part of such a template is
//! written straight as 7bit CRLF bytes from literals converted once per batch.
//!
//! The output is byte-identical to the general path (minijinja, then
//! [`super::builder::write_text_part`]). Whenever a value could make a difference that the
//! shortcut does not model (a value that is not a string, a character outside printable
//! ASCII and TAB, a line over 78 octets or starting with "From "), the caller falls back to
//! the general path, which also produces the errors (an undefined variable, say).

use minijinja::Value;

use super::encoding::{normalize_newlines, MAX_7BIT_LINE};

/// A piece of a template.
#[derive(Debug)]
enum Seg {
    /// Literal text, and the same text with CRLF line breaks (no break added at its end).
    Lit {
        text: String,
        crlf: Vec<u8>,
        breaks: Option<(usize, usize)>,
    },
    /// `{{ name }}`.
    Var(String),
}

/// A template's source split into literal text and substitutions.
#[derive(Debug)]
pub struct Segments {
    segs: Vec<Seg>,
    /// Every literal is clean 7bit text, and every line that holds no value is at most 78
    /// octets and does not start with "From ": only the lines with values need checking.
    direct: bool,
}

/// Names that the Jinja syntax reads as constants, not variables.
const CONSTANTS: [&str; 6] = ["true", "false", "none", "True", "False", "None"];

fn is_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        && !CONSTANTS.contains(&s)
}

/// Printable ASCII or TAB: what 7bit text may hold besides line breaks.
fn is_clean(b: u8) -> bool {
    matches!(b, b' '..=b'~' | b'\t')
}

/// A 7bit line that needs no transfer encoding (see `choose_text_encoding`).
fn line_ok(line: &[u8]) -> bool {
    line.len() <= MAX_7BIT_LINE && !line.starts_with(b"From ")
}

impl Segments {
    /// Split `source`; `None` when it uses anything but literal text and `{{ name }}` (block
    /// tags, comments, filters, attributes, whitespace control).
    pub fn parse(source: &str) -> Option<Segments> {
        let mut segs = Vec::new();
        let mut lit = String::new();
        let mut rest = source;
        while let Some(i) = rest.find('{') {
            let after = &rest[i + 1..];
            match after.as_bytes().first() {
                Some(b'%' | b'#') => return None,
                Some(b'{') => {
                    let end = after[1..].find("}}")?;
                    let name = after[1..1 + end].trim_matches([' ', '\t', '\r', '\n']);
                    if !is_name(name) {
                        return None;
                    }
                    lit.push_str(&rest[..i]);
                    if !lit.is_empty() {
                        segs.push(literal(std::mem::take(&mut lit)));
                    }
                    segs.push(Seg::Var(name.to_owned()));
                    rest = &after[end + 3..];
                }
                _ => {
                    lit.push_str(&rest[..=i]);
                    rest = after;
                }
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            segs.push(literal(lit));
        }
        let direct = direct_ok(&segs);
        Some(Segments { segs, direct })
    }

    /// Concatenate literals and values (HTML-escaped when `escape`, like the environment's
    /// formatter); false when a value is missing or not a string.
    pub fn render(
        &self,
        lookup: impl Fn(&str) -> Option<Value>,
        escape: bool,
        out: &mut String,
    ) -> bool {
        for seg in &self.segs {
            match seg {
                Seg::Lit { text, .. } => out.push_str(text),
                Seg::Var(name) => {
                    let Some(v) = lookup(name) else { return false };
                    let Some(s) = v.as_str() else { return false };
                    if escape && !v.is_safe() {
                        escape_html(s, out);
                    } else {
                        out.push_str(s);
                    }
                }
            }
        }
        true
    }

    /// Append the rendered text as a 7bit body, when 7bit is what the general path would
    /// choose for it, with CRLF line breaks and, like [`super::encoding::write_text`], a
    /// final CRLF only when the text ends with a line break or `end_last_line` asks for one;
    /// otherwise leave `out` as it was and return false.
    pub fn write_7bit(
        &self,
        lookup: impl Fn(&str) -> Option<Value>,
        escape: bool,
        end_last_line: bool,
        out: &mut Vec<u8>,
    ) -> bool {
        if !self.direct {
            return false;
        }
        let start = out.len();
        let ok = self.write_7bit_inner(lookup, escape, out, start);
        if ok && end_last_line && out.len() > start && !out.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        if !ok {
            out.truncate(start);
        }
        ok
    }

    fn write_7bit_inner(
        &self,
        lookup: impl Fn(&str) -> Option<Value>,
        escape: bool,
        out: &mut Vec<u8>,
        start: usize,
    ) -> bool {
        // The current line and whether a value is on it (only those lines need checking).
        let mut line_start = start;
        let mut dirty = false;
        for seg in &self.segs {
            match seg {
                Seg::Lit { crlf, breaks, .. } => {
                    let at = out.len();
                    out.extend_from_slice(crlf);
                    if let Some((first, after_last)) = *breaks {
                        if dirty && !line_ok(&out[line_start..at + first]) {
                            return false;
                        }
                        line_start = at + after_last;
                        dirty = false;
                    }
                }
                Seg::Var(name) => {
                    let Some(v) = lookup(name) else { return false };
                    let Some(s) = v.as_str() else { return false };
                    let at = out.len();
                    if escape && !v.is_safe() {
                        let mut escaped = String::with_capacity(s.len() + 16);
                        escape_html(s, &mut escaped);
                        out.extend_from_slice(escaped.as_bytes());
                    } else {
                        out.extend_from_slice(s.as_bytes());
                    }
                    if !out[at..].iter().all(|&b| is_clean(b)) {
                        return false;
                    }
                    dirty = true;
                }
            }
        }
        !dirty || line_ok(&out[line_start..])
    }
}

/// A literal segment with its CRLF form and where its first and last line breaks are.
fn literal(text: String) -> Seg {
    let mut crlf = normalize_newlines(text.as_bytes());
    if !text.ends_with(['\r', '\n']) {
        crlf.truncate(crlf.len() - 2); // normalize_newlines ended the last line
    }
    let breaks = memchr::memmem::find(&crlf, b"\r\n").map(|first| {
        (
            first,
            memchr::memmem::rfind(&crlf, b"\r\n").expect("found") + 2,
        )
    });
    Seg::Lit { text, crlf, breaks }
}

/// Whether the literals allow [`Segments::write_7bit`]: clean, and every line that lies
/// inside one literal (not sharing a line with a value) fits 7bit.
fn direct_ok(segs: &[Seg]) -> bool {
    let last = segs.len().saturating_sub(1);
    segs.iter().enumerate().all(|(i, seg)| {
        let Seg::Lit { crlf, breaks, .. } = seg else {
            return true;
        };
        if !crlf
            .iter()
            .all(|&b| is_clean(b) || b == b'\r' || b == b'\n')
        {
            return false;
        }
        let Some((first, after_last)) = *breaks else {
            return true;
        };
        // The first line is the literal's own only at the start of the text, the last
        // one only at its end; the lines between are always its own.
        let from = if i == 0 { 0 } else { first + 2 };
        let to = if i == last { crlf.len() } else { after_last };
        from >= to
            || crlf[from..to]
                .split(|&b| b == b'\n')
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                .all(line_ok)
    })
}

/// Jinja2 (MarkupSafe) HTML escaping: `&`, `<`, `>`, `"` and `'` (see `html_formatter`).
pub fn escape_html(s: &str, out: &mut String) {
    let _ = write_escaped_html(s, |piece| {
        out.push_str(piece);
        Ok::<(), std::convert::Infallible>(())
    });
}

/// The HTML-escaped form of `s`, handed to `write` piece by piece (the one escaping rule
/// both the literal fast path and the minijinja formatter use).
pub fn write_escaped_html<E>(
    s: &str,
    mut write: impl FnMut(&str) -> Result<(), E>,
) -> Result<(), E> {
    let mut last = 0;
    for (i, b) in s.bytes().enumerate() {
        let entity = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&#34;",
            b'\'' => "&#39;",
            _ => continue,
        };
        write(&s[last..i])?;
        write(entity)?;
        last = i + 1;
    }
    write(&s[last..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mime::builder::write_text_part;

    fn lookup(k: &str) -> Option<Value> {
        match k {
            "name" => Some(Value::from("Bob <&>")),
            "long" => Some(Value::from("x".repeat(70))),
            "from" => Some(Value::from("From me")),
            "empty" => Some(Value::from("")),
            "utf" => Some(Value::from("ü")),
            "num" => Some(Value::from(3)),
            _ => None,
        }
    }

    #[test]
    fn parse_table() {
        for (src, simple) in [
            ("Hi {{ name }}!", true),
            ("{{name}}{{ empty }}", true),
            ("a { b } {{\n name\t}} }}", true),
            ("{% if x %}y{% endif %}", false),
            ("{# c #}", false),
            ("{{ name|upper }}", false),
            ("{{ user.name }}", false),
            ("{{- name }}", false),
            ("{{ none }}", false),
            ("{{ name", false),
        ] {
            assert_eq!(Segments::parse(src).is_some(), simple, "{src}");
        }
    }

    #[test]
    fn write_7bit_matches_general_path() {
        for src in [
            "Dear {{ name }},\n\nyour code.\n\n",
            "Hi {{ name }}",
            "{{ empty }}",
            "{{ empty }}\n",
            "a\r\nb\rc\n{{ name }}\r{{ name }}\r",
            "{{ long }} is too long for one line? {{ name }}\nok",
            "{{ long }}\nfits",
            "\n{{ from }}",
            "x{{ from }}",
            "{{ utf }}",
            "{{ num }}",
            "{{ missing }}",
            "a\n--=_{{ name }}\n",
        ] {
            let segs = Segments::parse(src).expect(src);
            for (escape, whole) in [(false, false), (true, false), (false, true), (true, true)] {
                let mut text = String::new();
                let general = segs.render(lookup, escape, &mut text).then(|| {
                    let mut out = Vec::new();
                    write_text_part(&mut out, "plain", &text, whole);
                    out
                });
                let mut direct = b"Content-Type: text/plain; charset=utf-8\r\n\
                    Content-Transfer-Encoding: 7bit\r\n\r\n"
                    .to_vec();
                if segs.write_7bit(lookup, escape, whole, &mut direct) {
                    assert_eq!(Some(direct), general, "{src:?}");
                } else {
                    let seven = general.is_some_and(|g| {
                        String::from_utf8(g).unwrap().contains("Encoding: 7bit\r\n")
                    });
                    assert!(!seven || src.contains("missing"), "{src:?} fell back");
                }
            }
        }
    }
}
