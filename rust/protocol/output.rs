//! [`Output`]: the bytes a connection has framed and not yet handed to the caller, and how
//! far the caller has taken them.
//!
//! Two jobs:
//! * **Offsets.** Every octet framed gets a position in the session's output stream
//!   ([`Output::framed`]); the caller's takes advance [`Output::handed`]. A command is on
//!   the wire exactly when its end offset is at or below `handed`, which is how the
//!   connection knows whether an end of data went out (a message in doubt) and refuses a
//!   reply to a command that was never sent (a surplus reply from the server).
//! * **Bounded memory for large bodies.** A body of [`STREAM_MIN`] octets or more is not
//!   copied into the buffer: it is queued by reference and copied (dot-stuffed for DATA) a
//!   piece at a time as the caller takes bytes, so a 100 MB attachment costs a few
//!   hundred KB of buffers here, not another copy of the message. Small bodies are copied
//!   whole into one buffer: one write per read on the hot path.

use std::collections::VecDeque;

use super::connection::Body;
use super::dotstuff::WireStuffer;

/// Bodies at least this large are handed out in pieces instead of being copied whole.
pub const STREAM_MIN: usize = 1 << 20;

/// At most this many octets of a streamed body per take.
pub const PIECE: usize = 256 << 10;

/// A large body being handed out: where the next octet comes from.
#[derive(Debug)]
struct BodyCursor {
    body: Body,
    /// Octets of the body already copied out.
    done: usize,
    /// Dot-stuffing state for DATA; `None` for BDAT (sent as is).
    stuffer: Option<WireStuffer>,
}

impl BodyCursor {
    /// Copy up to `max` more octets of the body (stuffed if need be) into `out`; true when
    /// the body is finished.
    fn copy(&mut self, max: usize, out: &mut Vec<u8>) -> bool {
        let (start, end) = (self.done, (self.done + max).min(self.body.len()));
        let mut offset = 0;
        let stuffer = &mut self.stuffer;
        self.body.for_each_chunk(|chunk| {
            let (lo, hi) = (offset, offset + chunk.len());
            offset = hi;
            if hi <= start || lo >= end {
                return;
            }
            let piece = &chunk[start.max(lo) - lo..end.min(hi) - lo];
            match stuffer {
                Some(s) => s.encode(piece, out),
                None => out.extend_from_slice(piece),
            }
        });
        self.done = end;
        if self.done < self.body.len() {
            return false;
        }
        if let Some(s) = stuffer {
            s.finish(out);
        }
        true
    }
}

#[derive(Debug)]
enum Piece {
    Bytes(Vec<u8>),
    Body(BodyCursor),
}

/// The framed, not yet handed out bytes of one connection; see the module documentation.
#[derive(Debug, Default)]
pub struct Output {
    /// The first bytes to hand out; everything, unless a large body is queued.
    head: Vec<u8>,
    /// What follows a large body, in order.
    tail: VecDeque<Piece>,
    framed: u64,
    handed: u64,
}

impl Output {
    /// Octets framed since the connection began (the end offset of the last command).
    pub fn framed(&self) -> u64 {
        self.framed
    }

    /// Octets handed to the caller since the connection began.
    pub fn handed(&self) -> u64 {
        self.handed
    }

    /// True when nothing waits to be handed out.
    pub fn is_empty(&self) -> bool {
        self.framed == self.handed
    }

    /// Append with `f` (a command, or a small body) and count what it wrote.
    pub fn write(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        let buf = match self.tail.back_mut() {
            None => &mut self.head,
            Some(Piece::Bytes(b)) => b,
            Some(Piece::Body(_)) => {
                self.tail.push_back(Piece::Bytes(Vec::new()));
                match self.tail.back_mut() {
                    Some(Piece::Bytes(b)) => b,
                    _ => unreachable!("just pushed"),
                }
            }
        };
        let before = buf.len();
        f(buf);
        self.framed += (buf.len() - before) as u64;
    }

    /// Append a body in wire form: as is (BDAT), or dot-stuffed (DATA). Large bodies are
    /// queued by reference; their octets are counted now.
    pub fn body(&mut self, body: &Body, dot_stuff: bool) {
        if body.len() < STREAM_MIN {
            self.write(|out| {
                out.reserve(body.len() + if dot_stuff { body.len() / 64 + 2 } else { 0 });
                if dot_stuff {
                    let mut s = WireStuffer::new();
                    body.for_each_chunk(|c| s.encode(c, out));
                    s.finish(out);
                } else {
                    body.for_each_chunk(|c| out.extend_from_slice(c));
                }
            });
            return;
        }
        let wire_len = if dot_stuff {
            stuffed_len(body)
        } else {
            body.len()
        };
        self.framed += wire_len as u64;
        self.tail.push_back(Piece::Body(BodyCursor {
            body: body.clone(),
            done: 0,
            stuffer: dot_stuff.then(WireStuffer::new),
        }));
    }

    /// Hand the next bytes to `f` (possibly empty), then count them as handed out. Without
    /// a large body queued that is everything; otherwise at least [`PIECE`] octets (what
    /// is buffered and a piece of the body), so a take shorter than that left nothing
    /// behind: callers can tell without asking.
    pub fn take<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> R {
        if !self.tail.is_empty() {
            self.refill_head();
        }
        let r = f(&self.head);
        self.handed += self.head.len() as u64;
        self.head.clear();
        if self.head.capacity() > (4 << 20) {
            self.head.shrink_to(64 << 10);
        }
        r
    }

    /// Move tail bytes into the head until it holds a piece (or the tail is empty).
    fn refill_head(&mut self) {
        while self.head.len() < PIECE {
            match self.tail.front_mut() {
                None => return,
                Some(Piece::Bytes(b)) => {
                    if self.head.is_empty() {
                        std::mem::swap(&mut self.head, b);
                    } else {
                        self.head.extend_from_slice(b);
                    }
                    self.tail.pop_front();
                }
                Some(Piece::Body(cursor)) => {
                    let room = PIECE - self.head.len();
                    if !cursor.copy(room, &mut self.head) {
                        return;
                    }
                    self.tail.pop_front();
                }
            }
        }
    }

    /// Forget everything not yet handed out (the connection ended).
    pub fn clear(&mut self) {
        self.head.clear();
        self.tail.clear();
        self.framed = self.handed;
    }
}

/// The length of a wire-form body after dot-stuffing: one more octet per line that starts
/// with ".". (A wire-form body is empty or ends with CRLF, so `finish` adds nothing.)
fn stuffed_len(body: &Body) -> usize {
    let mut dots = 0;
    let mut at_line_start = true;
    body.for_each_chunk(|c| {
        if c.is_empty() {
            return;
        }
        if at_line_start && c[0] == b'.' {
            dots += 1;
        }
        dots += memchr::memmem::find_iter(c, b"\n.").count();
        at_line_start = c[c.len() - 1] == b'\n';
    });
    body.len() + dots
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::dotstuff::dot_stuff;

    fn drain(out: &mut Output) -> Vec<u8> {
        let mut all = Vec::new();
        loop {
            let more = !out.tail.is_empty();
            let piece = out.take(<[u8]>::to_vec);
            if piece.is_empty() {
                return all;
            }
            // A short take means nothing was left behind.
            assert!(
                piece.len() >= PIECE || !more || out.is_empty(),
                "{}",
                piece.len()
            );
            assert!(piece.len() >= PIECE || out.is_empty());
            // At most a piece of input, which dot-stuffing can at most double.
            assert!(piece.len() <= 2 * PIECE);
            all.extend(piece);
        }
    }

    fn big_body(len: usize) -> Vec<u8> {
        let line = b".dotted line of some length\r\n";
        line.iter()
            .copied()
            .cycle()
            .take(len - len % line.len())
            .collect()
    }

    #[test]
    fn small_bodies_are_copied_whole() {
        let mut out = Output::default();
        out.write(|b| b.extend_from_slice(b"DATA\r\n"));
        out.body(&Body::new(b".x\r\n".to_vec()), true);
        assert_eq!(out.framed(), 11);
        assert_eq!(out.take(<[u8]>::to_vec), b"DATA\r\n..x\r\n");
        assert_eq!(out.handed(), 11);
        assert!(out.is_empty());
    }

    #[test]
    fn large_bodies_stream_with_exact_offsets() {
        for stuff in [false, true] {
            let raw = big_body(3 * STREAM_MIN + 7);
            let mut out = Output::default();
            out.write(|b| b.extend_from_slice(b"BEFORE\r\n"));
            out.body(&Body::new(raw.clone()), stuff);
            out.write(|b| b.extend_from_slice(b"AFTER\r\n"));
            let expected = [
                b"BEFORE\r\n".to_vec(),
                if stuff { dot_stuff(&raw) } else { raw.clone() },
                b"AFTER\r\n".to_vec(),
            ]
            .concat();
            assert_eq!(out.framed(), expected.len() as u64);
            let got = drain(&mut out);
            assert_eq!(got.len(), expected.len());
            assert!(got == expected, "stuff={stuff}");
            assert_eq!(out.handed(), out.framed());
        }
    }

    #[test]
    fn clear_forgets_the_rest() {
        let mut out = Output::default();
        out.body(&Body::new(big_body(2 * STREAM_MIN)), false);
        let first = out.take(|b| b.len());
        assert!(first > 0 && first <= PIECE);
        out.clear();
        assert!(out.is_empty());
        assert_eq!(out.take(|b| b.len()), 0);
    }
}
