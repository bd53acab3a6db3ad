//! What one SMTP transaction sends: the envelope ([`Transaction`]) and the message bytes
//! ([`Body`]), validated and in wire form before anything is framed.

use std::sync::Arc;

use super::command::Address;
use super::dotstuff::{self, DotStuffer};
use super::error::{Error, Result};

/// The bytes of a message, possibly in several chunks (a MIME message shares its big
/// parts between messages instead of joining them).
pub trait MessageBytes: Send + Sync {
    /// Total size in octets.
    fn len(&self) -> usize;
    /// True when there are no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Call `f` with each chunk, in order.
    fn for_each_chunk(&self, f: &mut dyn FnMut(&[u8]));
}

/// One contiguous buffer as [`MessageBytes`].
struct Flat<T>(T);

impl<T: AsRef<[u8]> + Send + Sync> MessageBytes for Flat<T> {
    fn len(&self) -> usize {
        self.0.as_ref().len()
    }
    fn for_each_chunk(&self, f: &mut dyn FnMut(&[u8])) {
        f(self.0.as_ref())
    }
}

/// A message body, shared without copying. Inside a [`Transaction`] it is always in wire
/// form (CRLF line ends, ending with CRLF).
#[derive(Clone)]
pub struct Body(Arc<dyn MessageBytes>);

impl Body {
    /// Wrap any owned byte container (a `Vec<u8>`, an `Arc<[u8]>`...).
    pub fn new<T: AsRef<[u8]> + Send + Sync + 'static>(bytes: T) -> Self {
        Body(Arc::new(Flat(bytes)))
    }

    /// Wrap a chunked source, such as an assembled MIME message.
    pub fn from_source(source: Arc<dyn MessageBytes>) -> Self {
        Body(source)
    }

    /// Size in octets.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Call `f` with each chunk, in order.
    pub fn for_each_chunk(&self, mut f: impl FnMut(&[u8])) {
        self.0.for_each_chunk(&mut f)
    }

    /// The bytes as one vector (copied).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        self.for_each_chunk(|c| v.extend_from_slice(c));
        v
    }

    /// Already in wire form?
    fn is_normalized(&self) -> bool {
        let mut check = dotstuff::LineEndCheck::default();
        self.for_each_chunk(|c| check.update(c));
        check.finish()
    }

    /// A normalized copy.
    fn normalized(&self) -> Body {
        let mut out = Vec::with_capacity(self.len() + self.len() / 32 + 2);
        let mut n = DotStuffer::normalizer();
        self.for_each_chunk(|c| n.encode(c, &mut out));
        n.finish(&mut out);
        Body::new(out)
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Body({} octets)", self.len())
    }
}

/// One message to send: the envelope and the body.
#[derive(Debug, Clone)]
pub struct Transaction {
    /// MAIL FROM (may be the null path).
    pub sender: Address,
    /// RCPT TO, at least one.
    pub recipients: Vec<Address>,
    /// The body, normalized (see [`dotstuff`]).
    pub body: Body,
    /// The message needs SMTPUTF8.
    pub smtputf8: bool,
    /// The body holds 8-bit data.
    pub eight_bit: bool,
}

impl Transaction {
    /// Validate the envelope and normalize the body's line ends (without copying when it is
    /// already in wire form). `smtputf8` is also set when an address is not ASCII.
    pub fn new<S: AsRef<str>>(
        sender: &str,
        recipients: &[S],
        body: Body,
        smtputf8: bool,
        eight_bit: bool,
    ) -> Result<Self> {
        let body = if body.is_normalized() {
            body
        } else {
            body.normalized()
        };
        Self::with_normalized_body(sender, recipients, body, smtputf8, eight_bit)
    }

    /// A transaction from a raw body: line ends normalized, `eight_bit` when any octet is
    /// not ASCII.
    pub fn from_raw<S: AsRef<str>>(sender: &str, recipients: &[S], body: &[u8]) -> Result<Self> {
        let eight_bit = !body.is_ascii();
        let body = match dotstuff::normalize(body) {
            std::borrow::Cow::Borrowed(b) => Body::new(Arc::<[u8]>::from(b)),
            std::borrow::Cow::Owned(v) => Body::new(v),
        };
        Self::with_normalized_body(sender, recipients, body, false, eight_bit)
    }

    /// A transaction whose body is already in wire form (only CRLF line ends, ending with
    /// CRLF), as every assembled MIME message is: the body is not scanned again. The
    /// envelope is still validated.
    pub fn from_wire_form<S: AsRef<str>>(
        sender: &str,
        recipients: &[S],
        body: Body,
        smtputf8: bool,
        eight_bit: bool,
    ) -> Result<Self> {
        debug_assert!(body.is_normalized(), "body not in wire form");
        Self::with_normalized_body(sender, recipients, body, smtputf8, eight_bit)
    }

    /// The transaction of a message the MIME builder assembled, to its own envelope: the
    /// body is in wire form and every address passed the one address check when the
    /// message was built, so neither is scanned again.
    pub(crate) fn from_built_message<S: AsRef<str>>(
        sender: &str,
        recipients: &[S],
        body: Body,
        smtputf8: bool,
        eight_bit: bool,
    ) -> Result<Self> {
        debug_assert!(body.is_normalized(), "body not in wire form");
        if recipients.is_empty() {
            return Err(Error::invalid("no recipients", "recipients"));
        }
        Ok(Transaction {
            sender: Address::already_checked(sender),
            recipients: recipients
                .iter()
                .map(|r| Address::already_checked(r.as_ref()))
                .collect(),
            body,
            smtputf8,
            eight_bit,
        })
    }

    fn with_normalized_body<S: AsRef<str>>(
        sender: &str,
        recipients: &[S],
        body: Body,
        smtputf8: bool,
        eight_bit: bool,
    ) -> Result<Self> {
        let sender = Address::sender(sender, "sender")?;
        if recipients.is_empty() {
            return Err(Error::invalid("no recipients", "recipients"));
        }
        let recipients = recipients
            .iter()
            .enumerate()
            .map(|(i, r)| Address::parse(r.as_ref(), false, || format!("recipients[{i}]")))
            .collect::<Result<Vec<_>>>()?;
        let smtputf8 =
            smtputf8 || sender.needs_smtputf8() || recipients.iter().any(Address::needs_smtputf8);
        Ok(Transaction {
            sender,
            recipients,
            body,
            smtputf8,
            eight_bit,
        })
    }
}
