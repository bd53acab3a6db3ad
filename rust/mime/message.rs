//! [`BuiltMessage`]: an assembled message, ready for a transaction.
//!
//! The bytes are a list of chunks: bytes owned by this message (headers, personalized
//! parts, boundaries) and shared chunks ([`SharedBytes`]: an attachment encoded once for a
//! whole batch). A thousand messages with the same 100 KB attachment hold one copy of it.
//! [`BuiltMessage::chunks`] lets the protocol layer write the message without joining it;
//! [`BuiltMessage::body`] joins it once, on demand, and caches the result.

use std::ops::Range;
use std::sync::OnceLock;

use super::shared::SharedBytes;

/// Shared parts smaller than this are copied into the message: one contiguous buffer is
/// worth more than saving a small copy.
const SHARE_MIN: usize = 4096;

#[derive(Debug, Clone)]
enum Chunk {
    Own(Range<usize>),
    Shared(SharedBytes),
}

/// One assembled message: envelope, Message-ID and the RFC 5322 bytes (CRLF line endings).
#[derive(Debug)]
pub struct BuiltMessage {
    envelope_sender: String,
    recipients: Vec<String>,
    message_id: String,
    smtputf8: bool,
    eight_bit: bool,
    data: Vec<u8>,
    /// Empty when `data` is the whole message.
    chunks: Vec<Chunk>,
    len: usize,
    flat: OnceLock<Box<[u8]>>,
}

impl BuiltMessage {
    /// The MAIL FROM address (ASCII domain), without angle brackets; `""` for `<>`.
    pub fn envelope_sender(&self) -> &str {
        &self.envelope_sender
    }

    /// The RCPT TO addresses: to, cc, bcc (ASCII domains).
    pub fn recipients(&self) -> &[String] {
        &self.recipients
    }

    /// The Message-ID, with angle brackets.
    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// True when the message needs SMTPUTF8 (a non-ASCII local part).
    pub fn smtputf8(&self) -> bool {
        self.smtputf8
    }

    /// True when the message holds 8-bit octets (needs BODY=8BITMIME / SMTPUTF8).
    pub fn eight_bit(&self) -> bool {
        self.eight_bit
    }

    /// Size in octets.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty message (never produced by the builder).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The message as consecutive byte slices, without copying.
    pub fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        let whole = self.chunks.is_empty().then_some(&self.data[..]);
        whole.into_iter().chain(self.chunks.iter().map(|c| match c {
            Chunk::Own(r) => &self.data[r.clone()],
            Chunk::Shared(a) => &a[..],
        }))
    }

    /// The whole message as one slice: free when the message is one chunk, otherwise
    /// joined on first use and cached.
    pub fn body(&self) -> &[u8] {
        if self.chunks.is_empty() {
            return &self.data;
        }
        self.flat.get_or_init(|| self.to_vec().into_boxed_slice())
    }

    /// Append the message to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.len);
        for c in self.chunks() {
            out.extend_from_slice(c);
        }
    }

    /// The message as a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len);
        self.write_to(&mut v);
        v
    }

    /// A copy with `prefix` (e.g. a trace or DKIM-Signature header field) in front; the
    /// shared chunks stay shared.
    pub fn with_prefix(&self, prefix: &[u8]) -> BuiltMessage {
        let shift = prefix.len();
        let mut data = Vec::with_capacity(shift + self.data.len());
        data.extend_from_slice(prefix);
        data.extend_from_slice(&self.data);
        let chunks = if self.chunks.is_empty() {
            Vec::new()
        } else {
            std::iter::once(Chunk::Own(0..shift))
                .chain(self.chunks.iter().map(|c| match c {
                    Chunk::Own(r) => Chunk::Own(r.start + shift..r.end + shift),
                    Chunk::Shared(a) => Chunk::Shared(a.clone()),
                }))
                .collect()
        };
        BuiltMessage {
            envelope_sender: self.envelope_sender.clone(),
            recipients: self.recipients.clone(),
            message_id: self.message_id.clone(),
            smtputf8: self.smtputf8,
            eight_bit: self.eight_bit,
            data,
            chunks,
            len: self.len + shift,
            flat: OnceLock::new(),
        }
    }

    /// The shared chunks (for tests and debugging: equal pointers across messages prove
    /// a part was encoded once).
    pub fn shared_chunks(&self) -> impl Iterator<Item = &SharedBytes> {
        self.chunks.iter().filter_map(|c| match c {
            Chunk::Shared(a) => Some(a),
            Chunk::Own(_) => None,
        })
    }
}

/// Builds a [`BuiltMessage`]'s bytes: owned bytes go to [`MessageWriter::buf`], shared
/// chunks through [`MessageWriter::shared`].
#[derive(Debug, Default)]
pub struct MessageWriter {
    data: Vec<u8>,
    chunks: Vec<Chunk>,
    mark: usize,
    shared_len: usize,
}

impl MessageWriter {
    /// A writer with room for `capacity` owned octets.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            data: Vec::with_capacity(capacity),
            ..Self::default()
        }
    }

    /// The owned buffer, to append to.
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.data
    }

    /// Append a shared chunk (copied instead when it is small).
    pub fn shared(&mut self, part: &SharedBytes) {
        if part.len() < SHARE_MIN {
            self.data.extend_from_slice(part);
            return;
        }
        if self.data.len() > self.mark {
            self.chunks.push(Chunk::Own(self.mark..self.data.len()));
        }
        self.mark = self.data.len();
        self.shared_len += part.len();
        self.chunks.push(Chunk::Shared(part.clone()));
    }

    /// Finish the message.
    pub fn finish(
        mut self,
        envelope_sender: String,
        recipients: Vec<String>,
        message_id: String,
        smtputf8: bool,
    ) -> BuiltMessage {
        if !self.chunks.is_empty() && self.data.len() > self.mark {
            self.chunks.push(Chunk::Own(self.mark..self.data.len()));
        }
        // Shared chunks are encoded parts (7bit, quoted-printable or base64): ASCII.
        let eight_bit = !self.data.is_ascii();
        BuiltMessage {
            envelope_sender,
            recipients,
            message_id,
            smtputf8,
            eight_bit,
            len: self.data.len() + self.shared_len,
            data: self.data,
            chunks: self.chunks,
            flat: OnceLock::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_join() {
        let big = SharedBytes::from(vec![b'A'; 5000]);
        let small = SharedBytes::from(b"small".to_vec());
        let mut w = MessageWriter::default();
        w.buf().extend_from_slice(b"head\r\n");
        w.shared(&big);
        w.shared(&small);
        w.buf().extend_from_slice(b"tail\r\n");
        let m = w.finish(String::new(), vec![], "<x@y>".into(), false);
        let want = [&b"head\r\n"[..], &big[..], b"small", b"tail\r\n"].concat();
        assert_eq!(m.len(), want.len());
        assert_eq!(m.to_vec(), want);
        assert_eq!(m.body(), &want[..]);
        assert_eq!(m.chunks().count(), 3);
        assert_eq!(m.shared_chunks().count(), 1);
        assert_eq!(m.shared_chunks().next().unwrap().as_ptr(), big.as_ptr());
        assert!(!m.eight_bit());
    }

    #[test]
    fn single_chunk_body_borrows() {
        let mut w = MessageWriter::default();
        w.buf().extend_from_slice("Subject: ü\r\n\r\n".as_bytes());
        let m = w.finish(String::new(), vec![], "<x@y>".into(), true);
        assert_eq!(m.chunks().count(), 1);
        assert!(m.eight_bit());
        assert_eq!(m.body().as_ptr(), m.chunks().next().unwrap().as_ptr());
    }
}
