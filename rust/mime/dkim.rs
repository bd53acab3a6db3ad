//! DKIM signing (RFC 6376; Ed25519 per RFC 8463): relaxed/relaxed canonicalization,
//! `rsa-sha256` or `ed25519-sha256`, chosen by the key.
//!
//! The signer works on the message's bytes as they will go on the wire (CRLF line endings),
//! so what it signs is exactly what the server receives. Hashing streams over a
//! [`BuiltMessage`]'s chunks: a shared attachment is hashed without joining the message.
//! The crypto (SHA-256, RSA PKCS#1 v1.5, Ed25519) is `ring`'s. Like the rest of the MIME
//! core there is no clock here: the caller passes the signature timestamp.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::{digest, rand, signature};

use super::error::MimeError;
use super::message::BuiltMessage;

/// Header fields signed by default, when present (each also over-signed once, so that a
/// second instance added in transit breaks the signature).
pub const DEFAULT_HEADERS: &[&str] = &[
    "from",
    "reply-to",
    "subject",
    "date",
    "to",
    "cc",
    "message-id",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
];

/// Base64 signature lines in the header are folded at this many characters.
const FOLD: usize = 72;

enum Key {
    Rsa(signature::RsaKeyPair),
    Ed25519(signature::Ed25519KeyPair),
}

/// A DKIM signing identity: domain, selector and private key, parsed once.
pub struct DkimSigner {
    domain: String,
    selector: String,
    key: Key,
    headers: Vec<String>,
    rng: rand::SystemRandom,
}

impl std::fmt::Debug for DkimSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("DkimSigner")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

fn invalid(message: impl Into<String>) -> MimeError {
    MimeError::invalid("dkim", message)
}

/// A DNS label-ish token for d= and s=: nothing that could end a tag or a header line.
fn check_token(what: &str, value: &str) -> Result<(), MimeError> {
    let ok = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} {value:?} must be ASCII letters, digits, '-', '.' or '_'"
        )))
    }
}

impl DkimSigner {
    /// A signer for `domain` (converted to its A-label form) and `selector`, with a PEM
    /// private key: PKCS#8 ("PRIVATE KEY", RSA or Ed25519) or PKCS#1 ("RSA PRIVATE KEY").
    /// RSA keys must be 2048 to 8192 bits. `headers` replaces [`DEFAULT_HEADERS`]; "from"
    /// is always signed (RFC 6376 section 5.4).
    pub fn new(
        domain: &str,
        selector: &str,
        private_key_pem: &[u8],
        headers: Option<&[String]>,
    ) -> Result<Self, MimeError> {
        let domain = idna::domain_to_ascii(domain.trim_end_matches('.'))
            .map_err(|_| invalid(format!("domain {domain:?} is not a valid domain name")))?;
        check_token("domain", &domain)?;
        check_token("selector", selector)?;
        let key = parse_key(private_key_pem)?;
        let mut names: Vec<String> = match headers {
            Some(list) => list.iter().map(|h| h.trim().to_ascii_lowercase()).collect(),
            None => DEFAULT_HEADERS.iter().map(|h| (*h).to_owned()).collect(),
        };
        for name in &names {
            let ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b':' && b != b';');
            if !ok {
                return Err(invalid(format!("{name:?} is not a header field name")));
            }
        }
        if !names.iter().any(|n| n == "from") {
            names.insert(0, "from".to_owned());
        }
        Ok(Self {
            domain,
            selector: selector.to_owned(),
            key,
            headers: names,
            rng: rand::SystemRandom::new(),
        })
    }

    /// `rsa-sha256` or `ed25519-sha256`.
    pub fn algorithm(&self) -> &'static str {
        match self.key {
            Key::Rsa(_) => "rsa-sha256",
            Key::Ed25519(_) => "ed25519-sha256",
        }
    }

    /// The signing domain (A-label form).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The selector.
    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// The DNS TXT record to publish at `<selector>._domainkey.<domain>`.
    pub fn dns_record(&self) -> String {
        match &self.key {
            Key::Rsa(k) => {
                let spki = rsa_spki(signature::KeyPair::public_key(k).as_ref());
                format!("v=DKIM1; k=rsa; p={}", B64.encode(spki))
            }
            Key::Ed25519(k) => format!(
                "v=DKIM1; k=ed25519; p={}",
                B64.encode(signature::KeyPair::public_key(k).as_ref())
            ),
        }
    }

    /// The `DKIM-Signature` header field (ending in CRLF) for a message given as
    /// consecutive byte slices with CRLF line endings.
    pub fn signature_header<'a>(
        &self,
        parts: impl IntoIterator<Item = &'a [u8]>,
        timestamp: Option<u64>,
    ) -> Result<Vec<u8>, MimeError> {
        let mut split = Splitter::default();
        for part in parts {
            split.feed(part);
        }
        let (header_block, body_hash) = split.finish();
        let fields = parse_fields(&header_block);

        // Sign each wanted header once per instance (bottom-up, RFC 6376 5.4.2) plus once
        // more: the extra, absent instance is the over-signature.
        let mut signed_names: Vec<&str> = Vec::new();
        let mut canonical = Vec::with_capacity(header_block.len() + 256);
        for name in &self.headers {
            let mut instances: Vec<&Field> = fields
                .iter()
                .filter(|f| f.name.eq_ignore_ascii_case(name))
                .collect();
            if instances.is_empty() {
                continue;
            }
            instances.reverse();
            for field in instances {
                relaxed_header(&mut canonical, field.raw);
                signed_names.push(name);
            }
            signed_names.push(name);
        }

        let mut header = Vec::with_capacity(512);
        header.extend_from_slice(b"DKIM-Signature: v=1; a=");
        header.extend_from_slice(self.algorithm().as_bytes());
        header.extend_from_slice(b"; c=relaxed/relaxed; d=");
        header.extend_from_slice(self.domain.as_bytes());
        header.extend_from_slice(b"; s=");
        header.extend_from_slice(self.selector.as_bytes());
        header.extend_from_slice(b";");
        if let Some(t) = timestamp {
            header.extend_from_slice(format!("\r\n\tt={t};").as_bytes());
        }
        header.extend_from_slice(b"\r\n\th=");
        let mut line = 3;
        for (i, name) in signed_names.iter().enumerate() {
            if i > 0 {
                if line + name.len() + 1 > FOLD {
                    header.extend_from_slice(b"\r\n\t");
                    line = 1;
                }
                header.push(b':');
                line += 1;
            }
            header.extend_from_slice(name.as_bytes());
            line += name.len();
        }
        header.extend_from_slice(b";\r\n\tbh=");
        header.extend_from_slice(B64.encode(body_hash).as_bytes());
        header.extend_from_slice(b";\r\n\tb=");

        // The signature covers the signed headers and this header with an empty b=,
        // canonicalized the way a verifier will see it, without its final CRLF.
        relaxed_header(&mut canonical, &header);
        canonical.truncate(canonical.len() - 2);
        let signature = self.sign_bytes(&canonical)?;
        let encoded = B64.encode(signature);
        for (i, piece) in encoded.as_bytes().chunks(FOLD).enumerate() {
            if i > 0 {
                header.extend_from_slice(b"\r\n\t ");
            }
            header.extend_from_slice(piece);
        }
        header.extend_from_slice(b"\r\n");
        Ok(header)
    }

    /// A copy of `message` with a `DKIM-Signature` header in front.
    pub fn sign(
        &self,
        message: &BuiltMessage,
        timestamp: Option<u64>,
    ) -> Result<BuiltMessage, MimeError> {
        let header = self.signature_header(message.chunks(), timestamp)?;
        Ok(message.with_prefix(&header))
    }

    fn sign_bytes(&self, data: &[u8]) -> Result<Vec<u8>, MimeError> {
        match &self.key {
            Key::Rsa(k) => {
                let mut out = vec![0; k.public().modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &self.rng, data, &mut out)
                    .map_err(|_| invalid("RSA signing failed"))?;
                Ok(out)
            }
            // RFC 8463: Ed25519 signs the SHA-256 hash of the data.
            Key::Ed25519(k) => {
                let hash = digest::digest(&digest::SHA256, data);
                Ok(k.sign(hash.as_ref()).as_ref().to_vec())
            }
        }
    }
}

fn parse_key(pem_text: &[u8]) -> Result<Key, MimeError> {
    let text = std::str::from_utf8(pem_text).map_err(|_| invalid("the key is not PEM text"))?;
    let block = pem::parse(text).map_err(|e| invalid(format!("the key is not PEM: {e}")))?;
    let der = block.contents();
    match block.tag() {
        "RSA PRIVATE KEY" => signature::RsaKeyPair::from_der(der)
            .map(Key::Rsa)
            .map_err(|e| invalid(format!("unusable RSA key: {e}"))),
        "PRIVATE KEY" => {
            if let Ok(k) = signature::RsaKeyPair::from_pkcs8(der) {
                return Ok(Key::Rsa(k));
            }
            signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .map(Key::Ed25519)
                .map_err(|e| {
                    invalid(format!(
                        "unusable key (RSA 2048-8192 bits or Ed25519 expected): {e}"
                    ))
                })
        }
        other => Err(invalid(format!(
            "expected a PRIVATE KEY or RSA PRIVATE KEY PEM block, got {other:?}"
        ))),
    }
}

/// DER length octets.
fn der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// SubjectPublicKeyInfo around a PKCS#1 RSAPublicKey: the form `openssl rsa -pubout`
/// prints and every verifier accepts in p=.
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    // SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }
    const ALGORITHM: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bit_string = vec![0x03];
    der_len(&mut bit_string, pkcs1.len() + 1);
    bit_string.push(0); // no unused bits
    bit_string.extend_from_slice(pkcs1);
    let mut out = vec![0x30];
    der_len(&mut out, ALGORITHM.len() + bit_string.len());
    out.extend_from_slice(ALGORITHM);
    out.extend_from_slice(&bit_string);
    out
}

/// One header field: its name and its raw bytes (name, colon, value, continuation lines),
/// without the final CRLF.
struct Field<'a> {
    name: &'a str,
    raw: &'a [u8],
}

fn parse_fields(block: &[u8]) -> Vec<Field<'_>> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < block.len() {
        // A field ends at a CRLF not followed by whitespace (a continuation line).
        if block[i] == b'\n' {
            let next = block.get(i + 1).copied();
            if !matches!(next, Some(b' ') | Some(b'\t')) {
                let mut end = i;
                if end > start && block[end - 1] == b'\r' {
                    end -= 1;
                }
                push_field(&mut fields, &block[start..end]);
                start = i + 1;
            }
        }
        i += 1;
    }
    if start < block.len() {
        push_field(&mut fields, &block[start..]);
    }
    fields
}

fn push_field<'a>(fields: &mut Vec<Field<'a>>, raw: &'a [u8]) {
    let Some(colon) = raw.iter().position(|b| *b == b':') else {
        return; // not a header field: nothing a verifier would sign either
    };
    let name = std::str::from_utf8(&raw[..colon]).unwrap_or("").trim_end();
    if !name.is_empty() {
        fields.push(Field { name, raw });
    }
}

/// Relaxed header canonicalization (RFC 6376 3.4.2) of one field, appended to `out`: name
/// lower-cased, unfolded, whitespace runs made one space, none around the colon or at
/// the end, CRLF after it.
fn relaxed_header(out: &mut Vec<u8>, raw: &[u8]) {
    let colon = raw.iter().position(|b| *b == b':').unwrap_or(raw.len());
    let name = raw[..colon].trim_ascii_end();
    out.extend(name.iter().map(u8::to_ascii_lowercase));
    out.push(b':');
    let value = raw.get(colon + 1..).unwrap_or_default();
    let mut space = false;
    let mut started = false;
    for &b in value {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => space = true,
            _ => {
                if space && started {
                    out.push(b' ');
                }
                space = false;
                started = true;
                out.push(b);
            }
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Splits a message into its header block and a running relaxed body hash.
struct Splitter {
    header: Vec<u8>,
    in_body: bool,
    body: RelaxedBody,
}

impl Default for Splitter {
    fn default() -> Self {
        Self {
            header: Vec::with_capacity(1024),
            in_body: false,
            body: RelaxedBody::new(),
        }
    }
}

impl Splitter {
    fn feed(&mut self, data: &[u8]) {
        if self.in_body {
            self.body.feed(data);
            return;
        }
        // The header block ends at the first empty line; it may straddle two chunks.
        let from = self.header.len().saturating_sub(3);
        self.header.extend_from_slice(data);
        if let Some(pos) = memchr::memmem::find(&self.header[from..], b"\r\n\r\n") {
            let end = from + pos + 2; // the block keeps its last CRLF
            let rest = self.header.split_off(end + 2);
            self.header.truncate(end);
            self.in_body = true;
            self.body.feed(&rest);
        }
    }

    fn finish(self) -> (Vec<u8>, digest::Digest) {
        (self.header, self.body.finish())
    }
}

/// Relaxed body canonicalization (RFC 6376 3.4.4), hashed as it streams: whitespace runs
/// become one space, trailing whitespace goes, empty lines at the end go, and a non-empty
/// body ends in CRLF.
struct RelaxedBody {
    hash: digest::Context,
    pending_lines: usize,
    pending_space: bool,
    line_has_content: bool,
}

impl RelaxedBody {
    fn new() -> Self {
        Self {
            hash: digest::Context::new(&digest::SHA256),
            pending_lines: 0,
            pending_space: false,
            line_has_content: false,
        }
    }

    fn feed(&mut self, data: &[u8]) {
        let mut i = 0;
        while i < data.len() {
            match data[i] {
                b' ' | b'\t' => self.pending_space = true,
                b'\r' => {} // the message is CRLF-only: the LF ends the line
                b'\n' => {
                    self.pending_space = false; // trailing whitespace goes
                    if self.line_has_content {
                        self.hash.update(b"\r\n");
                        self.line_has_content = false;
                    } else {
                        self.pending_lines += 1; // kept only if content follows
                    }
                }
                _ => {
                    // A run of content bytes is hashed in one update.
                    let end = data[i..]
                        .iter()
                        .position(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
                        .map_or(data.len(), |p| i + p);
                    self.start_content();
                    self.hash.update(&data[i..end]);
                    i = end;
                    continue;
                }
            }
            i += 1;
        }
    }

    /// Content follows: write the empty lines and the space it comes after.
    fn start_content(&mut self) {
        if !self.line_has_content {
            for _ in 0..self.pending_lines {
                self.hash.update(b"\r\n");
            }
            self.pending_lines = 0;
            self.line_has_content = true;
        }
        if self.pending_space {
            self.hash.update(b" ");
            self.pending_space = false;
        }
    }

    fn finish(mut self) -> digest::Digest {
        if self.line_has_content {
            self.hash.update(b"\r\n");
        }
        self.hash.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relaxed_body(parts: &[&[u8]]) -> Vec<u8> {
        // Reference: the canonical bytes themselves, by the RFC's steps on a joined body.
        let joined: Vec<u8> = parts.concat();
        let text = String::from_utf8(joined).unwrap();
        let mut lines: Vec<String> = text
            .split("\r\n")
            .map(|l| {
                let mut s = String::new();
                let mut space = false;
                for c in l.chars() {
                    if c == ' ' || c == '\t' {
                        space = true;
                    } else {
                        if space {
                            s.push(' ');
                        }
                        space = false;
                        s.push(c);
                    }
                }
                s
            })
            .collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        let mut out = String::new();
        for l in lines {
            out.push_str(&l);
            out.push_str("\r\n");
        }
        out.into_bytes()
    }

    fn hashed(parts: &[&[u8]]) -> Vec<u8> {
        let mut body = RelaxedBody::new();
        for p in parts {
            body.feed(p);
        }
        body.finish().as_ref().to_vec()
    }

    #[test]
    fn relaxed_body_matches_the_rfc_steps_whatever_the_chunking() {
        let cases: &[&[u8]] = &[
            b"",
            b"\r\n",
            b"\r\n\r\n",
            b"a",
            b"hello  world \t\r\n",
            b" C \r\nD \t E\r\n\r\n\r\n",
            b"line\r\n  \r\n\t\r\nmore\r\n \r\n",
            b"x\r\n\r\ny",
        ];
        for case in cases {
            let want = digest::digest(&digest::SHA256, &relaxed_body(&[case]));
            assert_eq!(hashed(&[case]), want.as_ref(), "{case:?}");
            for cut in 0..case.len() {
                let (a, b) = case.split_at(cut);
                assert_eq!(hashed(&[a, b]), want.as_ref(), "{case:?} cut at {cut}");
            }
        }
        // RFC 6376 3.4.6's example body.
        let example = digest::digest(&digest::SHA256, b" C\r\nD E\r\n");
        assert_eq!(hashed(&[b" C \r\nD \t E\r\n\r\n\r\n"]), example.as_ref());
    }

    #[test]
    fn relaxed_header_is_the_rfc_example() {
        let mut out = Vec::new();
        relaxed_header(&mut out, b"A: X");
        relaxed_header(&mut out, b"B : Y\t\r\n\tZ  ");
        assert_eq!(out, b"a:X\r\nb:Y Z\r\n");
    }

    #[test]
    fn fields_keep_continuation_lines_and_skip_junk() {
        let block = b"Subject: a\r\n b\r\nX-Y:1\r\nnot a field\r\nTo: t\r\n";
        let fields = parse_fields(block);
        let names: Vec<_> = fields.iter().map(|f| f.name).collect();
        assert_eq!(names, ["Subject", "X-Y", "To"]);
        assert_eq!(fields[0].raw, b"Subject: a\r\n b");
    }

    #[test]
    fn splitter_finds_the_body_across_chunk_boundaries() {
        let message = b"A: 1\r\nB: 2\r\n\r\nbody  text\r\n";
        let want = hashed(&[b"body  text\r\n"]);
        for cut in 0..message.len() {
            let (a, b) = message.split_at(cut);
            let mut s = Splitter::default();
            s.feed(a);
            s.feed(b);
            let (header, hash) = s.finish();
            assert_eq!(header, b"A: 1\r\nB: 2\r\n", "cut at {cut}");
            assert_eq!(hash.as_ref(), &want[..], "cut at {cut}");
        }
    }

    #[test]
    fn bad_identities_and_keys_are_refused() {
        let key = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        for (domain, selector) in [("ex ample.com", "s"), ("example.com", "s;x"), ("", "s")] {
            let err = DkimSigner::new(domain, selector, key, None).unwrap_err();
            assert_eq!(err.field, "dkim");
        }
        let err = DkimSigner::new("example.com", "s", b"not pem", None).unwrap_err();
        assert!(err.message.contains("PEM"), "{}", err.message);
        let err = DkimSigner::new("example.com", "s", key, None).unwrap_err();
        assert!(err.message.contains("unusable"), "{}", err.message);
    }
}
