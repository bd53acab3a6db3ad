//! The header-like field blocks of `message/delivery-status` (RFC 3464) and
//! `message/feedback-report` (RFC 5965): `Name: value` lines, folded like RFC 5322 headers,
//! in groups separated by blank lines.
//!
//! RFC 3464 section 2.1: "The body of a message/delivery-status consists of one or more
//! 'fields' formatted according to the ABNF of RFC 822 header 'fields' [...] The fields are
//! divided into groups: per-message fields first, then one group of per-recipient fields for
//! each recipient, each group separated by a blank line." (`delivery-status-content =
//! per-message-fields 1*( CRLF per-recipient-fields )`.)
//!
//! Hand-written rather than run through the MIME parser: the blank lines between groups are
//! the structure here, which a header parser stops at. Lines may end in CRLF or bare LF
//! (a Maildir file has LF), and any byte soup must parse to something without panicking.

/// One field: its name as written and its unfolded value, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The field name (compare with [`Field::is`]: names are case-insensitive).
    pub name: String,
    /// The value with folding removed (RFC 5322 section 2.2.3) and outer whitespace trimmed.
    pub value: String,
}

impl Field {
    /// Whether this field is called `name` (ASCII case-insensitive, RFC 5322 section 1.2.2).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// A group of fields (one blank-line separated block).
pub type Group = Vec<Field>;

/// The value of the first field called `name` in `group`.
pub fn get<'a>(group: &'a [Field], name: &str) -> Option<&'a str> {
    group
        .iter()
        .find(|f| f.is(name))
        .map(|f| f.value.as_str())
        .filter(|v| !v.is_empty())
}

/// The values of every field called `name` in `group`, in order.
pub fn get_all<'a>(group: &'a [Field], name: &str) -> impl Iterator<Item = &'a str> + 'a {
    let name = name.to_owned();
    group
        .iter()
        .filter(move |f| f.is(&name))
        .map(|f| f.value.as_str())
        .filter(|v| !v.is_empty())
}

/// Split `text` into groups of fields. Empty groups (runs of blank lines) are dropped; a
/// line that is neither a field nor a continuation is skipped.
pub fn parse_groups(text: &str) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let mut current: Group = Vec::new();
    for raw_line in text.split('\n') {
        let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
        if line.trim().is_empty() {
            if !current.is_empty() {
                groups.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // A continuation line (folding): RFC 5322 unfolding removes the CRLF only.
            if let Some(last) = current.last_mut() {
                let more = line.trim();
                if !more.is_empty() {
                    if !last.value.is_empty() {
                        last.value.push(' ');
                    }
                    last.value.push_str(more);
                }
            }
            continue;
        }
        match line.split_once(':') {
            Some((name, value)) if is_field_name(name) => current.push(Field {
                name: name.to_owned(),
                value: value.trim().to_owned(),
            }),
            _ => {}
        }
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

/// RFC 5322 section 3.6.8: `field-name = 1*ftext`, printable ASCII except ":" (and no
/// space, which "Name :" in lenient input would otherwise smuggle in).
fn is_field_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.bytes().all(|b| b.is_ascii_graphic())
}

/// Split a typed value such as `rfc822; user@example.com` or `dns; mx.example.com` into its
/// type (lower-cased) and value. RFC 3464 section 2.3.1: `original-recipient-field =
/// "Original-Recipient" ":" address-type ";" generic-address`. A value without `;` has no
/// type.
pub fn typed_value(value: &str) -> (Option<String>, &str) {
    match value.split_once(';') {
        Some((kind, rest)) if !kind.trim().is_empty() && !kind.contains(['@', '<']) => {
            (Some(kind.trim().to_ascii_lowercase()), rest.trim())
        }
        _ => (None, value.trim()),
    }
}

/// An address from a typed address field, without angle brackets or a trailing comment:
/// `rfc822; <User@Example.COM> (x)` gives `User@Example.COM`.
pub fn address_value(value: &str) -> Option<String> {
    let (_, addr) = typed_value(value);
    clean_address(addr)
}

/// Trim brackets, quotes and comments around a bare address; None if nothing is left.
pub fn clean_address(addr: &str) -> Option<String> {
    let mut a = addr.trim();
    if let Some(start) = a.find('<') {
        let inner = &a[start + 1..];
        a = inner.split('>').next().unwrap_or(inner);
    } else if let Some(cut) = a.find([' ', '\t', '(']) {
        a = &a[..cut];
    }
    let a = a.trim().trim_matches(|c| c == '"' || c == '\'');
    (!a.is_empty()).then(|| a.to_owned())
}

/// The first word of a value, lower-cased (`Action: Failed (bad)` gives `failed`).
pub fn first_word(value: &str) -> String {
    value
        .split(|c: char| c.is_whitespace() || c == '(' || c == ';')
        .find(|w| !w.is_empty())
        .unwrap_or("")
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_folding() {
        let text = "Reporting-MTA: dns; cs.utk.edu\r\n\r\n\r\nOriginal-Recipient: rfc822;a@b\r\n\
                    Diagnostic-Code: smtp; 550 'arathib@vnet.IBM.COM' is not a\r\n    registered gateway user\r\n\
                    garbage line\r\n: no name\r\nStatus: 5.0.0\n\nFinal-Recipient: rfc822; c@d\n";
        let g = parse_groups(text);
        assert_eq!(g.len(), 3);
        assert_eq!(get(&g[0], "reporting-mta"), Some("dns; cs.utk.edu"));
        assert_eq!(
            get(&g[1], "Diagnostic-Code"),
            Some("smtp; 550 'arathib@vnet.IBM.COM' is not a registered gateway user")
        );
        assert_eq!(get(&g[1], "STATUS"), Some("5.0.0"));
        assert_eq!(g[1].len(), 3);
        assert_eq!(get(&g[2], "final-recipient"), Some("rfc822; c@d"));
    }

    #[test]
    fn continuation_before_any_field_is_ignored() {
        assert_eq!(
            parse_groups("  folded\nA: 1\n"),
            vec![vec![Field {
                name: "A".into(),
                value: "1".into()
            }]]
        );
        assert!(parse_groups("").is_empty());
        assert!(parse_groups("\r\n\r\n").is_empty());
    }

    #[test]
    fn typed_values_and_addresses() {
        assert_eq!(typed_value("rfc822; a@b"), (Some("rfc822".into()), "a@b"));
        assert_eq!(typed_value("RFC822;a@b"), (Some("rfc822".into()), "a@b"));
        assert_eq!(typed_value("a@b"), (None, "a@b"));
        assert_eq!(
            address_value("rfc822; <User@Example.COM>"),
            Some("User@Example.COM".into())
        );
        assert_eq!(
            address_value("rfc822;user@example.com (comment)"),
            Some("user@example.com".into())
        );
        assert_eq!(address_value("<a@b>"), Some("a@b".into()));
        assert_eq!(address_value("rfc822;"), None);
        assert_eq!(address_value("rfc822; <>"), None);
        assert_eq!(first_word("Failed (because)"), "failed");
        assert_eq!(first_word(""), "");
    }
}
