//! Randomness for MIME boundaries and Message-IDs, without a clock or a syscall per call.
//!
//! A per-process seed comes from the standard library's `RandomState` (keys drawn from the
//! OS once per thread), mixed with a process-wide counter; every message also takes a
//! fresh counter value, so Message-IDs are unique within a process even if two random
//! draws collided, and unique across processes with 96 random bits.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn process_seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        let mut h = RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish()
    })
}

/// The next value of the process-wide counter.
pub fn next_counter() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A fresh generator: the process seed mixed with the counter.
pub fn rng() -> fastrand::Rng {
    let c = next_counter();
    fastrand::Rng::with_seed(process_seed() ^ c.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17))
}

/// `<random.counter@domain>`: unique per message.
pub fn message_id(rng: &mut fastrand::Rng, domain: &str) -> String {
    let (a, b) = (rng.u64(..), rng.u32(..));
    let mut s = String::with_capacity(domain.len() + 44);
    s.push('<');
    push_hex(&mut s, a, 16);
    push_hex(&mut s, u64::from(b), 8);
    s.push('.');
    let c = next_counter();
    push_hex(&mut s, c, (16 - c.leading_zeros() as usize / 4).max(1));
    s.push('@');
    s.push_str(domain);
    s.push('>');
    s
}

/// A multipart boundary. It starts with `=_`, a sequence that quoted-printable and base64
/// output can never contain, so only 7bit parts need to be checked for it.
pub fn boundary(rng: &mut fastrand::Rng, depth: usize) -> String {
    let mut s = format!("=_{depth}");
    push_hex(&mut s, rng.u64(..), 16);
    push_hex(&mut s, u64::from(rng.u32(..)), 8);
    s
}

/// The low `digits` hex digits of `v`, lower case, zero-padded (`{:0digits$x}` without
/// the formatting machinery, which costs more than the rest of a Message-ID).
fn push_hex(s: &mut String, v: u64, digits: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..digits).rev() {
        s.push(char::from(HEX[((v >> (4 * i)) & 0xf) as usize]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique() {
        let mut r = rng();
        let ids: std::collections::HashSet<String> =
            (0..10_000).map(|_| message_id(&mut r, "x.org")).collect();
        assert_eq!(ids.len(), 10_000);
        let b = boundary(&mut r, 2);
        assert!(b.starts_with("=_2") && b.len() < 70);
        for v in [0u64, 1, 0xabc, u64::MAX] {
            let mut s = String::new();
            push_hex(&mut s, v, (16 - v.leading_zeros() as usize / 4).max(1));
            assert_eq!(s, format!("{v:x}"));
            s.clear();
            push_hex(&mut s, v, 16);
            assert_eq!(s, format!("{v:016x}"));
        }
    }
}
