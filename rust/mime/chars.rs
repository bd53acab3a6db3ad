//! Which characters may appear where: the one character policy for header text, file names
//! and addresses.
//!
//! * **Header text** (subject, extra header values, display names, file names, content
//!   types, content ids, dates): no C0 control but TAB, no DEL, no C1 control, no
//!   U+2028 LINE SEPARATOR or U+2029 PARAGRAPH SEPARATOR. RFC 5322 2.2: a field body is
//!   printable characters and WSP; CR and LF would start a new field (header injection),
//!   NUL is never allowed, and U+0085 NEXT LINE, U+2028 and U+2029 are line breaks to
//!   Unicode-aware readers, where they would do the same.
//! * **File names**, also: no bidirectional control (U+061C, U+200E, U+200F,
//!   U+202A..U+202E, U+2066..U+2069, the Unicode `Bidi_Control` property): a right-to-left
//!   override makes `invoice\u{202E}fdp.exe` display as `invoiceexe.pdf`.
//! * **Addresses** (local part and domain, in headers and in MAIL FROM / RCPT TO): none of
//!   the above, no TAB, and no character a reader cannot see: format characters
//!   (`General_Category=Cf`: zero-width space and joiners, the byte order mark, bidi
//!   controls, soft hyphen, tags), other default-ignorable code points (Hangul fillers,
//!   variation selectors) and non-ASCII spaces (`Zs`). Such characters make two different
//!   addresses look the same, and a server, a log or a spam filter may read them as breaks.
//!
//! Format characters stay allowed in free text: emoji sequences need U+200D ZERO WIDTH
//! JOINER and right-to-left scripts need the U+200E / U+200F marks.
//!
//! Unassigned and private-use code points are not refused here (IDNA refuses them in
//! domains).

use icu_properties::props::{BidiControl, DefaultIgnorableCodePoint, GeneralCategory};
use icu_properties::{CodePointMapData, CodePointSetData};

/// Where a string goes, which decides the characters it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// A header field body (or a piece of one).
    Text,
    /// A file name (header text, without bidirectional controls).
    Filename,
    /// An address (header text, without TAB or invisible characters).
    Address,
}

/// The first character of `s` not allowed in `context`, if any.
pub fn find_forbidden(s: &str, context: Context) -> Option<char> {
    let b = s.as_bytes();
    // The common case, printable ASCII only, in one branch-free pass (vectorized).
    if b.iter().fold(true, |ok, &c| ok & (0x20..0x7f).contains(&c)) {
        return None;
    }
    // Header text, octet by octet: C0 but TAB, DEL; C1 is 0xC2 0x80..=0x9F in UTF-8, and
    // U+2028 / U+2029 are 0xE2 0x80 0xA8 / 0xA9 (only valid UTF-8 reaches here).
    let tab_ok = context != Context::Address;
    let text_bad = |i: usize| -> bool {
        match b[i] {
            b'\t' => !tab_ok,
            0..=0x1f | 0x7f => true,
            0xc2 => matches!(b.get(i + 1), Some(0x80..=0x9f)),
            0xe2 => b.get(i + 1) == Some(&0x80) && matches!(b.get(i + 2), Some(0xa8 | 0xa9)),
            _ => false,
        }
    };
    if let Some(i) = (0..b.len()).find(|&i| text_bad(i)) {
        return s[i..].chars().next();
    }
    if s.is_ascii() || context == Context::Text {
        return None;
    }
    s.chars()
        .find(|&c| !c.is_ascii() && forbidden_non_ascii(c, context))
}

fn forbidden_non_ascii(c: char, context: Context) -> bool {
    match context {
        Context::Text => false,
        Context::Filename => CodePointSetData::new::<BidiControl>().contains(c),
        Context::Address => {
            matches!(
                CodePointMapData::<GeneralCategory>::new().get(c),
                GeneralCategory::Format
                    | GeneralCategory::SpaceSeparator
                    | GeneralCategory::LineSeparator
                    | GeneralCategory::ParagraphSeparator
                    | GeneralCategory::Control
            ) || CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
        }
    }
}

/// `U+0085 (a control character)`, for error messages: the code point, and what it is.
pub fn describe(c: char) -> String {
    let what = match c {
        '\r' => "CR",
        '\n' => "LF",
        '\0' => "NUL",
        '\t' => "TAB",
        '\u{2028}' => "LINE SEPARATOR",
        '\u{2029}' => "PARAGRAPH SEPARATOR",
        '\u{0085}' => "NEXT LINE, a control character",
        c if c.is_control() => "a control character",
        c if CodePointSetData::new::<BidiControl>().contains(c) => "a bidirectional control",
        c => match CodePointMapData::<GeneralCategory>::new().get(c) {
            GeneralCategory::Format => "an invisible format character",
            GeneralCategory::SpaceSeparator => "a space",
            _ => "an invisible character",
        },
    };
    format!("U+{:04X} ({what})", u32::from(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn table() {
        use Context::{Address as A, Filename as F, Text as T};
        for (s, ctx, bad) in [
            ("plain ü ✓ 日本", T, None),
            ("tab\there", T, None),
            ("tab\there", A, Some('\t')),
            ("a\rb", T, Some('\r')),
            ("a\nb", F, Some('\n')),
            ("nul\0", T, Some('\0')),
            ("del\x7f", T, Some('\x7f')),
            ("bell\x07", T, Some('\x07')),
            ("nel\u{85}", T, Some('\u{85}')),
            ("c1\u{9f}", A, Some('\u{9f}')),
            ("\u{a0}nbsp is not C1", T, None),
            ("ls\u{2028}", T, Some('\u{2028}')),
            ("ps\u{2029}", F, Some('\u{2029}')),
            ("zwj 👨\u{200d}👩", T, None),
            ("zwj 👨\u{200d}👩", F, None),
            ("b\u{200d}@x.org", A, Some('\u{200d}')),
            ("b\u{200b}@x.org", A, Some('\u{200b}')),
            ("\u{feff}b@x.org", A, Some('\u{feff}')),
            ("b@x\u{ad}y.org", A, Some('\u{ad}')),
            ("rlm \u{200f}", T, None),
            ("invoice\u{202e}fdp.exe", F, Some('\u{202e}')),
            ("invoice\u{202e}fdp.exe", T, None),
            ("b\u{202e}@x.org", A, Some('\u{202e}')),
            ("b\u{3000}@x.org", A, Some('\u{3000}')),
            ("b\u{3164}@x.org", A, Some('\u{3164}')),
            ("b\u{fe0f}@x.org", A, Some('\u{fe0f}')),
            ("b\u{e0041}@x.org", A, Some('\u{e0041}')),
            ("jörg@bücher.de", A, None),
            ("用户@例え.jp", A, None),
        ] {
            assert_eq!(find_forbidden(s, ctx), bad, "{s:?} in {ctx:?}");
        }
    }

    #[test]
    fn descriptions() {
        assert_eq!(
            describe('\u{85}'),
            "U+0085 (NEXT LINE, a control character)"
        );
        assert_eq!(describe('\u{2028}'), "U+2028 (LINE SEPARATOR)");
        assert_eq!(
            describe('\u{200b}'),
            "U+200B (an invisible format character)"
        );
        assert_eq!(describe('\u{202e}'), "U+202E (a bidirectional control)");
        assert_eq!(describe('\r'), "U+000D (CR)");
    }

    proptest! {
        /// The octet scan agrees with the character definition of header text.
        #[test]
        fn text_scan_matches_the_definition(s in "\\PC*|[\\x00-\\x7f\\u{80}-\\u{9f}\\u{2020}-\\u{202f}a ]{0,12}") {
            let want = s.chars().find(|&c| {
                (c.is_control() && c != '\t') || c == '\u{2028}' || c == '\u{2029}'
            });
            prop_assert_eq!(find_forbidden(&s, Context::Text), want);
        }
    }
}
