//! [`TlsConfig`]: everything a TLS client session needs that does not change per
//! connection, built once per engine (or pool) and shared by every session made from it.
//!
//! Security defaults match Python's `ssl.create_default_context()`, which fastsmtp used
//! before: the server's certificate chain is verified against the system trust store, the
//! server name (host name or IP address) is checked against the certificate, and TLS 1.2 is
//! the minimum version. Turning verification off is an explicit [`Verify::None`].
//!
//! Choices, and why:
//! * **Crypto provider: ring.** The crate already links ring for DKIM, so TLS adds no
//!   second crypto library; ring builds with a plain C compiler, while aws-lc-rs needs
//!   cmake (absent here) and is harder to cross-build for manylinux2014 with zig. ring's
//!   AES-GCM and ChaCha20-Poly1305 are assembly-accelerated, so the record cost is the
//!   same order (well under 1 µs per 1.2 KB record).
//! * **Trust store: rustls-native-certs**, read once per process. On Linux it reads the
//!   same files OpenSSL (and so Python's `ssl`) reads, honouring `SSL_CERT_FILE` and
//!   `SSL_CERT_DIR`, so "verified by default" trusts exactly what it trusted before.
//!   rustls-platform-verifier would hand each handshake to the OS verifier on macOS and
//!   Windows (different rules from today's OpenSSL path, and a per-handshake OS call);
//!   on Linux it does the same as native-certs with more machinery.
//! * **Session resumption**: rustls's in-memory client session store (256 servers) lives in
//!   the shared `ClientConfig`, so every session made from one `TlsConfig` resumes from
//!   tickets (TLS 1.3, TLS 1.2) or session IDs (TLS 1.2) that an earlier one stored.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::{ring, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error as RustlsError, RootCertStore,
    SignatureScheme,
};

use super::error::TlsError;

/// A TLS protocol version fastsmtp can negotiate (rustls speaks only 1.2 and 1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2 (RFC 5246).
    Tls12,
    /// TLS 1.3 (RFC 8446).
    Tls13,
}

/// How much of the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// The chain up to a trusted CA, validity dates and the server name (the default;
    /// Python's `CERT_REQUIRED` with `check_hostname=True`).
    Full,
    /// The chain and dates, but not the name (Python's `check_hostname=False` with
    /// `CERT_REQUIRED`).
    ChainOnly,
    /// Nothing but the handshake signature (Python's `CERT_NONE`): encryption against a
    /// passive listener only. Never a default; a caller must ask for it.
    None,
}

/// The server certificates a [`TlsConfig`] trusts.
#[derive(Clone, Debug, Default)]
pub enum Trust {
    /// The system trust store (see the module docs).
    #[default]
    System,
    /// Only these CA certificates (Python: `cafile`/`cadata`, which also replace the
    /// defaults in `ssl.create_default_context`).
    Certificates(Vec<CertificateDer<'static>>),
}

/// A client certificate chain and its private key, for servers that ask for one.
#[derive(Debug)]
pub struct ClientIdentity {
    /// The leaf certificate first, then any intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PrivateKeyDer<'static>,
}

/// The settings a [`TlsConfig`] is built from; `Default` is the secure default.
#[derive(Debug)]
pub struct TlsOptions {
    /// Trust anchors for the server's certificate.
    pub trust: Trust,
    /// How much of the server's certificate is checked.
    pub verify: Verify,
    /// A certificate to present when the server asks for one.
    pub client_identity: Option<ClientIdentity>,
    /// Lowest version offered (Python's default context: TLS 1.2).
    pub min_version: TlsVersion,
    /// Highest version offered.
    pub max_version: TlsVersion,
    /// Keep sessions for resumption by later connections made from the same config.
    pub resumption: bool,
}

impl Default for TlsOptions {
    fn default() -> Self {
        Self {
            trust: Trust::System,
            verify: Verify::Full,
            client_identity: None,
            min_version: TlsVersion::Tls12,
            max_version: TlsVersion::Tls13,
            resumption: true,
        }
    }
}

/// Built once, shared by every session: the rustls client configuration, including the
/// session cache that lets later connections resume.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    pub(crate) client: Arc<ClientConfig>,
    verify: Verify,
}

impl TlsConfig {
    /// Build a config from `options`.
    ///
    /// Fails with a [`TlsErrorKind::Config`](super::TlsErrorKind::Config) error for a
    /// version range that is empty, a system trust store with no certificates, or a client
    /// key that does not match a supported algorithm.
    pub fn new(options: TlsOptions) -> Result<Self, TlsError> {
        let provider = Arc::new(ring::default_provider());
        let versions = protocol_versions(options.min_version, options.max_version)?;
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| TlsError::config(format!("unusable TLS versions: {e}")))?;
        let verifier: Arc<dyn ServerCertVerifier> = match options.verify {
            Verify::None => Arc::new(AcceptAnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }),
            verify => {
                let roots = match options.trust {
                    Trust::System => system_roots()?,
                    Trust::Certificates(certs) => Arc::new(root_store(certs)?),
                };
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| TlsError::config(format!("cannot verify servers: {e}")))?;
                if verify == Verify::ChainOnly {
                    Arc::new(IgnoreServerName(webpki))
                } else {
                    webpki
                }
            }
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut client = match options.client_identity {
            None => builder.with_no_client_auth(),
            Some(identity) => builder
                .with_client_auth_cert(identity.chain, identity.key)
                .map_err(|e| TlsError::config(format!("unusable client certificate: {e}")))?,
        };
        if !options.resumption {
            client.resumption = Resumption::disabled();
        }
        Ok(Self {
            client: Arc::new(client),
            verify: options.verify,
        })
    }

    /// How much of the server's certificate sessions from this config check.
    pub fn verify(&self) -> Verify {
        self.verify
    }
}

fn protocol_versions(
    min: TlsVersion,
    max: TlsVersion,
) -> Result<&'static [&'static rustls::SupportedProtocolVersion], TlsError> {
    static BOTH: &[&rustls::SupportedProtocolVersion] =
        &[&rustls::version::TLS13, &rustls::version::TLS12];
    static ONLY_13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    static ONLY_12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
    match (min, max) {
        (TlsVersion::Tls12, TlsVersion::Tls13) => Ok(BOTH),
        (TlsVersion::Tls13, TlsVersion::Tls13) => Ok(ONLY_13),
        (TlsVersion::Tls12, TlsVersion::Tls12) => Ok(ONLY_12),
        (TlsVersion::Tls13, TlsVersion::Tls12) => Err(TlsError::config(
            "min_version is above max_version: no TLS version left to offer",
        )),
    }
}

fn root_store(certs: Vec<CertificateDer<'static>>) -> Result<RootCertStore, TlsError> {
    if certs.is_empty() {
        return Err(TlsError::config("no CA certificates given"));
    }
    let mut store = RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        store
            .add(cert)
            .map_err(|e| TlsError::config(format!("CA certificate {} is unusable: {e}", i + 1)))?;
    }
    Ok(store)
}

/// The system trust store, read once per process (parsing ~150 certificates takes
/// milliseconds; engines are cheap to make and should stay so).
fn system_roots() -> Result<Arc<RootCertStore>, TlsError> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, TlsError>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                let why = found
                    .errors
                    .first()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default();
                return Err(TlsError::config(format!(
                    "no system CA certificates found{why}; install ca-certificates, set \
                     SSL_CERT_FILE, or pass ca_file/ca_data"
                )));
            }
            Ok(Arc::new(store))
        })
        .clone()
}

/// Parse every `CERTIFICATE` block of a PEM text (other blocks are skipped, as OpenSSL
/// does with a CA file).
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::config(format!("bad PEM certificate data: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::config("no PEM certificate found"));
    }
    Ok(certs)
}

/// Split concatenated DER certificates (Python's `cadata` as bytes) by their ASN.1
/// SEQUENCE headers. Only the outer length is read; the certificate itself is parsed when
/// it is added to a trust store.
pub fn certificates_from_der(mut der: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = || TlsError::config("bad DER certificate data");
    let mut certs = Vec::new();
    while !der.is_empty() {
        // X.690 8.1.2 / 8.1.3: tag 0x30 (SEQUENCE), then a short length (< 0x80) or
        // 0x80 | n followed by n big-endian length octets.
        if der.len() < 2 || der[0] != 0x30 {
            return Err(bad());
        }
        let (header, len) = match der[1] {
            short @ 0..=0x7f => (2, usize::from(short)),
            long => {
                let n = usize::from(long & 0x7f);
                if n == 0 || n > 4 || der.len() < 2 + n {
                    return Err(bad());
                }
                let len = der[2..2 + n]
                    .iter()
                    .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
                (2 + n, len)
            }
        };
        let end = header
            .checked_add(len)
            .filter(|&e| e <= der.len())
            .ok_or_else(bad)?;
        certs.push(CertificateDer::from(der[..end].to_vec()));
        der = &der[end..];
    }
    if certs.is_empty() {
        return Err(TlsError::config("no DER certificate found"));
    }
    Ok(certs)
}

/// A client identity from PEM: the certificate chain from `cert_pem`, the key from
/// `key_pem` or, when that is `None`, from `cert_pem` too (Python's `load_cert_chain`
/// accepts a file holding both).
pub fn client_identity_from_pem(
    cert_pem: &[u8],
    key_pem: Option<&[u8]>,
) -> Result<ClientIdentity, TlsError> {
    let chain = certificates_from_pem(cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.unwrap_or(cert_pem))
        .map_err(|e| TlsError::config(format!("no usable PEM private key: {e}")))?;
    Ok(ClientIdentity { chain, key })
}

/// `Verify::ChainOnly`: webpki's full verification with a name mismatch forgiven.
#[derive(Debug)]
struct IgnoreServerName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for IgnoreServerName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, RustlsError> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            // webpki checks the name last, after chain, dates and usage, so these errors
            // mean everything but the name was fine.
            Err(RustlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RustlsError> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RustlsError> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `Verify::None`: any certificate is accepted, but the handshake signature is still
/// checked against it (as OpenSSL does with `SSL_VERIFY_NONE`), so the server must at
/// least hold the key of the certificate it shows.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, RustlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RustlsError> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RustlsError> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The provider every config uses (for tests that build a matching server).
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}
