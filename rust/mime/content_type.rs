//! Parsing an attachment's Content-Type as the caller wrote it (`text/plain; charset=utf-8`),
//! so its parameters can be merged with the ones fastsmtp derives (`name` from the file
//! name) and written again by [`super::header::write_param`]. Nothing of the input is
//! copied into the header unparsed, so no parameter can carry an injection.
//!
//! RFC 2045 5.1:
//!
//! ```text
//! content := "Content-Type" ":" type "/" subtype *(";" parameter)
//! parameter := attribute "=" value
//! attribute := token
//! value := token / quoted-string
//! token := 1*<any (US-ASCII) CHAR except SPACE, CTLs, or tspecials>
//! ```
//!
//! RFC 2231 4: an extended value `attribute*=charset'language'%XX...` is decoded (charsets
//! UTF-8 and US-ASCII); continuations (`attribute*0=`, `attribute*1*=`...) are refused
//! with a message asking for the whole value. Lenient where mail software is: whitespace
//! around `;` and `=`, a trailing `;`, and UTF-8 inside a quoted-string (written back per
//! RFC 2231). RFC 2045: "It is an error for a specific parameter to be specified more than
//! once", so a repeated attribute is refused.

/// A parsed Content-Type: `type/subtype` in lower case and its parameters, in order, with
/// attribute names in lower case and values unquoted and decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    /// `type/subtype`, lower case.
    pub mime_type: String,
    /// `(attribute, value)` pairs.
    pub params: Vec<(String, String)>,
}

impl ContentType {
    /// The value of `attribute` (lower case), if given.
    pub fn param(&self, attribute: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(a, _)| a == attribute)
            .map(|(_, v)| v.as_str())
    }
}

/// RFC 2045 5.1 `tspecials`.
const TSPECIALS: &[u8] = b"()<>@,;:\\\"/[]?=";

fn is_token_char(b: u8) -> bool {
    b.is_ascii_graphic() && !TSPECIALS.contains(&b)
}

/// True for an RFC 2045 `token`.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// A cursor over the input.
struct Scanner<'a> {
    s: &'a str,
    at: usize,
}

impl<'a> Scanner<'a> {
    fn skip_ws(&mut self) {
        while matches!(self.s.as_bytes().get(self.at), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.at).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.at += usize::from(hit);
        hit
    }

    fn token(&mut self) -> &'a str {
        let start = self.at;
        while self.peek().is_some_and(is_token_char) {
            self.at += 1;
        }
        &self.s[start..self.at]
    }

    /// A quoted-string after its opening quote: `*(qtext / quoted-pair) DQUOTE`.
    fn quoted(&mut self) -> Result<String, String> {
        let mut out = String::new();
        let mut chars = self.s[self.at..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.at += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, escaped)) => out.push(escaped),
                    None => break,
                },
                c => out.push(c),
            }
        }
        Err("unterminated quoted string".to_owned())
    }
}

/// Parse `type/subtype *(; attribute=value)` (see the module docs). The error says what is
/// wrong, for an `InvalidMessage` naming the field.
pub fn parse(input: &str) -> Result<ContentType, String> {
    let mut sc = Scanner { s: input, at: 0 };
    sc.skip_ws();
    let main = sc.token();
    let sub = if sc.eat(b'/') { sc.token() } else { "" };
    if main.is_empty() || sub.is_empty() {
        return Err(format!(
            "invalid content type {input:?} (want type/subtype)"
        ));
    }
    let mime_type = format!("{main}/{sub}").to_ascii_lowercase();
    let mut params: Vec<(String, String)> = Vec::new();
    loop {
        sc.skip_ws();
        match sc.peek() {
            None => break,
            Some(b';') => sc.at += 1,
            Some(_) => {
                return Err(format!(
                    "unexpected {:?} in content type {input:?} (parameters follow \";\")",
                    &input[sc.at..]
                ))
            }
        }
        sc.skip_ws();
        if sc.peek().is_none() {
            break; // a trailing ";"
        }
        let attribute = sc.token().to_ascii_lowercase();
        sc.skip_ws();
        if attribute.is_empty() || !sc.eat(b'=') {
            return Err(format!(
                "invalid parameter in content type {input:?} (want attribute=value)"
            ));
        }
        sc.skip_ws();
        let raw = if sc.eat(b'"') {
            sc.quoted()?
        } else {
            let value = sc.token();
            if value.is_empty() {
                return Err(format!(
                    "the {attribute} parameter needs a value; quote one that is not a token"
                ));
            }
            value.to_owned()
        };
        let (attribute, value) = match attribute.split_once('*') {
            None => (attribute, raw),
            Some((name, "")) => (name.to_owned(), decode_extended(name, &raw)?),
            Some((name, _)) => {
                return Err(format!(
                    "RFC 2231 continuations ({name}*0, {name}*1...) are not supported: give \
                     the whole {name} value"
                ))
            }
        };
        if params.iter().any(|(a, _)| *a == attribute) {
            return Err(format!(
                "the {attribute} parameter is given more than once (RFC 2045 5.1)"
            ));
        }
        params.push((attribute, value));
    }
    Ok(ContentType { mime_type, params })
}

/// RFC 2231 4: `extended-initial-value := [charset] "'" [language] "'" extended-other-values`,
/// with `%XX` escapes.
fn decode_extended(attribute: &str, raw: &str) -> Result<String, String> {
    let bad = || format!("invalid RFC 2231 value for {attribute}: {raw:?}");
    let mut parts = raw.splitn(3, '\'');
    let (charset, _language, encoded) = match (parts.next(), parts.next(), parts.next()) {
        (Some(c), Some(l), Some(e)) => (c, l, e),
        _ => return Err(bad()),
    };
    if !(charset.eq_ignore_ascii_case("utf-8") || charset.eq_ignore_ascii_case("us-ascii")) {
        return Err(format!(
            "the charset {charset:?} of the {attribute} parameter is not supported (use utf-8)"
        ));
    }
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut it = encoded.bytes();
    while let Some(b) = it.next() {
        if b == b'%' {
            let hex = [it.next().ok_or_else(bad)?, it.next().ok_or_else(bad)?];
            let hex = std::str::from_utf8(&hex).map_err(|_| bad())?;
            bytes.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
        } else {
            bytes.push(b);
        }
    }
    String::from_utf8(bytes).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> (String, Vec<(String, String)>) {
        let ct = parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        (ct.mime_type, ct.params)
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, v)| (a.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn accepted() {
        for (input, mime, params) in [
            ("application/pdf", "application/pdf", vec![]),
            ("  Text/Plain  ", "text/plain", vec![]),
            ("text/plain;", "text/plain", vec![]),
            (
                "text/plain; charset=utf-8",
                "text/plain",
                vec![("charset", "utf-8")],
            ),
            (
                "text/plain;CHARSET = \"UTF-8\" ; format=flowed",
                "text/plain",
                vec![("charset", "UTF-8"), ("format", "flowed")],
            ),
            (
                "text/plain; name=\"x \\\"y\\\" ;z.txt\"",
                "text/plain",
                vec![("name", "x \"y\" ;z.txt")],
            ),
            (
                "application/pdf; name*=utf-8''r%C3%A9sum%C3%A9.pdf",
                "application/pdf",
                vec![("name", "résumé.pdf")],
            ),
            (
                "application/pdf; name*=us-ascii'en'a%20b.pdf",
                "application/pdf",
                vec![("name", "a b.pdf")],
            ),
            (
                "application/pdf; name=\"résumé.pdf\"",
                "application/pdf",
                vec![("name", "résumé.pdf")],
            ),
        ] {
            assert_eq!(ok(input), (mime.to_string(), pairs(&params)), "{input:?}");
        }
    }

    #[test]
    fn refused() {
        for (input, why) in [
            ("pdf", "type/subtype"),
            ("application/", "type/subtype"),
            ("/pdf", "type/subtype"),
            ("text/plain charset=utf-8", "parameters follow"),
            ("text/plain; charset", "attribute=value"),
            ("text/plain; =x", "attribute=value"),
            ("text/plain; charset=", "needs a value"),
            ("text/plain; name=a b", "parameters follow"),
            ("text/plain; name=\"open", "unterminated"),
            ("text/plain; name=x; NAME=y", "more than once"),
            ("text/plain; name*0=a; name*1=b", "continuations"),
            ("text/plain; name*=latin-1''x", "charset"),
            ("text/plain; name*=utf-8''%ZZ", "RFC 2231"),
            ("text/plain; name*=utf-8''%FF", "RFC 2231"),
            ("text/plain; name*=x", "RFC 2231"),
            ("text/plain; name=é", "quote"),
        ] {
            let e = parse(input).expect_err(input);
            assert!(e.contains(why), "{input:?}: {e}");
        }
    }
}
