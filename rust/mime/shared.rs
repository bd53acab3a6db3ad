//! [`SharedBytes`]: immutable bytes shared without copying.
//!
//! An attachment's content and its encoded part are shared by every message of a batch,
//! and a large one must not be copied on the way: a `Vec` becomes shared as it is (where
//! `Arc<[u8]>::from(vec)` would copy it into a new allocation), and the Python binding
//! wraps a `bytes` object itself instead of copying its content.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// Immutable bytes behind a shared pointer; cloning shares them.
#[derive(Clone)]
pub struct SharedBytes(Arc<dyn AsRef<[u8]> + Send + Sync>);

impl SharedBytes {
    /// Share any owned byte container (a `Vec<u8>`, a boxed slice, a Python bytes object).
    pub fn new<T: AsRef<[u8]> + Send + Sync + 'static>(bytes: T) -> Self {
        SharedBytes(Arc::new(bytes))
    }
}

impl Deref for SharedBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        (*self.0).as_ref()
    }
}

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl From<Vec<u8>> for SharedBytes {
    /// Shares the vector's own allocation (no copy).
    fn from(v: Vec<u8>) -> Self {
        SharedBytes::new(v)
    }
}

impl From<&[u8]> for SharedBytes {
    fn from(v: &[u8]) -> Self {
        SharedBytes::new(v.to_vec())
    }
}

impl Default for SharedBytes {
    fn default() -> Self {
        SharedBytes::new(Vec::new())
    }
}

impl fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedBytes({} octets)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vec_is_shared_without_a_copy() {
        let v = vec![7u8; 1000];
        let at = v.as_ptr();
        let shared = SharedBytes::from(v);
        assert_eq!(shared.as_ptr(), at);
        let again = shared.clone();
        assert_eq!(again.as_ptr(), at);
        assert_eq!(&*again, &[7u8; 1000][..]);
    }
}
