//! Bindings for [`crate::bounce`]: `parse_bounce` and its frozen result classes
//! (`BounceReport`, `BounceRecipient`, `FeedbackReport`), and the VERP codec
//! (`make_verp_address`, `parse_verp_address`, `verp_address_status`).
//!
//! The report is converted to Python values once, when it is made: the classes hold only
//! Python-ready fields, and sequences are tuples (the classes are frozen). Parsing runs with
//! the GIL released. Any bytes give a report (kind "unknown" when nothing is recognisable,
//! and also if the parser panicked, which would be a bug); only a `raw` that is not bytes
//! raises `InvalidMessage`.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyTuple};

use super::errors::new_error;
use crate::bounce::{self, BounceReport, FeedbackReport, ParseOptions, RecipientReport, VerpError};

/// What a report says about one recipient.
#[pyclass(
    frozen,
    get_all,
    module = "fastsmtp._fastsmtp",
    name = "BounceRecipient"
)]
pub struct PyBounceRecipient {
    address: Option<String>,
    original_recipient: Option<String>,
    action: Option<String>,
    status: Option<String>,
    reply_code: Option<u16>,
    diagnostic: Option<String>,
    diagnostic_type: Option<String>,
    remote_mta: Option<String>,
    last_attempt_date: Option<String>,
    will_retry_until: Option<String>,
    category: &'static str,
    permanent: bool,
}

#[pymethods]
impl PyBounceRecipient {
    fn __repr__(&self) -> String {
        format!(
            "BounceRecipient(address={}, action={}, status={}, category={:?}, permanent={})",
            py_opt(&self.address),
            py_opt(&self.action),
            py_opt(&self.status),
            self.category,
            if self.permanent { "True" } else { "False" },
        )
    }
}

/// The fields of an RFC 5965 feedback report.
#[pyclass(
    frozen,
    get_all,
    module = "fastsmtp._fastsmtp",
    name = "FeedbackReport"
)]
pub struct PyFeedbackReport {
    feedback_type: String,
    user_agent: Option<String>,
    version: Option<String>,
    original_mail_from: Option<String>,
    original_rcpt_to: Py<PyTuple>,
    arrival_date: Option<String>,
    reporting_mta: Option<String>,
    source_ip: Option<String>,
    reported_domain: Py<PyTuple>,
    reported_uri: Py<PyTuple>,
    authentication_results: Option<String>,
    original_envelope_id: Option<String>,
    incidents: Option<u64>,
}

#[pymethods]
impl PyFeedbackReport {
    fn __repr__(&self) -> String {
        format!(
            "FeedbackReport(feedback_type={:?}, user_agent={}, original_mail_from={})",
            self.feedback_type,
            py_opt(&self.user_agent),
            py_opt(&self.original_mail_from),
        )
    }
}

/// Everything `parse_bounce` found in one message.
#[pyclass(frozen, get_all, module = "fastsmtp._fastsmtp", name = "BounceReport")]
pub struct PyBounceReport {
    kind: &'static str,
    subject: Option<String>,
    report_from: Option<String>,
    reporting_mta: Option<String>,
    envelope_id: Option<String>,
    arrival_date: Option<String>,
    original_sender: Option<String>,
    recipients: Py<PyTuple>,
    original_message_id: Option<String>,
    original_from: Option<String>,
    original_to: Py<PyTuple>,
    original_subject: Option<String>,
    original_return_path: Option<String>,
    feedback: Option<Py<PyFeedbackReport>>,
    feedback_type: Option<String>,
    verp_status: Option<&'static str>,
    verp_address: Option<String>,
    verp_job: Option<u64>,
    verp_recipient: Option<u64>,
}

#[pymethods]
impl PyBounceReport {
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "BounceReport(kind={:?}, recipients={}, original_message_id={}, verp_status={})",
            self.kind,
            self.recipients.bind(py).len(),
            py_opt(&self.original_message_id),
            self.verp_status
                .map_or("None".to_owned(), |s| format!("{s:?}")),
        )
    }
}

fn py_opt(v: &Option<String>) -> String {
    v.as_ref().map_or("None".to_owned(), |s| format!("{s:?}"))
}

fn recipient(r: RecipientReport) -> PyBounceRecipient {
    PyBounceRecipient {
        address: r.address,
        original_recipient: r.original_recipient,
        action: r.action,
        status: r.status.map(|s| s.to_string()),
        reply_code: r.reply_code,
        diagnostic: r.diagnostic,
        diagnostic_type: r.diagnostic_type,
        remote_mta: r.remote_mta,
        last_attempt_date: r.last_attempt_date,
        will_retry_until: r.will_retry_until,
        category: r.category.as_str(),
        permanent: r.permanent,
    }
}

fn feedback(py: Python<'_>, f: FeedbackReport) -> PyResult<PyFeedbackReport> {
    Ok(PyFeedbackReport {
        feedback_type: f.feedback_type,
        user_agent: f.user_agent,
        version: f.version,
        original_mail_from: f.original_mail_from,
        original_rcpt_to: PyTuple::new(py, f.original_rcpt_to)?.unbind(),
        arrival_date: f.arrival_date,
        reporting_mta: f.reporting_mta,
        source_ip: f.source_ip,
        reported_domain: PyTuple::new(py, f.reported_domain)?.unbind(),
        reported_uri: PyTuple::new(py, f.reported_uri)?.unbind(),
        authentication_results: f.authentication_results,
        original_envelope_id: f.original_envelope_id,
        incidents: f.incidents,
    })
}

fn report(py: Python<'_>, r: BounceReport) -> PyResult<PyBounceReport> {
    let recipients = r
        .recipients
        .into_iter()
        .map(|x| Py::new(py, recipient(x)))
        .collect::<PyResult<Vec<_>>>()?;
    let feedback_type = r.feedback.as_ref().map(|f| f.feedback_type.clone());
    let feedback = match r.feedback {
        Some(f) => Some(Py::new(py, feedback(py, f)?)?),
        None => None,
    };
    let (verp_status, verp_job, verp_recipient) = match r.verp {
        None => (None, None, None),
        Some(Ok(t)) => (Some("valid"), Some(t.job), Some(t.recipient)),
        Some(Err(VerpError::Forged)) => (Some("forged"), None, None),
        Some(Err(VerpError::NotVerp)) => (Some("not_verp"), None, None),
    };
    Ok(PyBounceReport {
        kind: r.kind.as_str(),
        subject: r.subject,
        report_from: r.from,
        reporting_mta: r.reporting_mta,
        envelope_id: r.envelope_id,
        arrival_date: r.arrival_date,
        original_sender: r.original_sender,
        recipients: PyTuple::new(py, recipients)?.unbind(),
        original_message_id: r.original.message_id,
        original_from: r.original.from,
        original_to: PyTuple::new(py, r.original.to)?.unbind(),
        original_subject: r.original.subject,
        original_return_path: r.original.return_path,
        feedback,
        feedback_type,
        verp_status,
        verp_address: r.verp_address,
        verp_job,
        verp_recipient,
    })
}

/// `parse_bounce`, with a panic (a bug: the parser is fuzzed never to panic) turned into an
/// "unknown" report rather than a Python exception: the promise is a report for any bytes.
fn parse_guarded(raw: &[u8], options: &ParseOptions<'_>) -> BounceReport {
    catch_unwind(AssertUnwindSafe(|| bounce::parse_bounce(raw, options))).unwrap_or_default()
}

/// Parse an inbound bounce, DSN, complaint or auto-reply.
#[pyfunction]
#[pyo3(signature = (raw, verp_secret = None, *, envelope_recipient = None))]
fn parse_bounce(
    py: Python<'_>,
    raw: &Bound<'_, PyAny>,
    verp_secret: Option<&[u8]>,
    envelope_recipient: Option<&str>,
) -> PyResult<PyBounceReport> {
    let options = ParseOptions {
        verp_secret,
        envelope_recipient,
    };
    let parsed = if let Ok(b) = raw.cast::<PyBytes>() {
        let bytes = b.as_bytes();
        py.detach(|| parse_guarded(bytes, &options))
    } else if let Ok(b) = raw.cast::<PyByteArray>() {
        let bytes = b.to_vec();
        py.detach(|| parse_guarded(&bytes, &options))
    } else {
        let type_name = raw.get_type().name()?;
        return Err(new_error(
            py,
            "InvalidMessage",
            &format!("parse_bounce expects bytes, not {type_name}"),
            &[("field", Some("raw"))],
        ));
    };
    report(py, parsed)
}

/// `local_prefix+TOKEN@domain`, the token signing `job` and `recipient` with `secret`.
#[pyfunction]
fn make_verp_address(
    py: Python<'_>,
    secret: &[u8],
    local_prefix: &str,
    domain: &str,
    job: u64,
    recipient: u64,
) -> PyResult<String> {
    bounce::make_verp_address(secret, local_prefix, domain, job, recipient).map_err(|e| {
        new_error(
            py,
            "InvalidMessage",
            &e.to_string(),
            &[("field", Some("verp"))],
        )
    })
}

/// `(job, recipient)` of a VERP address signed with `secret`; None for forged or non-VERP.
#[pyfunction]
fn parse_verp_address(secret: &[u8], address: &str) -> Option<(u64, u64)> {
    bounce::parse_verp_address(secret, address)
        .ok()
        .map(|t| (t.job, t.recipient))
}

/// "valid", "forged" (right shape, bad signature) or "not_verp".
#[pyfunction]
fn verp_address_status(secret: &[u8], address: &str) -> &'static str {
    match bounce::parse_verp_address(secret, address) {
        Ok(_) => "valid",
        Err(VerpError::Forged) => "forged",
        Err(VerpError::NotVerp) => "not_verp",
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyBounceReport>()?;
    m.add_class::<PyBounceRecipient>()?;
    m.add_class::<PyFeedbackReport>()?;
    m.add_function(wrap_pyfunction!(parse_bounce, m)?)?;
    m.add_function(wrap_pyfunction!(make_verp_address, m)?)?;
    m.add_function(wrap_pyfunction!(parse_verp_address, m)?)?;
    m.add_function(wrap_pyfunction!(verp_address_status, m)?)?;
    Ok(())
}
