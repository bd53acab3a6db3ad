//! Where the incoming byte stream stands relative to TLS record boundaries, so that an end
//! of file in the middle of a record is reported as truncation (rustls buffers a partial
//! record silently and has no way to ask about it).
//!
//! RFC 8446 5.1 / RFC 5246 6.2.1: every record starts with a 5-byte header, content type
//! (1), legacy version (2) and length (2), followed by `length` bytes. Only the length is
//! read here; rustls validates everything else.

/// Counts through record headers and payloads; O(records) per call, no copies.
#[derive(Debug, Default, Clone)]
pub(crate) struct RecordBoundary {
    header: [u8; 5],
    header_len: u8,
    payload_left: usize,
}

impl RecordBoundary {
    /// Advance over `data`, the next bytes of the stream.
    pub(crate) fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(data.len());
                self.payload_left -= n;
                data = &data[n..];
                continue;
            }
            let have = usize::from(self.header_len);
            let n = (5 - have).min(data.len());
            self.header[have..have + n].copy_from_slice(&data[..n]);
            self.header_len += n as u8;
            data = &data[n..];
            if self.header_len == 5 {
                self.payload_left =
                    usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                self.header_len = 0;
            }
        }
    }

    /// True if the stream so far ends inside a record (header or payload).
    pub(crate) fn inside_record(&self) -> bool {
        self.header_len > 0 || self.payload_left > 0
    }
}

#[cfg(test)]
mod tests {
    use super::RecordBoundary;

    fn record(len: u16) -> Vec<u8> {
        let mut r = vec![23, 3, 3];
        r.extend_from_slice(&len.to_be_bytes());
        r.extend(std::iter::repeat_n(0xAA, usize::from(len)));
        r
    }

    #[test]
    fn whole_records_end_on_a_boundary_in_any_split() {
        let stream: Vec<u8> = [record(0), record(7), record(300)].concat();
        for split in 0..=stream.len() {
            let mut b = RecordBoundary::default();
            b.feed(&stream[..split]);
            b.feed(&stream[split..]);
            assert!(!b.inside_record(), "split at {split}");
        }
    }

    #[test]
    fn every_strict_prefix_of_a_record_is_inside_it() {
        let stream = record(20);
        for cut in 1..stream.len() {
            let mut b = RecordBoundary::default();
            for byte in &stream[..cut] {
                b.feed(std::slice::from_ref(byte));
            }
            assert!(b.inside_record(), "cut at {cut}");
        }
    }
}
