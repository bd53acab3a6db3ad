//! The MIME core's one error type.
//!
//! Every error names the field to blame (`"sender"`, `"to[2]"`, `"headers[X-Tag]"`,
//! `"attachments[0].filename"`, ...), so the Python edge can raise `InvalidMessage` or
//! `TemplateError` with a `field` the caller can act on.

use std::fmt;

use super::chars::{describe, find_forbidden, Context};

/// What kind of failure a [`MimeError`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MimeErrorKind {
    /// The message is invalid: bad address, CR/LF in a header, forbidden header...
    Invalid,
    /// A template failed to compile or render.
    Template,
    /// A template used a variable that is not defined for this recipient.
    UndefinedVariable(String),
}

/// An invalid message or template, naming the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MimeError {
    /// What went wrong, broadly.
    pub kind: MimeErrorKind,
    /// The field to blame, e.g. `"sender"`, `"to[0]"`, `"headers[X-Tag]"`.
    pub field: String,
    /// A human-readable description.
    pub message: String,
}

impl MimeError {
    /// An [`MimeErrorKind::Invalid`] error.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: MimeErrorKind::Invalid,
            field: field.into(),
            message: message.into(),
        }
    }

    /// A [`MimeErrorKind::Template`] error.
    pub fn template(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: MimeErrorKind::Template,
            field: field.into(),
            message: message.into(),
        }
    }

    /// A [`MimeErrorKind::UndefinedVariable`] error.
    pub fn undefined(field: impl Into<String>, variable: impl Into<String>) -> Self {
        let field = field.into();
        let variable = variable.into();
        Self {
            message: format!("undefined variable {variable:?} in {field}"),
            kind: MimeErrorKind::UndefinedVariable(variable),
            field,
        }
    }

    /// The undefined variable's name, for [`MimeErrorKind::UndefinedVariable`].
    pub fn variable(&self) -> Option<&str> {
        match &self.kind {
            MimeErrorKind::UndefinedVariable(v) => Some(v),
            _ => None,
        }
    }

    /// True for template errors (compile, render or undefined variable).
    pub fn is_template(&self) -> bool {
        !matches!(self.kind, MimeErrorKind::Invalid)
    }
}

impl fmt::Display for MimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for MimeError {}

/// Shorthand for results of the MIME core.
pub type Result<T> = std::result::Result<T, MimeError>;

/// Reject what header text may not hold (see [`super::chars`]): C0 controls but TAB, DEL,
/// C1 controls, U+2028 LINE SEPARATOR and U+2029 PARAGRAPH SEPARATOR.
///
/// Security: a CR or LF in a header value would let the value start a new header line (or
/// end the header block), i.e. header injection; NUL is forbidden in messages outright; and
/// U+0085, U+2028 and U+2029 are line breaks to Unicode-aware readers.
pub fn check_no_ctl(field: &str, value: &str) -> Result<()> {
    check_chars(field, value, Context::Text)
}

/// Reject characters `context` does not allow in `value`, naming `field`.
pub fn check_chars(field: &str, value: &str, context: Context) -> Result<()> {
    match find_forbidden(value, context) {
        Some(c) => Err(MimeError::invalid(
            field,
            format!("{} is not allowed in {field}", describe(c)),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctl_table() {
        for (value, ok) in [
            ("plain", true),
            ("tab\there", true),
            ("uni ü", true),
            ("a\rb", false),
            ("a\nb", false),
            ("a\r\n b", false),
            ("a\0", false),
            ("esc\x1b[31m", false),
            ("nel\u{85}", false),
            ("ls\u{2028}", false),
            ("zwj \u{200d}", true),
        ] {
            assert_eq!(check_no_ctl("subject", value).is_ok(), ok, "{value:?}");
        }
        let e = check_no_ctl("subject", "x\ny").unwrap_err();
        assert_eq!(e.field, "subject");
        assert!(e.message.contains("LF"));
    }

    #[test]
    fn undefined_names_variable() {
        let e = MimeError::undefined("html", "first_name");
        assert_eq!(e.variable(), Some("first_name"));
        assert!(e.is_template());
        assert!(!MimeError::invalid("x", "y").is_template());
    }
}
