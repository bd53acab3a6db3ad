//! Per-recipient personalization: a [`MessageSpec`] whose subject, text, html and extra
//! header values are minijinja (Jinja-compatible) templates, compiled once per batch.
//!
//! At compile time ([`Template::new`]) everything that does not depend on the recipient is
//! validated and encoded once: addresses, Date/From/Cc/Reply-To headers, attachments and
//! inline parts (base64, shared by reference), and every field whose template uses no
//! variable (rendered and encoded once, reused as bytes). Per recipient
//! ([`Template::render`]) only the fields that use variables are rendered, and the message
//! is assembled around the shared parts.
//!
//! Variables, first match wins: the recipient's data, then `address` / `email` (the
//! recipient's address) and `name` (its display name, or `""`), then the batch data.
//! Undefined variables are errors (strict mode), naming the variable. Values are
//! HTML-escaped in the html part only. A rendered subject or header value that contains
//! CR or LF (say, from recipient data) is an `Invalid` error naming the field: header
//! injection is refused, not cleaned up.

use std::collections::BTreeSet;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, Value};

use minijinja::{AutoEscape, Environment, ErrorKind, Output, State, UndefinedBehavior};

use super::address::Mailbox;
use super::builder::{
    self, assemble, encode_text_part, has_marker, write_text_part, write_text_part_header,
    EncodedPart, Parts, Piece, Prepared,
};
use super::encoding::TransferEncoding;
use super::error::{check_no_ctl, MimeError, Result};
use super::header;
use super::message::BuiltMessage;
use super::random;
use super::segments::Segments;
use super::shared::SharedBytes;
use super::spec::MessageSpec;

/// Template data: top-level names and their values, sorted by name. A sorted vector beats
/// a hash map for the handful of keys a recipient has.
#[derive(Debug, Clone, Default)]
pub struct Data {
    entries: Vec<(String, Value)>,
}

impl Data {
    /// Empty data.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set `key` (replacing an existing value).
    pub fn insert(&mut self, key: String, value: Value) {
        match self.entries.binary_search_by(|(k, _)| k.as_str().cmp(&key)) {
            Ok(i) => self.entries[i].1 = value,
            Err(i) => self.entries.insert(i, (key, value)),
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        if self.entries.len() <= 12 {
            // a few keys: comparing lengths first skips most string compares
            return self
                .entries
                .iter()
                .find(|(k, _)| k.len() == key.len() && k == key)
                .map(|(_, v)| v);
        }
        self.entries
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| &self.entries[i].1)
    }

    /// True when `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The names, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is no name.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl FromIterator<(String, Value)> for Data {
    /// Collect pairs; for a repeated name the last value wins.
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        let mut entries: Vec<(String, Value)> = iter.into_iter().collect();
        // Reversed, a stable sort puts the last value of a name first in its run, and
        // dedup keeps the first of each run: in place, no second vector.
        entries.reverse();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|later, kept| later.0 == kept.0);
        Data { entries }
    }
}

/// Reusable buffers for rendering a batch: one allocation per message (its bytes) instead
/// of one per field.
#[derive(Debug, Default)]
struct Scratch {
    subject: Vec<u8>,
    extra: Vec<u8>,
    text: Vec<u8>,
    html: Vec<u8>,
}

/// One recipient of a batch.
#[derive(Debug, Clone, Default)]
pub struct Recipient {
    /// The address (`a@b` or `Name <a@b>`), the To of its message.
    pub address: String,
    /// The display name; overrides a name given in `address`.
    pub name: Option<String>,
    /// The recipient's template data.
    pub data: Data,
}

/// Names the engine provides for every recipient.
pub const BUILTIN_VARIABLES: [&str; 3] = ["address", "email", "name"];

/// A field of the template: rendered once, or per recipient (without minijinja's VM when
/// it is only text and `{{ name }}`s).
#[derive(Debug)]
enum Field<T> {
    Static(T),
    Dynamic {
        name: String,
        segs: Option<Segments>,
    },
}

/// A message template compiled for a batch.
#[derive(Debug)]
pub struct Template {
    prep: Prepared,
    env: Environment<'static>,
    subject: Field<Vec<u8>>,
    text: Option<Field<EncodedPart>>,
    html: Option<Field<EncodedPart>>,
    headers: Vec<(String, Field<Vec<u8>>)>,
    variables: BTreeSet<String>,
    batch: Arc<Data>,
}

/// The variables of one recipient, looked up in order: recipient data, builtins, batch.
#[derive(Debug)]
struct Context {
    data: Data,
    address: Value,
    name: Value,
    batch: Arc<Data>,
}

impl Context {
    fn lookup(&self, key: &str) -> Option<Value> {
        if let Some(v) = self.data.get(key) {
            return Some(v.clone());
        }
        match key {
            "address" | "email" => Some(self.address.clone()),
            "name" => Some(self.name.clone()),
            _ => self.batch.get(key).cloned(),
        }
    }
}

impl Object for Context {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.lookup(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        self.lookup(key)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let mut keys: BTreeSet<&str> = self.data.keys().collect();
        keys.extend(BUILTIN_VARIABLES);
        keys.extend(self.batch.keys());
        Enumerator::Values(keys.into_iter().map(Value::from).collect())
    }
}

/// Jinja2 (MarkupSafe) HTML escaping of strings: `&`, `<`, `>`, `"` and `'`. minijinja's
/// default also escapes `/`, which would turn every URL in an `href` into `https:&#x2f;...`:
/// valid HTML, but not what Jinja users expect to find in their mail.
fn html_formatter(
    out: &mut Output<'_>,
    state: &mut State<'_, '_>,
    value: &Value,
) -> std::result::Result<(), minijinja::Error> {
    if let (AutoEscape::Html, false, Some(s)) =
        (state.auto_escape(), value.is_safe(), value.as_str())
    {
        let wrote = super::segments::write_escaped_html(s, |piece| out.write_str(piece));
        return wrote.map_err(|_| minijinja::Error::new(ErrorKind::WriteFailure, "write failed"));
    }
    minijinja::escape_formatter(out, state, value)
}

fn make_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_formatter(html_formatter);
    env.set_auto_escape_callback(|name| {
        if name == "html" {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    // A body's final newline is part of the text: keep it (Jinja strips one by default).
    let mut syntax = minijinja::syntax::SyntaxConfig::builder();
    syntax.keep_trailing_newline(true);
    env.set_syntax(syntax.build().expect("default delimiters are valid"));
    // Error spans (to name an undefined variable) work without debug mode, which would
    // copy the template state into every per-recipient error.
    env.set_debug(false);
    env
}

impl Template {
    /// Compile `spec` (whose `to` must be empty: each recipient is the To of its message)
    /// with batch-wide `data`.
    pub fn new(spec: &MessageSpec, data: Data) -> Result<Template> {
        if !spec.to.is_empty() {
            return Err(MimeError::invalid(
                "to",
                "a template's To is each recipient: leave `to` empty",
            ));
        }
        if spec.message_id.is_some() {
            return Err(MimeError::invalid(
                "message_id",
                "each message of a template gets its own Message-ID",
            ));
        }
        let prep = Prepared::new(spec)?;
        let mut t = Template {
            prep,
            env: make_env(),
            subject: Field::Static(Vec::new()),
            text: None,
            html: None,
            headers: Vec::new(),
            variables: BTreeSet::new(),
            batch: Arc::new(data),
        };
        let empty = t.context(Value::from(""), Value::from(""), Data::new());
        // subject
        t.subject = match t.compile("subject", &spec.subject)? {
            Some(f) => f,
            None => {
                let subject = t.render_field("subject", &empty)?;
                let mut out = Vec::new();
                encode_subject(&subject, &mut out)?;
                Field::Static(out)
            }
        };
        for (key, src) in [("text", &spec.text), ("html", &spec.html)] {
            let Some(src) = src else { continue };
            let field = match t.compile(key, src)? {
                Some(f) => f,
                None => {
                    let body = t.render_field(key, &empty)?;
                    Field::Static(encode_text_part(
                        if key == "text" { "plain" } else { "html" },
                        &body,
                        t.prep.single_part(),
                    ))
                }
            };
            if key == "text" {
                t.text = Some(field);
            } else {
                t.html = Some(field);
            }
        }
        for (name, value) in &spec.headers {
            let field_name = builder::check_extra_header(name, value)?;
            let field = match t.compile(&field_name, value)? {
                Some(f) => f,
                None => {
                    let v = t.render_field(&field_name, &empty)?;
                    let mut out = Vec::new();
                    encode_header(name, &field_name, &v, &mut out)?;
                    Field::Static(out)
                }
            };
            t.headers.push((name.clone(), field));
        }
        Ok(t)
    }

    /// Add a template; `None` when it uses no variable (render it once).
    fn compile<T>(&mut self, name: &str, source: &str) -> Result<Option<Field<T>>> {
        self.env
            .add_template_owned(name.to_owned(), source.to_owned())
            .map_err(|e| MimeError::template(name, format!("template syntax error: {e}")))?;
        let tmpl = self.env.get_template(name).expect("just added");
        let vars: BTreeSet<String> = tmpl.undeclared_variables(false).into_iter().collect();
        if vars.is_empty() {
            return Ok(None);
        }
        self.variables.extend(vars);
        Ok(Some(Field::Dynamic {
            name: name.to_owned(),
            segs: Segments::parse(source),
        }))
    }

    fn context(&self, address: Value, name: Value, data: Data) -> Arc<Context> {
        Arc::new(Context {
            data,
            address,
            name,
            batch: self.batch.clone(),
        })
    }

    /// Render the template `name` (minijinja sizes the output buffer from the last
    /// render, so this is one allocation).
    fn render_field(&self, name: &str, ctx: &Arc<Context>) -> Result<String> {
        let tmpl = self.env.get_template(name).expect("compiled");
        tmpl.render(Value::from_dyn_object(ctx.clone()))
            .map_err(|e| self.render_error(name, &e, ctx))
    }

    /// Render a per-recipient field: by concatenation when it is simple and its values
    /// are strings, else with minijinja (which also reports the errors).
    fn render_text(
        &self,
        name: &str,
        segs: &Option<Segments>,
        ctx: &Arc<Context>,
    ) -> Result<String> {
        if let Some(s) = segs {
            let mut out = String::new();
            // The environment escapes the html template only (see `make_env`).
            if s.render(|k| ctx.lookup(k), name == "html", &mut out) {
                return Ok(out);
            }
        }
        self.render_field(name, ctx)
    }

    /// Map a minijinja error to a [`MimeError`]; for undefined values, find the variable:
    /// the failing expression's leading name, else the first top-level name the field uses
    /// that the context lacks.
    fn render_error(&self, field: &str, err: &minijinja::Error, ctx: &Arc<Context>) -> MimeError {
        if err.kind() == ErrorKind::UndefinedError {
            let tmpl = self.env.get_template(field).expect("compiled");
            let from_span = err.range().and_then(|r| tmpl.source().get(r)).map(|expr| {
                expr.trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
                    .collect::<String>()
            });
            let missing = tmpl
                .undeclared_variables(false)
                .into_iter()
                .filter(|v| ctx.lookup(v).is_none())
                .min();
            let var = match (from_span, missing) {
                (Some(s), _) if !s.is_empty() => s,
                (_, Some(m)) => m,
                _ => "?".to_owned(),
            };
            return MimeError::undefined(field, var);
        }
        let detail = err.detail().map(|d| format!(": {d}")).unwrap_or_default();
        MimeError::template(field, format!("{}{detail}", err.kind()))
    }

    /// Top-level variable names the templates use.
    pub fn variables(&self) -> &BTreeSet<String> {
        &self.variables
    }

    /// Variables that neither the batch data nor the builtins (`address`, `email`,
    /// `name`) provide: each recipient's data must have them. The engine can check a
    /// recipient with `recipient_variables - data.keys()` before rendering.
    pub fn recipient_variables(&self) -> BTreeSet<String> {
        self.variables
            .iter()
            .filter(|v| !self.batch.contains_key(v) && !BUILTIN_VARIABLES.contains(&v.as_str()))
            .cloned()
            .collect()
    }

    /// Render one recipient's message.
    pub fn render(&self, recipient: Recipient) -> Result<BuiltMessage> {
        self.render_with(recipient, &mut random::rng(), &mut Scratch::default())
    }

    /// Render a chunk of recipients (one result each, in order).
    pub fn render_batch(&self, recipients: Vec<Recipient>) -> Vec<Result<BuiltMessage>> {
        let mut rng = random::rng();
        let mut scratch = Scratch::default();
        recipients
            .into_iter()
            .map(|r| self.render_with(r, &mut rng, &mut scratch))
            .collect()
    }

    fn render_with(
        &self,
        r: Recipient,
        rng: &mut fastrand::Rng,
        scratch: &mut Scratch,
    ) -> Result<BuiltMessage> {
        let mut mailbox = Mailbox::parse_owned(r.address, "address")?;
        mailbox.check_envelope("address")?;
        if let Some(name) = r.name.filter(|n| !n.is_empty()) {
            check_no_ctl("name", &name)?;
            mailbox.name = Some(name);
        }
        let addr = mailbox.addr_spec().to_owned();
        let display = mailbox.name.as_deref().unwrap_or_default();
        let ctx = self.context(Value::from(addr.as_str()), Value::from(display), r.data);
        let Scratch {
            subject: subject_buf,
            extra,
            text: text_buf,
            html: html_buf,
        } = scratch;

        let subject: &[u8] = match &self.subject {
            Field::Static(b) => b,
            Field::Dynamic { name, segs } => {
                let value = &self.render_text(name, segs, &ctx)?;
                subject_buf.clear();
                encode_subject(value, subject_buf)?;
                subject_buf
            }
        };
        extra.clear();
        for (hname, field) in &self.headers {
            match field {
                Field::Static(b) => extra.extend_from_slice(b),
                Field::Dynamic { name, segs } => {
                    let value = &self.render_text(name, segs, &ctx)?;
                    encode_header(hname, name, value, extra)?;
                }
            }
        }
        let text = self.body_piece(&self.text, "plain", &ctx, text_buf)?;
        let html = self.body_piece(&self.html, "html", &ctx, html_buf)?;

        let mut recipients = Vec::with_capacity(1 + self.prep.extra_recipients.len());
        recipients.push(addr);
        recipients.extend(self.prep.extra_recipients.iter().cloned());
        let smtputf8 = self.prep.smtputf8 || mailbox.needs_smtputf8();
        let to = [&mailbox];
        let parts = Parts {
            to: &to,
            recipients,
            smtputf8,
            subject,
            extra_headers: extra,
            text,
            html,
        };
        Ok(assemble(&self.prep, parts, rng))
    }

    fn body_piece<'a>(
        &'a self,
        field: &'a Option<Field<EncodedPart>>,
        subtype: &str,
        ctx: &Arc<Context>,
        buf: &'a mut Vec<u8>,
    ) -> Result<Option<Piece<'a>>> {
        Ok(match field {
            None => None,
            Some(Field::Static(part)) => Some(Piece::Shared(part)),
            Some(Field::Dynamic { name, segs }) => {
                buf.clear();
                // A simple template's 7bit text is written straight from its literals.
                let mut direct = None;
                if let Some(s) = segs {
                    write_text_part_header(buf, subtype, TransferEncoding::SevenBit);
                    let start = buf.len();
                    let escape = name == "html";
                    let end = self.prep.single_part();
                    if s.write_7bit(|k| ctx.lookup(k), escape, end, buf) {
                        direct = Some(start);
                    }
                }
                let marker = if let Some(start) = direct {
                    self.prep.has_boundaries() && has_marker(&buf[start..])
                } else {
                    buf.clear();
                    let body = &self.render_text(name, segs, ctx)?;
                    buf.reserve(body.len() + body.len() / 16 + 96);
                    write_text_part(buf, subtype, body, self.prep.single_part())
                };
                Some(Piece::Bytes(buf, marker))
            }
        })
    }

    /// The shared (encoded once) parts, for tests: attachments, then static text and html.
    pub fn shared_parts(&self) -> Vec<SharedBytes> {
        let mut v: Vec<SharedBytes> = self
            .prep
            .attachments
            .iter()
            .map(|p| p.bytes.clone())
            .collect();
        for f in [&self.text, &self.html].into_iter().flatten() {
            if let Field::Static(p) = f {
                v.push(p.bytes.clone());
            }
        }
        v
    }
}

fn encode_subject(subject: &str, out: &mut Vec<u8>) -> Result<()> {
    check_no_ctl("subject", subject)?;
    header::write_unstructured(out, "Subject", subject);
    Ok(())
}

fn encode_header(name: &str, field: &str, value: &str, out: &mut Vec<u8>) -> Result<()> {
    check_no_ctl(field, value)?;
    header::write_unstructured(out, name, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mime::spec::AttachmentSpec;

    fn spec() -> MessageSpec {
        MessageSpec {
            sender: "Shop <shop@example.com>".into(),
            subject: "Hello {{ name }}".into(),
            text: Some("Hi {{ first }},\nyour code: {{ code }}\n".into()),
            html: Some("<p>Hi {{ first }}</p>\n".into()),
            date: Some(crate::mime::DateSpec::Text(
                "Thu, 01 Jan 2026 00:00:00 +0000".into(),
            )),
            ..MessageSpec::default()
        }
    }

    fn rcpt(addr: &str, pairs: &[(&str, &str)]) -> Recipient {
        Recipient {
            address: addr.into(),
            name: None,
            data: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Value::from(*v)))
                .collect(),
        }
    }

    fn batch(pairs: &[(&str, &str)]) -> Data {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect()
    }

    #[test]
    fn data_keeps_the_last_value_of_a_name() {
        let d: Data = [("b", 1), ("a", 2), ("b", 3), ("c", 4), ("a", 5)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::from(v)))
            .collect();
        assert_eq!(d.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(d.get("a"), Some(&Value::from(5)));
        assert_eq!(d.get("b"), Some(&Value::from(3)));
    }

    #[test]
    fn renders_and_escapes_only_html() {
        let t = Template::new(&spec(), batch(&[("code", "X1")])).unwrap();
        assert_eq!(
            t.variables().iter().map(String::as_str).collect::<Vec<_>>(),
            ["code", "first", "name"]
        );
        assert_eq!(
            t.recipient_variables().into_iter().collect::<Vec<_>>(),
            ["first"]
        );
        let mut r = rcpt("Bob <bob@example.org>", &[("first", "<b>&")]);
        r.data.insert("code".into(), Value::from("own"));
        let m = t.render(r).unwrap();
        let s = String::from_utf8(m.to_vec()).unwrap();
        assert!(s.contains("Subject: Hello Bob\r\n"), "{s}");
        assert!(s.contains("Hi <b>&,\r\nyour code: own\r\n"), "{s}");
        assert!(s.contains("<p>Hi &lt;b&gt;&amp;</p>"), "{s}");
        assert!(s.contains("To: Bob <bob@example.org>\r\n"));
        assert_eq!(m.recipients(), ["bob@example.org"]);
        let t = Template::new(
            &MessageSpec {
                html: Some("<a href=\"{{ u }}\">{{ q }}</a>".into()),
                ..spec()
            },
            batch(&[("u", "https://x.org/a?b=1&c=2"), ("q", "'\"/")]),
        )
        .unwrap();
        let m = t
            .render(rcpt("a@x.org", &[("first", "f"), ("code", "c")]))
            .unwrap();
        let s = String::from_utf8(m.to_vec()).unwrap();
        assert!(
            s.contains("<a href=\"https://x.org/a?b=1&amp;c=2\">&#39;&#34;/</a>"),
            "{s}"
        );
    }

    #[test]
    fn undefined_variable_is_named() {
        let t = Template::new(&spec(), Data::new()).unwrap();
        let e = t.render(rcpt("a@x.org", &[("first", "A")])).unwrap_err();
        assert_eq!(e.variable(), Some("code"), "{e:?}");
        assert_eq!(e.field, "text");
        let mut s = spec();
        s.text = None;
        s.html = Some("{{ user.first_name }}".into());
        let t = Template::new(&s, Data::new()).unwrap();
        let e = t.render(rcpt("a@x.org", &[])).unwrap_err();
        assert_eq!(e.variable(), Some("user.first_name"), "{e:?}");
        let mut r = rcpt("a@x.org", &[]);
        r.data.insert(
            "user".into(),
            Value::from(std::collections::BTreeMap::from([(
                "x".to_string(),
                Value::from(1),
            )])),
        );
        let e = t.render(r).unwrap_err();
        assert_eq!(e.variable(), Some("user.first_name"), "{e:?}");
        assert_eq!(e.field, "html");
    }

    #[test]
    fn syntax_error_names_field() {
        let mut s = spec();
        s.subject = "{{ oops".into();
        let e = Template::new(&s, Data::new()).unwrap_err();
        assert_eq!(e.field, "subject");
        assert!(e.is_template());
    }

    #[test]
    fn header_injection_from_data_is_refused() {
        let t = Template::new(&spec(), batch(&[("code", "c"), ("first", "f")])).unwrap();
        let mut r = rcpt("a@x.org", &[]);
        r.name = Some("x\r\nBcc: evil@x.org".into());
        assert_eq!(t.render(r).unwrap_err().field, "name");
        let mut s = spec();
        s.subject = "{{ first }}".into();
        let t = Template::new(&s, batch(&[("code", "c")])).unwrap();
        let e = t
            .render(rcpt("a@x.org", &[("first", "a\nBcc: e@x.org")]))
            .unwrap_err();
        assert_eq!((e.field.as_str(), e.is_template()), ("subject", false));
    }

    #[test]
    fn shared_parts_are_encoded_once() {
        let mut s = spec();
        s.html = Some("<p>static</p>".repeat(400));
        s.attachments = vec![AttachmentSpec {
            filename: "big.pdf".into(),
            content: vec![7u8; 100_000].into(),
            content_type: "application/pdf".into(),
            ..AttachmentSpec::default()
        }];
        let t = Template::new(&s, batch(&[("code", "c")])).unwrap();
        let shared = t.shared_parts();
        assert_eq!(shared.len(), 2);
        let ms: Vec<BuiltMessage> = t
            .render_batch(vec![
                rcpt("a@x.org", &[("first", "A")]),
                rcpt("b@x.org", &[("first", "B")]),
            ])
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        for m in &ms {
            let chunks: Vec<&SharedBytes> = m.shared_chunks().collect();
            assert_eq!(chunks.len(), 2);
            for (c, s) in chunks.iter().zip([&shared[1], &shared[0]]) {
                assert_eq!(c.as_ptr(), s.as_ptr());
            }
        }
        assert_ne!(ms[0].message_id(), ms[1].message_id());
    }

    /// The message without its Message-ID line (random per message).
    fn without_id(m: &BuiltMessage) -> String {
        let s = String::from_utf8(m.to_vec()).unwrap();
        s.lines()
            .filter(|l| !l.starts_with("Message-ID:"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn simple_templates_render_like_minijinja() {
        // A comment tag forces minijinja's VM and renders nothing: both must agree.
        let values = [
            "Bob",
            "",
            "x <&> 'q\"",
            "ü",
            "From here",
            "--=_0",
            &"w".repeat(90),
        ];
        let sources = [
            "Dear {{ name }},\n\nyour code is {{ code }}.\n",
            "{{ code }}",
            "a\r\nb\rc {{ code }}\r{{ name }}",
            "\n{{ code }} tail",
            "{{ code }}{{ name }}\n\n",
        ];
        for src in sources {
            for value in values {
                let mut s = spec();
                s.subject = format!("S {{{{ code }}}} {}", src.lines().next().unwrap_or(""));
                s.text = Some(src.to_string());
                s.html = None;
                let mut h = spec();
                h.text = None;
                h.html = Some(src.to_string());
                for s in [s, h] {
                    let mut slow = s.clone();
                    slow.subject.push_str("{# #}");
                    slow.text = slow.text.map(|t| t + "{# #}");
                    slow.html = slow.html.map(|t| t + "{# #}");
                    let r = || rcpt("Ann <a@x.org>", &[("code", value)]);
                    let fast = Template::new(&s, Data::new()).unwrap().render(r());
                    let slow = Template::new(&slow, Data::new()).unwrap().render(r());
                    match (fast, slow) {
                        (Ok(f), Ok(g)) => assert_eq!(without_id(&f), without_id(&g), "{src:?}"),
                        (f, g) => assert_eq!(f.err().map(|e| e.field), g.err().map(|e| e.field)),
                    }
                }
            }
        }
    }

    #[test]
    fn template_rejects_to_and_message_id() {
        let mut s = spec();
        s.to = vec!["a@x.org".into()];
        assert_eq!(Template::new(&s, Data::new()).unwrap_err().field, "to");
        let mut s = spec();
        s.message_id = Some("<a@b>".into());
        assert_eq!(
            Template::new(&s, Data::new()).unwrap_err().field,
            "message_id"
        );
    }
}
