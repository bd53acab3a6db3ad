//! Message structure and assembly: validation of a [`MessageSpec`], the MIME tree, part
//! encoding, boundaries, and the final bytes.
//!
//! Shapes (RFC 2046):
//! * text only: `text/plain`; html only: `text/html`; text and html:
//!   `multipart/alternative` (text first: the last alternative is the preferred one);
//! * inline parts with html: `multipart/related` (html first, then the inline parts), inside
//!   the alternative when there is text too: `alternative(text, related(html, inline...))`;
//! * attachments (and inline parts when there is no html): `multipart/mixed`, outermost,
//!   body first.
//!
//! Boundaries are random per message and start with `=_`, which quoted-printable and
//! base64 output cannot contain; 7bit parts that contain `--=_` are checked against each
//! boundary, and the boundary is drawn again on a collision.
//!
//! A text part's encoded body ends where its text ends: RFC 2046 5.1.1, "The CRLF preceding
//! the boundary delimiter line is conceptually attached to the boundary", so "Hi" is read
//! back as "Hi" from a multipart, not "Hi\n". A message that is one text part has its last
//! line ended instead (DATA needs it, RFC 5321 4.1.1.4), in every transfer encoding alike,
//! as `smtplib` (and so Django's SMTP backend) ends it: such a text reads back with one
//! final line break in every client.
//!
//! The work is split so a template can do most of it once per batch: [`Prepared`] is
//! everything validated and encoded from the spec (addresses, static headers, attachments,
//! layout); [`assemble`] takes the per-message pieces and writes the message.

use super::address::Mailbox;
use super::chars::Context;
use super::content_type::{self, ContentType};
use super::date::{self, DateSpec};
use super::encoding::{choose_text_encoding, encode_base64, write_text, TransferEncoding};
use super::error::{check_chars, check_no_ctl, MimeError, Result};
use super::header::{self, HeaderLine};
use super::message::{BuiltMessage, MessageWriter};
use super::random;
use super::shared::SharedBytes;
use super::spec::{AttachmentSpec, MessageSpec};

/// The MIME tree of a message shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// The text/plain part.
    Text,
    /// The text/html part.
    Html,
    /// The attachment (or inline part) at this index of the spec.
    Attachment(usize),
    /// A multipart with this subtype.
    Multipart(&'static str, Vec<Node>),
}

impl Node {
    fn multipart_count(&self) -> usize {
        match self {
            Node::Multipart(_, children) => {
                1 + children.iter().map(Node::multipart_count).sum::<usize>()
            }
            _ => 0,
        }
    }
}

/// The tree for a message with (or without) text and html and the given attachments.
pub fn layout(has_text: bool, has_html: bool, attachments: &[AttachmentSpec]) -> Node {
    let (inline, attached): (Vec<usize>, Vec<usize>) =
        (0..attachments.len()).partition(|&i| attachments[i].inline && has_html);
    let html = has_html.then(|| {
        if inline.is_empty() {
            Node::Html
        } else {
            let mut children = vec![Node::Html];
            children.extend(inline.iter().map(|&i| Node::Attachment(i)));
            Node::Multipart("related", children)
        }
    });
    let body = match (has_text, html) {
        (true, Some(h)) => Some(Node::Multipart("alternative", vec![Node::Text, h])),
        (true, None) => Some(Node::Text),
        (false, h) => h,
    };
    if attached.is_empty() {
        return body.unwrap_or(Node::Text);
    }
    let mut children: Vec<Node> = body.into_iter().collect();
    children.extend(attached.iter().map(|&i| Node::Attachment(i)));
    Node::Multipart("mixed", children)
}

/// An encoded body part: its MIME headers, a blank line and the encoded body.
#[derive(Debug, Clone)]
pub struct EncodedPart {
    /// The bytes, shared by every message that uses the part.
    pub bytes: SharedBytes,
    /// The part is 7bit and contains `--=_`: boundaries must be checked against it.
    pub marker: bool,
}

/// Write a text part (`text/plain` or `text/html`, utf-8) and say whether its body needs
/// boundary checks. `whole_body`: the part is the message's only part, whose last line is
/// ended (see the module docs); otherwise it ends where `text` ends.
pub fn write_text_part(out: &mut Vec<u8>, subtype: &str, text: &str, whole_body: bool) -> bool {
    let te = choose_text_encoding(text.as_bytes());
    write_text_part_header(out, subtype, te);
    let start = out.len();
    write_text(text.as_bytes(), te, out, whole_body);
    te == TransferEncoding::SevenBit && has_marker(&out[start..])
}

/// The MIME header fields of a text part and the blank line after them.
pub fn write_text_part_header(out: &mut Vec<u8>, subtype: &str, te: TransferEncoding) {
    out.extend_from_slice(b"Content-Type: text/");
    out.extend_from_slice(subtype.as_bytes());
    out.extend_from_slice(b"; charset=utf-8\r\nContent-Transfer-Encoding: ");
    out.extend_from_slice(te.as_str().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

/// A 7bit body holding `--=_` (the start of every boundary) needs boundary checks.
pub fn has_marker(body: &[u8]) -> bool {
    memchr::memmem::find(body, b"--=_").is_some()
}

/// A text part encoded once, to share (`whole_body` as for [`write_text_part`]).
pub fn encode_text_part(subtype: &str, text: &str, whole_body: bool) -> EncodedPart {
    let mut out = Vec::with_capacity(text.len() + text.len() / 16 + 96);
    let marker = write_text_part(&mut out, subtype, text, whole_body);
    EncodedPart {
        bytes: out.into(),
        marker,
    }
}

/// Parse and check an attachment's `type/subtype[; params]` (see [`content_type`]): no
/// multipart (the structure is the builder's), and a `name` parameter only when it agrees
/// with the file name (which writes `name` itself).
fn parse_content_type(ct: &str, filename: &str, field: &str) -> Result<ContentType> {
    check_no_ctl(field, ct)?;
    if ct.len() > MAX_CONTENT_TYPE {
        return Err(MimeError::invalid(
            field,
            format!("content type longer than {MAX_CONTENT_TYPE} octets"),
        ));
    }
    let parsed = content_type::parse(ct).map_err(|why| MimeError::invalid(field, why))?;
    if parsed.mime_type.starts_with("multipart/") {
        return Err(MimeError::invalid(
            field,
            "an attachment cannot be a multipart",
        ));
    }
    if let Some(name) = parsed.param("name") {
        if !filename.is_empty() && name != filename {
            return Err(MimeError::invalid(
                field,
                format!(
                    "name={name:?} differs from the filename {filename:?}: give the name as the \
                     filename only"
                ),
            ));
        }
    }
    Ok(parsed)
}

/// The longest Content-Type an attachment may give (its parameters are written again, folded).
const MAX_CONTENT_TYPE: usize = 900;

/// A Content-ID / Message-ID body (without angle brackets): printable ASCII without
/// spaces or angle brackets, at most 250 octets.
fn check_id(id: &str, field: &str) -> Result<String> {
    check_no_ctl(field, id)?;
    let inner = id
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(id);
    if inner.is_empty()
        || inner.len() > 250
        || !inner
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>')
    {
        return Err(MimeError::invalid(
            field,
            format!("invalid {field} {id:?}: printable ASCII without spaces or angle brackets"),
        ));
    }
    Ok(inner.to_owned())
}

/// Encode one attachment as a shared part (base64, RFC 2231 filename).
pub fn encode_attachment(a: &AttachmentSpec, index: usize) -> Result<EncodedPart> {
    let field = |what: &str| format!("attachments[{index}].{what}");
    check_chars(&field("filename"), &a.filename, Context::Filename)?;
    let content_type = if a.content_type.is_empty() {
        "application/octet-stream"
    } else {
        &a.content_type
    };
    let content_type = parse_content_type(content_type, &a.filename, &field("content_type"))?;
    let cid = a
        .content_id
        .as_deref()
        .map(|c| check_id(c, &field("content_id")))
        .transpose()?;
    let mut out = Vec::with_capacity(a.content.len() / 57 * 78 + 400);
    {
        // The caller's parameters, then the file name as `name` (RFC 2046 4.5.1's, still
        // read by mail clients), unless the caller gave that same name already.
        let mut h = HeaderLine::start(&mut out, "Content-Type");
        h.token(b" ", content_type.mime_type.as_bytes());
        for (attribute, value) in &content_type.params {
            header::write_param(&mut h, attribute, value);
        }
        if !a.filename.is_empty() && content_type.param("name").is_none() {
            header::write_param(&mut h, "name", &a.filename);
        }
        h.finish();
    }
    {
        let mut h = HeaderLine::start(&mut out, "Content-Disposition");
        h.token(b" ", if a.inline { b"inline" } else { b"attachment" });
        if !a.filename.is_empty() {
            header::write_param(&mut h, "filename", &a.filename);
        }
        h.finish();
    }
    if let Some(cid) = cid {
        out.extend_from_slice(b"Content-ID: <");
        out.extend_from_slice(cid.as_bytes());
        out.extend_from_slice(b">\r\n");
    }
    out.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n\r\n");
    encode_base64(&a.content, &mut out);
    Ok(EncodedPart {
        // The encoded part keeps its own allocation: no copy of a large attachment.
        bytes: out.into(),
        marker: false,
    })
}

fn parse_list(list: &[String], name: &str) -> Result<Vec<Mailbox>> {
    list.iter()
        .enumerate()
        .map(|(i, s)| Mailbox::parse(s, &format!("{name}[{i}]")))
        .collect()
}

/// Validate an extra header and pre-encode it (for values that do not change per message).
pub fn check_extra_header(name: &str, value: &str) -> Result<String> {
    let field = format!("headers[{name}]");
    header::check_extra_header_name(name, &field)?;
    check_no_ctl(&field, value)?;
    Ok(field)
}

/// Everything about a message that does not depend on the recipient: validated,
/// encoded, ready for [`assemble`].
#[derive(Debug)]
pub struct Prepared {
    /// The sender.
    pub from: Mailbox,
    /// MAIL FROM.
    pub envelope_sender: String,
    /// To mailboxes of the spec (empty for templates).
    pub to: Vec<Mailbox>,
    /// Envelope recipients besides To: cc then bcc, as addr-specs.
    pub extra_recipients: Vec<String>,
    /// Some static address needs SMTPUTF8.
    pub smtputf8: bool,
    /// Date, From, Reply-To and Cc, encoded.
    pub static_headers: Vec<u8>,
    /// The domain for generated Message-IDs.
    pub msgid_domain: String,
    /// The Message-ID of the spec, validated, with angle brackets.
    pub message_id: Option<String>,
    /// Encoded attachments and inline parts, in spec order.
    pub attachments: Vec<EncodedPart>,
    /// The MIME tree.
    pub layout: Node,
    multiparts: usize,
}

impl Prepared {
    /// True when the layout has multiparts, whose boundaries must be checked against the
    /// 7bit parts (see [`EncodedPart::marker`]).
    pub fn has_boundaries(&self) -> bool {
        self.multiparts > 0
    }

    /// True when the message is one text part: its last line must be ended (see
    /// [`write_text_part`]).
    pub fn single_part(&self) -> bool {
        self.multiparts == 0
    }

    /// Validate everything but subject, bodies and extra headers (which may be templates).
    pub fn new(spec: &MessageSpec) -> Result<Prepared> {
        if spec.sender.trim().is_empty() {
            return Err(MimeError::invalid("sender", "a sender is required"));
        }
        let from = Mailbox::parse(&spec.sender, "sender")?;
        let to = parse_list(&spec.to, "to")?;
        let cc = parse_list(&spec.cc, "cc")?;
        let bcc = parse_list(&spec.bcc, "bcc")?;
        let reply_to = parse_list(&spec.reply_to, "reply_to")?;
        let (envelope_sender, env_utf8) = match spec.envelope_sender.as_deref() {
            None => {
                from.check_envelope("sender")?;
                (from.addr_spec().to_owned(), from.needs_smtputf8())
            }
            Some(s) if s.trim().is_empty() || s.trim() == "<>" => (String::new(), false),
            Some(s) => {
                let m = Mailbox::parse(s, "envelope_sender")?;
                m.check_envelope("envelope_sender")?;
                (m.addr_spec().to_owned(), m.needs_smtputf8())
            }
        };
        // Recipients go into RCPT TO: the one envelope check, before anything is built.
        for (name, list) in [("to", &to), ("cc", &cc), ("bcc", &bcc)] {
            for (i, m) in list.iter().enumerate() {
                m.check_envelope(&format!("{name}[{i}]"))?;
            }
        }
        let smtputf8 = env_utf8
            || from.needs_smtputf8()
            || [&to, &cc, &bcc, &reply_to]
                .iter()
                .any(|l| l.iter().any(Mailbox::needs_smtputf8));
        let message_id = spec
            .message_id
            .as_deref()
            .map(|id| {
                let inner = check_id(id, "message_id")?;
                if inner.matches('@').count() != 1 || inner.starts_with('@') || inner.ends_with('@')
                {
                    return Err(MimeError::invalid(
                        "message_id",
                        "a Message-ID is id-left@id-right",
                    ));
                }
                Ok(format!("<{inner}>"))
            })
            .transpose()?;
        let mut static_headers = Vec::with_capacity(256);
        if let Some(date) = &spec.date {
            if let DateSpec::Text(text) = date {
                check_no_ctl("date", text)?;
            }
            let value = date::header_value(date).map_err(|why| MimeError::invalid("date", why))?;
            static_headers.extend_from_slice(b"Date: ");
            static_headers.extend_from_slice(value.as_bytes());
            static_headers.extend_from_slice(b"\r\n");
        }
        header::write_address_header(&mut static_headers, "From", &[&from]);
        if !reply_to.is_empty() {
            header::write_address_header(
                &mut static_headers,
                "Reply-To",
                &reply_to.iter().collect::<Vec<_>>(),
            );
        }
        if !cc.is_empty() {
            header::write_address_header(&mut static_headers, "Cc", &cc.iter().collect::<Vec<_>>());
        }
        let attachments = spec
            .attachments
            .iter()
            .enumerate()
            .map(|(i, a)| encode_attachment(a, i))
            .collect::<Result<Vec<_>>>()?;
        let layout = layout(spec.text.is_some(), spec.html.is_some(), &spec.attachments);
        let multiparts = layout.multipart_count();
        let extra_recipients = cc
            .iter()
            .chain(bcc.iter())
            .map(|m| m.addr_spec().to_owned())
            .collect();
        Ok(Prepared {
            msgid_domain: from.domain().to_owned(),
            from,
            envelope_sender,
            to,
            extra_recipients,
            smtputf8,
            static_headers,
            message_id,
            attachments,
            layout,
            multiparts,
        })
    }
}

/// A body piece for [`assemble`]: bytes of this message, or a shared part.
#[derive(Debug, Clone, Copy)]
pub enum Piece<'a> {
    /// Owned by this message: copied.
    Bytes(&'a [u8], bool),
    /// Shared: referenced.
    Shared(&'a EncodedPart),
}

impl<'a> Piece<'a> {
    fn bytes(&self) -> &'a [u8] {
        match self {
            Piece::Bytes(b, _) => b,
            Piece::Shared(p) => &p.bytes,
        }
    }
    fn marker(&self) -> bool {
        match self {
            Piece::Bytes(_, m) => *m,
            Piece::Shared(p) => p.marker,
        }
    }
    fn write(&self, w: &mut MessageWriter) {
        match self {
            Piece::Bytes(b, _) => w.buf().extend_from_slice(b),
            Piece::Shared(p) => w.shared(&p.bytes),
        }
    }
}

/// The per-message inputs of [`assemble`].
#[derive(Debug)]
pub struct Parts<'a> {
    /// Mailboxes for the To header.
    pub to: &'a [&'a Mailbox],
    /// Envelope recipients (to + cc + bcc), as addr-specs.
    pub recipients: Vec<String>,
    /// Whether the message needs SMTPUTF8.
    pub smtputf8: bool,
    /// Encoded `Subject:` field (and any other per-message header fields), may be empty.
    pub subject: &'a [u8],
    /// Encoded extra header fields, may be empty.
    pub extra_headers: &'a [u8],
    /// The text/plain part, when the layout has one.
    pub text: Option<Piece<'a>>,
    /// The text/html part, when the layout has one.
    pub html: Option<Piece<'a>>,
}

/// Write one message: headers, then the MIME tree with fresh boundaries.
pub fn assemble(prep: &Prepared, parts: Parts<'_>, rng: &mut fastrand::Rng) -> BuiltMessage {
    let message_id = match &prep.message_id {
        Some(id) => id.clone(),
        None => random::message_id(rng, &prep.msgid_domain),
    };
    let boundaries = pick_boundaries(prep, &parts, rng);
    let mut size =
        prep.static_headers.len() + parts.subject.len() + parts.extra_headers.len() + 256;
    for p in [parts.text, parts.html].into_iter().flatten() {
        if let Piece::Bytes(b, _) = p {
            size += b.len();
        }
    }
    let mut w = MessageWriter::with_capacity(size + 96 * prep.multiparts);
    let out = w.buf();
    out.extend_from_slice(&prep.static_headers);
    if !parts.to.is_empty() {
        header::write_address_header(out, "To", parts.to);
    }
    out.extend_from_slice(parts.subject);
    out.extend_from_slice(b"Message-ID: ");
    out.extend_from_slice(message_id.as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(parts.extra_headers);
    out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    let mut next = 0;
    write_node(&mut w, &prep.layout, prep, &parts, &boundaries, &mut next);
    w.finish(
        prep.envelope_sender.clone(),
        parts.recipients,
        message_id,
        parts.smtputf8,
    )
}

/// The part of a text or html field the layout has but the message lacks.
const EMPTY_TEXT: Piece<'static> = Piece::Bytes(
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n",
    false,
);

fn piece_of<'a>(node: &Node, prep: &'a Prepared, parts: &Parts<'a>) -> Piece<'a> {
    match node {
        Node::Text => parts.text.unwrap_or(EMPTY_TEXT),
        Node::Html => parts.html.unwrap_or(EMPTY_TEXT),
        Node::Attachment(i) => Piece::Shared(&prep.attachments[*i]),
        Node::Multipart(..) => unreachable!("leaves only"),
    }
}

fn pick_boundaries(prep: &Prepared, parts: &Parts<'_>, rng: &mut fastrand::Rng) -> Vec<String> {
    let marked: Vec<&[u8]> = [parts.text, parts.html]
        .into_iter()
        .flatten()
        .filter(|p| p.marker())
        .map(|p| p.bytes())
        .collect();
    (0..prep.multiparts)
        .map(|depth| loop {
            let b = random::boundary(rng, depth);
            let delimiter = format!("--{b}");
            if !marked
                .iter()
                .any(|m| memchr::memmem::find(m, delimiter.as_bytes()).is_some())
            {
                break b;
            }
        })
        .collect()
}

fn write_node(
    w: &mut MessageWriter,
    node: &Node,
    prep: &Prepared,
    parts: &Parts<'_>,
    boundaries: &[String],
    next: &mut usize,
) {
    match node {
        Node::Multipart(subtype, children) => {
            let b = &boundaries[*next];
            *next += 1;
            let out = w.buf();
            out.extend_from_slice(b"Content-Type: multipart/");
            out.extend_from_slice(subtype.as_bytes());
            if *subtype == "related" {
                // RFC 2387 3.1: the type parameter (of the root part) is required.
                out.extend_from_slice(b";\r\n type=\"text/html\"");
            }
            out.extend_from_slice(b";\r\n boundary=\"");
            out.extend_from_slice(b.as_bytes());
            out.extend_from_slice(b"\"\r\n\r\n");
            for (i, child) in children.iter().enumerate() {
                let out = w.buf();
                if i > 0 {
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"--");
                out.extend_from_slice(b.as_bytes());
                out.extend_from_slice(b"\r\n");
                write_node(w, child, prep, parts, boundaries, next);
            }
            let out = w.buf();
            out.extend_from_slice(b"\r\n--");
            out.extend_from_slice(b.as_bytes());
            out.extend_from_slice(b"--\r\n");
        }
        leaf => piece_of(leaf, prep, parts).write(w),
    }
}

/// Validate and assemble one message literally (no templates).
pub fn build_message(spec: &MessageSpec) -> Result<BuiltMessage> {
    let prep = Prepared::new(spec)?;
    check_no_ctl("subject", &spec.subject)?;
    let mut subject = Vec::with_capacity(spec.subject.len() + 16);
    header::write_unstructured(&mut subject, "Subject", &spec.subject);
    let mut extra = Vec::new();
    for (name, value) in &spec.headers {
        check_extra_header(name, value)?;
        header::write_unstructured(&mut extra, name, value);
    }
    let single = prep.single_part();
    let mut text_buf = Vec::new();
    let text_marker = spec
        .text
        .as_deref()
        .map(|t| write_text_part(&mut text_buf, "plain", t, single));
    let mut html_buf = Vec::new();
    let html_marker = spec
        .html
        .as_deref()
        .map(|t| write_text_part(&mut html_buf, "html", t, single));
    let to: Vec<&Mailbox> = prep.to.iter().collect();
    let mut recipients: Vec<String> = prep.to.iter().map(|m| m.addr_spec().to_owned()).collect();
    recipients.extend(prep.extra_recipients.iter().cloned());
    let parts = Parts {
        to: &to,
        recipients,
        smtputf8: prep.smtputf8,
        subject: &subject,
        extra_headers: &extra,
        text: text_marker.map(|m| Piece::Bytes(&text_buf, m)),
        html: html_marker.map(|m| Piece::Bytes(&html_buf, m)),
    };
    Ok(assemble(&prep, parts, &mut random::rng()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> MessageSpec {
        MessageSpec {
            sender: "Ann <ann@example.com>".into(),
            to: vec!["bob@example.org".into()],
            subject: "Hi".into(),
            date: Some(DateSpec::Text("Thu, 01 Jan 2026 00:00:00 +0000".into())),
            ..MessageSpec::default()
        }
    }

    fn att(name: &str, inline: bool) -> AttachmentSpec {
        AttachmentSpec {
            filename: name.into(),
            content: vec![1u8, 2, 3, 255].into(),
            content_type: "application/octet-stream".into(),
            inline,
            content_id: inline.then(|| name.to_string()),
        }
    }

    fn shape(n: &Node) -> String {
        match n {
            Node::Text => "text".into(),
            Node::Html => "html".into(),
            Node::Attachment(i) => format!("a{i}"),
            Node::Multipart(s, c) => {
                format!("{s}({})", c.iter().map(shape).collect::<Vec<_>>().join(","))
            }
        }
    }

    #[test]
    fn layout_table() {
        let a = att("a.bin", false);
        let i = att("i.png", true);
        for (text, html, atts, want) in [
            (true, false, vec![], "text"),
            (false, true, vec![], "html"),
            (false, false, vec![], "text"),
            (true, true, vec![], "alternative(text,html)"),
            (false, true, vec![i.clone()], "related(html,a0)"),
            (
                true,
                true,
                vec![i.clone()],
                "alternative(text,related(html,a0))",
            ),
            (true, false, vec![a.clone()], "mixed(text,a0)"),
            (false, false, vec![a.clone()], "mixed(a0)"),
            (true, false, vec![i.clone()], "mixed(text,a0)"),
            (
                true,
                true,
                vec![a.clone(), i.clone()],
                "mixed(alternative(text,related(html,a1)),a0)",
            ),
        ] {
            assert_eq!(shape(&layout(text, html, &atts)), want);
        }
    }

    fn wire_clean(b: &[u8]) {
        for (i, &c) in b.iter().enumerate() {
            if c == b'\r' {
                assert_eq!(b.get(i + 1), Some(&b'\n'), "bare CR at {i}");
            }
            if c == b'\n' {
                assert!(i > 0 && b[i - 1] == b'\r', "bare LF at {i}");
            }
        }
        for line in b.split(|&c| c == b'\n') {
            assert!(line.len() <= 999, "line too long");
        }
        assert!(b.ends_with(b"\r\n"));
    }

    #[test]
    fn builds_every_shape() {
        let mut s = spec();
        s.text = Some("line\n.\nmore ü\rend".into());
        s.html = Some("<p>Hi</p>".into());
        s.attachments = vec![att("a.bin", false), att("i.png", true)];
        s.bcc = vec!["secret@example.net".into()];
        s.headers = vec![("X-Tag".into(), "t".into())];
        let m = build_message(&s).unwrap();
        let bytes = m.to_vec();
        wire_clean(&bytes);
        let text = String::from_utf8(bytes).unwrap();
        assert!(!text.to_lowercase().contains("secret"));
        assert!(text.contains("multipart/mixed"));
        assert!(text.contains("multipart/related"));
        assert!(text.contains("X-Tag: t\r\n"));
        assert_eq!(m.recipients(), ["bob@example.org", "secret@example.net"]);
        assert_eq!(m.envelope_sender(), "ann@example.com");
        assert!(m.message_id().ends_with("@example.com>"));
        assert!(!m.smtputf8() && !m.eight_bit());
    }

    #[test]
    fn rejection_table() {
        type Edit = fn(&mut MessageSpec);
        let table: &[(Edit, &str)] = &[
            (|s| s.sender = String::new(), "sender"),
            (|s| s.sender = "nobody".into(), "sender"),
            (|s| s.to.push("bad address".into()), "to[1]"),
            (|s| s.cc = vec!["x@y.org".into(), "a@b>".into()], "cc[1]"),
            (|s| s.bcc = vec!["@x".into()], "bcc[0]"),
            (|s| s.reply_to = vec!["x@".into()], "reply_to[0]"),
            (
                |s| s.envelope_sender = Some("a b@c".into()),
                "envelope_sender",
            ),
            (|s| s.subject = "a\r\nBcc: x@y".into(), "subject"),
            (
                |s| s.headers = vec![("X-A".into(), "1\n2".into())],
                "headers[X-A]",
            ),
            (
                |s| s.headers = vec![("Content-Type".into(), "text/html".into())],
                "headers[Content-Type]",
            ),
            (
                |s| s.headers = vec![("Bad Name".into(), "v".into())],
                "headers[Bad Name]",
            ),
            (|s| s.message_id = Some("<a b@c>".into()), "message_id"),
            (|s| s.message_id = Some("no-at".into()), "message_id"),
            (|s| s.date = Some(DateSpec::Text("Mon\r\n".into())), "date"),
            (
                |s| {
                    s.date = Some(DateSpec::Text(
                        "Thu, 01 Jan 2026 00:00:00 +0000\u{85}".into(),
                    ))
                },
                "date",
            ),
            (
                |s| s.date = Some(DateSpec::Text("Fri, 01 Jan 2026 00:00:00 +0000".into())),
                "date",
            ),
            (
                |s| {
                    s.attachments = vec![AttachmentSpec {
                        filename: "a\0".into(),
                        ..att("x", false)
                    }]
                },
                "attachments[0].filename",
            ),
            (
                |s| {
                    s.attachments = vec![AttachmentSpec {
                        filename: "invoice\u{202e}fdp.exe".into(),
                        ..att("x", false)
                    }]
                },
                "attachments[0].filename",
            ),
            (|s| s.to = vec!["b@example.org\u{85}".into()], "to[0]"),
            (|s| s.bcc = vec!["b\u{2028}@example.org".into()], "bcc[0]"),
            (|s| s.to = vec!["\"a b\"@example.org".into()], "to[0]"),
            (
                |s| s.sender = "Ann\u{2028} <a@example.com>".into(),
                "sender",
            ),
            (|s| s.subject = "a\u{85}Bcc: x@y".into(), "subject"),
            (
                |s| s.headers = vec![("X-A".into(), "1\u{2029}2".into())],
                "headers[X-A]",
            ),
            (
                |s| {
                    s.attachments = vec![AttachmentSpec {
                        content_type: "nonsense".into(),
                        ..att("x", false)
                    }]
                },
                "attachments[0].content_type",
            ),
            (
                |s| {
                    s.attachments = vec![AttachmentSpec {
                        content_id: Some("a\rb".into()),
                        ..att("x", true)
                    }]
                },
                "attachments[0].content_id",
            ),
        ];
        for (edit, field) in table {
            let mut s = spec();
            edit(&mut s);
            let e = build_message(&s).expect_err(field);
            assert_eq!(e.field, *field, "{e}");
        }
    }

    /// The Content-Type line of the first attachment of a message with `content_type`.
    fn attachment_content_type(filename: &str, content_type: &str) -> Result<String> {
        let mut s = spec();
        s.attachments = vec![AttachmentSpec {
            filename: filename.into(),
            content_type: content_type.into(),
            ..att("x", false)
        }];
        s.text = Some("t".into());
        let bytes = build_message(&s)?.to_vec();
        let text = String::from_utf8(bytes).unwrap().replace("\r\n ", " ");
        let line = text
            .lines()
            .filter(|l| l.starts_with("Content-Type:"))
            .nth(2) // multipart/mixed, text/plain, then the attachment
            .expect("attachment part");
        Ok(line.to_owned())
    }

    #[test]
    fn attachment_content_type_parameters_are_merged() {
        for (filename, ct, want) in [
            (
                "x.txt",
                "text/plain; charset=utf-8",
                "Content-Type: text/plain; charset=\"utf-8\"; name=\"x.txt\"",
            ),
            (
                "x.txt",
                "text/plain; name=\"x.txt\"",
                "Content-Type: text/plain; name=\"x.txt\"",
            ),
            (
                "",
                "Application/PDF; NAME=a.pdf",
                "Content-Type: application/pdf; name=\"a.pdf\"",
            ),
            // A quote in a value cannot close the parameter: it is written per RFC 2231.
            (
                "x.txt",
                "text/plain; format=\"a\\\"; evil=1\"",
                "Content-Type: text/plain; format*=utf-8''a%22%3B%20evil%3D1; name=\"x.txt\"",
            ),
        ] {
            assert_eq!(
                attachment_content_type(filename, ct).unwrap(),
                want,
                "{ct:?}"
            );
        }
        for (filename, ct, why) in [
            (
                "x.txt",
                "text/plain; name=\"y.txt\"",
                "differs from the filename",
            ),
            (
                "x.txt",
                "text/plain; charset=a; charset=b",
                "more than once",
            ),
            ("x.txt", "text/plain; name=\"x\"\r\nBcc: e@x.org", "CR"),
            ("x.txt", "text/plain; name*0=a", "continuations"),
        ] {
            let e = attachment_content_type(filename, ct).unwrap_err();
            assert_eq!(e.field, "attachments[0].content_type");
            assert!(e.message.contains(why), "{ct:?}: {e}");
        }
    }

    #[test]
    fn boundary_avoids_7bit_content() {
        // A 7bit text holding "--=_": every boundary must differ from what it contains.
        let mut s = spec();
        let mut text = String::new();
        for d in 0..4 {
            text.push_str(&format!("--=_{d}\n"));
        }
        s.text = Some(text);
        s.html = Some("<p>x</p>".into());
        let m = build_message(&s).unwrap();
        let body = String::from_utf8(m.to_vec()).unwrap();
        let b = body
            .split("boundary=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(body.matches(&format!("--{b}")).count(), 3);
    }
}
