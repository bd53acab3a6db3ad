//! Bindings for [`crate::mime::dkim`]: `DKIMSigner`.
//!
//! Signing a chunk of messages crosses the boundary once and runs with the GIL released:
//! RSA signatures cost about a millisecond each, so the engine calls this from a worker
//! thread and the event loop stays free.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use super::mime::{mime_err, PyBuiltMessage};
use crate::mime::dkim::DkimSigner;
use crate::mime::encoding::normalize_newlines;

/// A DKIM signing identity (domain, selector, private key), parsed once.
#[pyclass(frozen, name = "DKIMSigner", module = "fastsmtp._fastsmtp")]
pub struct PyDkimSigner {
    inner: Arc<DkimSigner>,
}

#[pymethods]
impl PyDkimSigner {
    #[new]
    #[pyo3(signature = (domain, selector, private_key, headers = None))]
    fn new(
        py: Python<'_>,
        domain: &str,
        selector: &str,
        private_key: &[u8],
        headers: Option<Vec<String>>,
    ) -> PyResult<Self> {
        match DkimSigner::new(domain, selector, private_key, headers.as_deref()) {
            Ok(signer) => Ok(Self {
                inner: Arc::new(signer),
            }),
            Err(e) => Err(mime_err(py, &e)),
        }
    }

    #[getter]
    fn domain(&self) -> &str {
        self.inner.domain()
    }

    #[getter]
    fn selector(&self) -> &str {
        self.inner.selector()
    }

    #[getter]
    fn algorithm(&self) -> &'static str {
        self.inner.algorithm()
    }

    /// The TXT record to publish at `<selector>._domainkey.<domain>`.
    #[getter]
    fn dns_record(&self) -> String {
        self.inner.dns_record()
    }

    #[pyo3(signature = (message, timestamp = None))]
    fn sign(
        &self,
        py: Python<'_>,
        message: &PyBuiltMessage,
        timestamp: Option<u64>,
    ) -> PyResult<PyBuiltMessage> {
        let signer = &self.inner;
        match py.detach(|| signer.sign(&message.inner, timestamp)) {
            Ok(inner) => Ok(PyBuiltMessage { inner }),
            Err(e) => Err(mime_err(py, &e)),
        }
    }

    /// Sign every BuiltMessage of `items`; anything else (an error Template.render put in
    /// a slot) is passed through, so slots keep their recipient.
    #[pyo3(signature = (items, timestamp = None))]
    fn sign_all<'py>(
        &self,
        py: Python<'py>,
        items: &Bound<'py, PyList>,
        timestamp: Option<u64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let held: Vec<Bound<'py, PyAny>> = items.iter().collect();
        let messages: Vec<Option<PyRef<'py, PyBuiltMessage>>> = held
            .iter()
            .map(|item| item.extract::<PyRef<'py, PyBuiltMessage>>().ok())
            .collect();
        let borrowed: Vec<Option<&crate::mime::BuiltMessage>> = messages
            .iter()
            .map(|m| m.as_ref().map(|m| &m.inner))
            .collect();
        let signer = &self.inner;
        let signed: Vec<Option<Result<crate::mime::BuiltMessage, crate::mime::MimeError>>> = py
            .detach(|| {
                borrowed
                    .iter()
                    .map(|m| m.map(|m| signer.sign(m, timestamp)))
                    .collect()
            });
        let out = PyList::empty(py);
        for (item, result) in held.iter().zip(signed) {
            match result {
                None => out.append(item)?,
                Some(Ok(inner)) => out.append(Bound::new(py, PyBuiltMessage { inner })?)?,
                Some(Err(e)) => out.append(mime_err(py, &e).into_value(py))?,
            }
        }
        Ok(out)
    }

    /// Raw message bytes, signed: line breaks are made CRLF first (as they will be on the
    /// wire), then the DKIM-Signature header is put in front.
    #[pyo3(signature = (data, timestamp = None))]
    fn sign_bytes<'py>(
        &self,
        py: Python<'py>,
        data: &[u8],
        timestamp: Option<u64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let signer = &self.inner;
        let result = py.detach(|| {
            let body = normalize_newlines(data);
            signer
                .signature_header([&body[..]], timestamp)
                .map(|header| [header, body].concat())
        });
        match result {
            Ok(bytes) => Ok(PyBytes::new(py, &bytes)),
            Err(e) => Err(mime_err(py, &e)),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "<DKIMSigner d={} s={} a={}>",
            self.inner.domain(),
            self.inner.selector(),
            self.inner.algorithm()
        )
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDkimSigner>()
}
