//! Bindings for [`crate::tls`]: `TlsConfig` and `TlsSession`, so Python code (and the tests)
//! can drive a rustls session over a real socket, and the `fastsmtp._errors` TLS exceptions
//! raised from its typed errors.
//!
//! The GIL is released around decryption and encryption of large inputs only: for the few
//! hundred bytes of a typical read, dropping and re-taking the GIL costs more than the
//! cryptography, and can hand the GIL to another thread for a whole switch interval.

use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

use super::errors::new_error;
use crate::tls::{
    certificates_from_der, certificates_from_pem, client_identity_from_pem, TlsConfig, TlsError,
    TlsErrorKind, TlsOptions, TlsSession, TlsVersion, Trust, Verify,
};

/// Inputs at least this large are processed with the GIL released (16 KiB: one full record,
/// ~2 µs of AES-GCM).
const DETACH_MIN_BYTES: usize = 16 * 1024;

/// Map a TLS error to its `fastsmtp._errors` exception (also for the protocol binding,
/// once it drives a session itself).
pub(crate) fn to_py(py: Python<'_>, e: TlsError) -> PyErr {
    let class = match e.kind {
        k if k.is_certificate() => "TLSCertificateError",
        TlsErrorKind::Config => "TLSConfigError",
        TlsErrorKind::Usage => "LocalProtocolError",
        _ => "TLSError",
    };
    if class == "LocalProtocolError" {
        return new_error(py, class, &e.message, &[]);
    }
    new_error(
        py,
        class,
        &e.message,
        &[
            ("kind", Some(e.kind.as_str())),
            ("alert", e.alert.as_deref()),
        ],
    )
}

fn parse_version(name: &str, what: &str) -> PyResult<TlsVersion> {
    match name {
        "TLSv1.2" => Ok(TlsVersion::Tls12),
        "TLSv1.3" => Ok(TlsVersion::Tls13),
        _ => Err(PyValueError::new_err(format!(
            "{what} must be 'TLSv1.2' or 'TLSv1.3', not {name:?}"
        ))),
    }
}

/// Shared TLS client settings; build once per engine and reuse: sessions made from one
/// config resume each other's TLS sessions.
#[pyclass(frozen, module = "fastsmtp._fastsmtp", name = "TlsConfig")]
pub struct PyTlsConfig {
    inner: TlsConfig,
    check_hostname: bool,
}

impl PyTlsConfig {
    /// The shared config, for other bindings that start sessions from it.
    pub(crate) fn config(&self) -> &TlsConfig {
        &self.inner
    }
}

#[pymethods]
impl PyTlsConfig {
    #[new]
    #[pyo3(signature = (
        *,
        ca_file = None,
        ca_data = None,
        client_cert = None,
        client_key = None,
        verify = true,
        check_hostname = None,
        min_version = "TLSv1.2",
        max_version = "TLSv1.3",
        resumption = true,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        ca_file: Option<PathBuf>,
        ca_data: Option<&Bound<'_, PyAny>>,
        client_cert: Option<PathBuf>,
        client_key: Option<PathBuf>,
        verify: bool,
        check_hostname: Option<bool>,
        min_version: &str,
        max_version: &str,
        resumption: bool,
    ) -> PyResult<Self> {
        let check_hostname = check_hostname.unwrap_or(verify);
        if check_hostname && !verify {
            return Err(PyValueError::new_err(
                "check_hostname=True needs verify=True (a name cannot be checked on an \
                 unverified certificate)",
            ));
        }
        // As ssl.create_default_context: given CAs replace the system store.
        let mut cas = Vec::new();
        if let Some(path) = &ca_file {
            let pem = std::fs::read(path)?;
            cas.extend(certificates_from_pem(&pem).map_err(|e| to_py(py, e))?);
        }
        if let Some(data) = ca_data {
            let certs = if let Ok(text) = data.cast::<PyString>() {
                certificates_from_pem(text.to_str()?.as_bytes())
            } else if let Ok(der) = data.cast::<PyBytes>() {
                certificates_from_der(der.as_bytes())
            } else {
                return Err(PyValueError::new_err(
                    "ca_data must be PEM text (str) or DER certificates (bytes)",
                ));
            };
            cas.extend(certs.map_err(|e| to_py(py, e))?);
        }
        let client_identity = match (&client_cert, &client_key) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(PyValueError::new_err("client_key needs client_cert"));
            }
            (Some(cert), key) => {
                let cert = std::fs::read(cert)?;
                let key = key.as_ref().map(std::fs::read).transpose()?;
                Some(client_identity_from_pem(&cert, key.as_deref()).map_err(|e| to_py(py, e))?)
            }
        };
        let options = TlsOptions {
            trust: if ca_file.is_none() && ca_data.is_none() {
                Trust::System
            } else {
                Trust::Certificates(cas)
            },
            verify: match (verify, check_hostname) {
                (false, _) => Verify::None,
                (true, false) => Verify::ChainOnly,
                (true, true) => Verify::Full,
            },
            client_identity,
            min_version: parse_version(min_version, "min_version")?,
            max_version: parse_version(max_version, "max_version")?,
            resumption,
        };
        let inner = py
            .detach(|| TlsConfig::new(options))
            .map_err(|e| to_py(py, e))?;
        Ok(Self {
            inner,
            check_hostname,
        })
    }

    /// False if certificates are not verified at all (`verify=False`).
    #[getter]
    fn verify(&self) -> bool {
        self.inner.verify() != Verify::None
    }

    /// True if the server name is checked against the certificate.
    #[getter]
    fn check_hostname(&self) -> bool {
        self.check_hostname
    }

    fn __repr__(&self) -> String {
        format!(
            "TlsConfig(verify={:?})",
            match self.inner.verify() {
                Verify::Full => "full",
                Verify::ChainOnly => "chain-only",
                Verify::None => "none",
            }
        )
    }
}

/// One TLS client connection, sans-IO: `feed` what the socket read, write out
/// `data_to_send()`.
#[pyclass(module = "fastsmtp._fastsmtp", name = "TlsSession")]
pub struct PyTlsSession {
    inner: TlsSession,
    /// Reused output buffer (its capacity survives between calls).
    out: Vec<u8>,
}

#[pymethods]
impl PyTlsSession {
    #[new]
    fn new(py: Python<'_>, config: &PyTlsConfig, server_name: &str) -> PyResult<Self> {
        let inner = TlsSession::new(config.config(), server_name).map_err(|e| to_py(py, e))?;
        Ok(Self {
            inner,
            out: Vec::new(),
        })
    }

    /// Feed ciphertext read from the socket; returns the plaintext it carried (often
    /// empty during the handshake). Raises a TLSError subclass if the server misbehaves.
    fn feed<'py>(&mut self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        let mut plain = Vec::new();
        let inner = &mut self.inner;
        let result = if data.len() >= DETACH_MIN_BYTES {
            py.detach(|| inner.read_tls(data, &mut plain))
        } else {
            inner.read_tls(data, &mut plain)
        };
        result.map_err(|e| to_py(py, e))?;
        Ok(PyBytes::new(py, &plain))
    }

    /// Queue plaintext; `data_to_send()` encrypts everything queued into as few records as
    /// possible.
    fn send(&mut self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        self.inner.write_plain(data).map_err(|e| to_py(py, e))
    }

    /// The TLS bytes to write to the socket now (handshake, application data, alerts).
    fn data_to_send<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let (inner, out) = (&mut self.inner, &mut self.out);
        if inner.pending_plaintext() >= DETACH_MIN_BYTES {
            py.detach(|| inner.take_tls(out));
        } else {
            inner.take_tls(out);
        }
        let bytes = PyBytes::new(py, out);
        out.clear();
        bytes
    }

    /// Queue a close_notify alert (after anything already sent); send no more data.
    fn close(&mut self) {
        self.inner.close();
    }

    /// Tell the session the socket reached end of file. Returns True if the server sent
    /// close_notify first, False if it just closed after the handshake; raises TLSError if
    /// the handshake was unfinished or a record was cut off.
    fn eof(&mut self, py: Python<'_>) -> PyResult<bool> {
        self.inner.eof().map_err(|e| to_py(py, e))
    }

    /// True once the handshake has completed.
    #[getter]
    fn handshake_done(&self) -> bool {
        !self.inner.is_handshaking()
    }

    /// True if `data_to_send()` would return bytes.
    #[getter]
    fn wants_write(&self) -> bool {
        self.inner.wants_write()
    }

    /// True once the server sent close_notify.
    #[getter]
    fn peer_closed(&self) -> bool {
        self.inner.peer_closed()
    }

    /// The negotiated version: "TLSv1.2" or "TLSv1.3" (None before the server's hello).
    #[getter]
    fn version(&self) -> Option<&'static str> {
        self.inner.protocol_version().map(TlsVersion::as_str)
    }

    /// The negotiated cipher suite's IANA name, e.g. "TLS13_AES_256_GCM_SHA384".
    #[getter]
    fn cipher(&self) -> Option<&'static str> {
        self.inner.cipher_suite()
    }

    /// True if the handshake resumed an earlier session of the same TlsConfig.
    #[getter]
    fn resumed(&self) -> bool {
        self.inner.resumed()
    }

    /// The server's certificate chain, leaf first, as DER bytes (for DANE checks).
    #[getter]
    fn peer_certificates<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(
            py,
            self.inner
                .peer_certificates()
                .iter()
                .map(|c| PyBytes::new(py, c.as_ref())),
        )
    }

    fn __repr__(&self) -> String {
        let state = if self.inner.error().is_some() {
            "failed"
        } else if self.inner.is_handshaking() {
            "handshaking"
        } else {
            "established"
        };
        format!(
            "<TlsSession {state} {}>",
            self.inner
                .protocol_version()
                .map(TlsVersion::as_str)
                .unwrap_or("-")
        )
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTlsConfig>()?;
    m.add_class::<PyTlsSession>()
}
