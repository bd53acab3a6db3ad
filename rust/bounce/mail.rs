//! The MIME side of bounce parsing: multipart boundaries, transfer encodings
//! (quoted-printable, base64), RFC 2047 encoded words, header unfolding and charsets, all
//! done by the `mail-parser` crate; this module is the thin adapter the rest of `bounce`
//! reads through.
//!
//! Why `mail-parser` and not our own `crate::mime`: `crate::mime` only *writes* MIME. A
//! reader has to survive every malformed boundary and encoding the world sends, and
//! mail-parser (Stalwart's) is fuzzed for exactly that, zero-copy where it can be, and has
//! no dependencies beyond a perfect-hash macro. Measured (benches/RESULTS.md, "Bounce
//! parsing"): it takes about half of `parse_bounce`'s time on a 4 KB Postfix DSN, and the
//! whole stays under half the 50 µs budget that 20,000 DSNs/s allow, so a hand-written
//! reader could not buy anything that matters. (`mailparse` was the other well-kept
//! candidate; it was not measured: mail-parser's fuzzing record decided.)
//!
//! The parser is configured to skip what bounce handling never reads (`Received` chains
//! are the costliest headers to parse and a returned message carries many).

use std::borrow::Cow;
use std::sync::LazyLock;

use mail_parser::{
    Address, HeaderName, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders,
};

static PARSER: LazyLock<MessageParser> = LazyLock::new(|| {
    MessageParser::new()
        .with_mime_headers()
        .with_message_ids()
        .header_address(HeaderName::From)
        .header_address(HeaderName::To)
        .header_address(HeaderName::Cc)
        .header_address(HeaderName::Sender)
        .header_address(HeaderName::ReplyTo)
        .header_text(HeaderName::Subject)
        .header_raw(HeaderName::ReturnPath)
        .header_raw(HeaderName::Date)
        .ignore_header(HeaderName::Received)
        .ignore_header(HeaderName::References)
        .ignore_header(HeaderName::Keywords)
        .ignore_header(HeaderName::Comments)
        // everything else (X-Failed-Recipients, Auto-Submitted, Delivered-To...) as raw text
        .default_header_raw()
});

/// Parse a whole message; None for input with no header or body at all.
pub fn parse(raw: &[u8]) -> Option<Message<'_>> {
    guarded(|| PARSER.parse(raw))
}

/// Parse a header block only (a `text/rfc822-headers` part, or headers found in text).
pub fn parse_headers(raw: &[u8]) -> Option<Message<'_>> {
    guarded(|| PARSER.parse_headers(raw))
}

/// Run the parser with a panic turned into "nothing parsed". Our libFuzzer target reached a
/// `debug_assert!` in mail-parser 0.11.9 within seconds (a `message/rfc822` part whose
/// boundary line runs into the next header; see the test below): harmless in release
/// builds, where it is compiled out, but a panic in a dependency must never escape
/// `parse_bounce`, whose promise is a report for any input.
fn guarded<'a>(parse: impl FnOnce() -> Option<Message<'a>>) -> Option<Message<'a>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(parse)).unwrap_or(None)
}

/// `type/subtype` of a part, lower-cased (`text/plain` when the part has none: RFC 2045
/// section 5.2).
pub fn content_type(part: &MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => {
            let mut s = ct.ctype().to_ascii_lowercase();
            s.push('/');
            s.push_str(&ct.subtype().unwrap_or("").to_ascii_lowercase());
            s
        }
        None => "text/plain".to_owned(),
    }
}

/// A parameter of the part's Content-Type, e.g. `report-type`.
pub fn content_type_param<'a>(part: &'a MessagePart<'_>, name: &str) -> Option<&'a str> {
    part.content_type()?.attribute(name)
}

/// The decoded body of a part as text (invalid UTF-8 replaced).
pub fn part_text<'a>(part: &'a MessagePart<'_>) -> Cow<'a, str> {
    match part.text_contents() {
        Some(t) => Cow::Borrowed(t),
        None => String::from_utf8_lossy(part.contents()),
    }
}

/// Raw (unparsed, unfolded) values of every header called `name` in the message's top
/// header block.
pub fn raw_headers<'a>(msg: &'a Message<'_>, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    msg.headers_raw()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// The first value of header `name` as text, unfolded and trimmed ("" values skipped).
pub fn header_text(msg: &Message<'_>, name: &str) -> Option<String> {
    for h in msg.headers() {
        if !h.name().eq_ignore_ascii_case(name) {
            continue;
        }
        let text = match h.value() {
            HeaderValue::Text(t) => unfold(t),
            HeaderValue::TextList(l) => l.iter().map(|t| unfold(t)).collect::<Vec<_>>().join(", "),
            _ => continue,
        };
        if !text.is_empty() {
            return Some(text);
        }
    }
    None
}

/// Collapse folding whitespace (CRLF followed by WSP, RFC 5322 section 2.2.3) and trim.
pub fn unfold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.trim().chars() {
        if c == '\r' || c == '\n' || c == '\t' || c == ' ' {
            space = true;
        } else {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c);
        }
    }
    out
}

/// The addresses of an address header value (only real ones: "Undisclosed Recipients"
/// parses as a display name without an address).
pub fn addresses(a: Option<&Address<'_>>) -> Vec<String> {
    a.map(|a| {
        a.iter()
            .filter_map(|x| x.address.as_deref())
            .map(str::trim)
            .filter(|x| x.contains('@'))
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

/// The first address of an address header value.
pub fn first_address(a: Option<&Address<'_>>) -> Option<String> {
    a.and_then(|a| {
        a.iter()
            .filter_map(|x| x.address.as_deref())
            .find(|x| !x.trim().is_empty())
    })
    .map(|x| x.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_mail_parser_does_not_escape() {
        // Minimised by libFuzzer from a corpus sample (fuzz/README.md); in a debug build this
        // trips mail-parser's "Invalid part ID" debug assertion.
        let raw = b"Content-Type:multipart;boundary=part1_13d.2e68ed54_boundary\n\n\
                    --part1_13d.2e68ed54_boundaryContent-Type:message/rfc822\n\n\
                    Content-Type:message/rfc822\n\n\n--part1_13d.2e68ed54_boundary--";
        let _ = parse(raw);
        let report = super::super::parse_bounce(raw, &super::super::ParseOptions::default());
        assert!(report.recipients.is_empty());
    }

    #[test]
    fn unfolds() {
        assert_eq!(unfold("  a\r\n   b\tc  "), "a b c");
        assert_eq!(unfold(""), "");
    }

    #[test]
    fn content_types_and_raw_headers() {
        let raw = b"Content-Type: Multipart/Report; report-type=delivery-status; boundary=x\r\n\
                    X-Failed-Recipients: a@example.com,\r\n b@example.com\r\n\r\n--x\r\n\
                    Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n--x--\r\n";
        let msg = parse(raw).unwrap();
        assert_eq!(content_type(msg.root_part()), "multipart/report");
        assert_eq!(
            content_type_param(msg.root_part(), "report-type"),
            Some("delivery-status")
        );
        let failed: Vec<_> = raw_headers(&msg, "x-failed-recipients").collect();
        assert_eq!(failed.len(), 1);
        assert!(failed[0].contains("b@example.com"));
        assert_eq!(content_type(&msg.parts[1]), "message/delivery-status");
        assert_eq!(part_text(&msg.parts[1]).trim(), "Reporting-MTA: dns; x");
    }
}
