//! Bindings for [`crate::mime`]: `build_message`, `BuiltMessage` and `Template`.
//!
//! Python inputs are converted to the core's plain Rust types first; the byte work then
//! runs with the GIL released (`py.detach`), and core errors become `InvalidMessage` /
//! `TemplateError` instances (from `fastsmtp._errors`) carrying `field` and `variable`.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::Value;
use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDateTime, PyDict, PyFloat, PyFrozenSet, PyInt, PyList,
    PyString, PyTuple,
};

use super::clock;
use super::errors::new_error;
use crate::mime::shared::SharedBytes;
use crate::mime::{self, AttachmentSpec, DateSpec, MessageSpec, MimeError, MimeErrorKind};

/// A core error as a Python exception instance.
pub(crate) fn mime_err(py: Python<'_>, e: &MimeError) -> PyErr {
    let field = Some(e.field.as_str());
    match &e.kind {
        MimeErrorKind::Invalid => new_error(py, "InvalidMessage", &e.message, &[("field", field)]),
        MimeErrorKind::Template => new_error(
            py,
            "TemplateError",
            &e.message,
            &[("field", field), ("variable", None)],
        ),
        MimeErrorKind::UndefinedVariable(v) => new_error(
            py,
            "TemplateError",
            &e.message,
            &[("field", field), ("variable", Some(v))],
        ),
    }
}

/// One assembled message (immutable, shareable across threads).
#[pyclass(frozen, name = "BuiltMessage", module = "fastsmtp._fastsmtp")]
pub struct PyBuiltMessage {
    /// The core message; the protocol bindings borrow its bytes from here.
    pub(crate) inner: mime::BuiltMessage,
}

#[pymethods]
impl PyBuiltMessage {
    #[getter]
    fn envelope_sender(&self) -> &str {
        self.inner.envelope_sender()
    }

    #[getter]
    fn recipients<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.inner.recipients())
    }

    /// How many envelope recipients (without making their list).
    #[getter]
    fn recipient_count(&self) -> usize {
        self.inner.recipients().len()
    }

    #[getter]
    fn message_id(&self) -> &str {
        self.inner.message_id()
    }

    #[getter]
    fn smtputf8(&self) -> bool {
        self.inner.smtputf8()
    }

    #[getter]
    fn eight_bit(&self) -> bool {
        self.inner.eight_bit()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn as_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        PyBytes::new_with(py, self.inner.len(), |buf| {
            let mut at = 0;
            for chunk in self.inner.chunks() {
                buf[at..at + chunk.len()].copy_from_slice(chunk);
                at += chunk.len();
            }
            Ok(())
        })
    }

    /// Addresses of the shared chunks (parts encoded once per template), for tests.
    fn _shared_chunks(&self) -> Vec<usize> {
        self.inner
            .shared_chunks()
            .map(|a| a.as_ptr() as usize)
            .collect()
    }

    fn __repr__(&self) -> String {
        format!(
            "<BuiltMessage {} from {:?} to {} recipient(s), {} octets>",
            self.inner.message_id(),
            self.inner.envelope_sender(),
            self.inner.recipients().len(),
            self.inner.len()
        )
    }
}

/// `spec[key]` for a dict, `spec.key` otherwise; `None` when absent or None.
fn get<'py>(obj: &Bound<'py, PyAny>, key: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
    let v = if let Ok(d) = obj.cast::<PyDict>() {
        d.get_item(key)?
    } else {
        match obj.getattr(key) {
            Ok(v) => Some(v),
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyAttributeError>(obj.py()) => None,
            Err(e) => return Err(e),
        }
    };
    Ok(v.filter(|v| !v.is_none()))
}

fn get_str(obj: &Bound<'_, PyAny>, key: &str) -> PyResult<Option<String>> {
    get(obj, key)?
        .map(|v| {
            v.extract::<String>()
                .map_err(|_| PyTypeError::new_err(format!("{key} must be a str")))
        })
        .transpose()
}

fn get_str_list(obj: &Bound<'_, PyAny>, key: &str) -> PyResult<Vec<String>> {
    match get(obj, key)? {
        None => Ok(Vec::new()),
        Some(v) if v.is_instance_of::<PyString>() => Ok(vec![v.extract()?]),
        Some(v) => v
            .extract()
            .map_err(|_| PyTypeError::new_err(format!("{key} must be a list of str"))),
    }
}

/// An attachment's content: a `bytes` object is shared as it is (no copy of a large
/// attachment; immutable, and read without the GIL through `PyBackedBytes`); a bytearray
/// or another buffer is copied once.
fn get_bytes(v: &Bound<'_, PyAny>) -> PyResult<SharedBytes> {
    if let Ok(b) = v.cast::<PyBytes>() {
        return Ok(SharedBytes::new(PyBackedBytes::from(b.clone())));
    }
    if let Ok(b) = v.cast::<PyByteArray>() {
        return Ok(SharedBytes::from(b.to_vec()));
    }
    let b = v
        .call_method0("__bytes__")
        .and_then(|b| b.cast_into::<PyBytes>().map_err(Into::into))
        .map_err(|_| PyTypeError::new_err("attachment content must be bytes"))?;
    Ok(SharedBytes::new(PyBackedBytes::from(b)))
}

/// Convert a MessageSpec dict (see `_fastsmtp.pyi`) to the core's [`MessageSpec`].
pub(crate) fn extract_spec(spec: &Bound<'_, PyAny>) -> PyResult<MessageSpec> {
    let mut attachments = Vec::new();
    if let Some(list) = get(spec, "attachments")? {
        for a in list.try_iter()? {
            let a = a?;
            attachments.push(AttachmentSpec {
                filename: get_str(&a, "filename")?.unwrap_or_default(),
                content: match get(&a, "content")? {
                    Some(c) => get_bytes(&c)?,
                    None => SharedBytes::default(),
                },
                content_type: get_str(&a, "content_type")?.unwrap_or_default(),
                inline: get(&a, "inline")?
                    .map(|v| v.is_truthy())
                    .transpose()?
                    .unwrap_or(false),
                content_id: get_str(&a, "content_id")?,
            });
        }
    }
    let headers: Vec<(String, String)> = match get(spec, "headers")? {
        None => Vec::new(),
        Some(h) => {
            let items = if let Ok(d) = h.cast::<PyDict>() {
                d.items().into_any()
            } else {
                h
            };
            items
                .extract()
                .map_err(|_| PyTypeError::new_err("headers must be a list of (str, str) pairs"))?
        }
    };
    Ok(MessageSpec {
        sender: get_str(spec, "sender")?.unwrap_or_default(),
        to: get_str_list(spec, "to")?,
        cc: get_str_list(spec, "cc")?,
        bcc: get_str_list(spec, "bcc")?,
        reply_to: get_str_list(spec, "reply_to")?,
        subject: get_str(spec, "subject")?.unwrap_or_default(),
        text: get_str(spec, "text")?,
        html: get_str(spec, "html")?,
        attachments,
        headers,
        envelope_sender: get_str(spec, "envelope_sender")?,
        message_id: get_str(spec, "message_id")?,
        date: Some(get_date(spec)?),
    })
}

/// The spec's date: a str (an RFC 5322 date-time, checked by the core), a `datetime` (a
/// naive one is local time, as `datetime.astimezone()` reads it), or None: now, in the
/// local time zone.
fn get_date(spec: &Bound<'_, PyAny>) -> PyResult<DateSpec> {
    let Some(value) = get(spec, "date")? else {
        return Ok(clock::now());
    };
    if let Ok(text) = value.cast::<PyString>() {
        return Ok(DateSpec::Text(text.to_str()?.to_owned()));
    }
    if let Ok(moment) = value.cast::<PyDateTime>() {
        let py = value.py();
        let aware = if moment.getattr(intern!(py, "tzinfo"))?.is_none() {
            moment
                .call_method0(intern!(py, "astimezone"))?
                .cast_into::<PyDateTime>()?
        } else {
            moment.clone()
        };
        let offset: f64 = aware
            .call_method0(intern!(py, "utcoffset"))?
            .call_method0(intern!(py, "total_seconds"))?
            .extract()?;
        // From the wall-clock fields, not timestamp(): a float loses the seconds of far
        // dates. A Date header has whole seconds: the fraction is dropped.
        let unix = civil_unix(&aware, offset as i32)?.map_err(|why| {
            new_error(
                py,
                "InvalidMessage",
                &format!("date: {why}"),
                &[("field", Some("date"))],
            )
        })?;
        return Ok(DateSpec::At {
            unix,
            offset_seconds: offset as i32,
        });
    }
    let kind = value.get_type().name()?;
    Err(new_error(
        value.py(),
        "InvalidMessage",
        &format!("date must be a str (an RFC 5322 date-time), a datetime or None, not {kind}"),
        &[("field", Some("date"))],
    ))
}

/// A Python value as a template value: str, bool, int, float, None, dicts (str keys),
/// lists and tuples map to their Jinja equivalents (dicts iterate in key order); anything else becomes `str(value)`.
fn to_value(obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Value> {
    if obj.is_none() {
        return Ok(Value::from(()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::from(s.to_str()?));
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::from(b.is_true()));
    }
    if let Ok(i) = obj.cast::<PyInt>() {
        if let Ok(v) = i.extract::<i64>() {
            return Ok(Value::from(v));
        }
        if let Ok(v) = i.extract::<i128>() {
            return Ok(Value::from(v));
        }
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(Value::from(f.value()));
    }
    if depth < 64 {
        if let Ok(d) = obj.cast::<PyDict>() {
            let mut items = BTreeMap::new();
            for (k, v) in d.iter() {
                items.insert(key_string(&k)?, to_value(&v, depth + 1)?);
            }
            return Ok(Value::from(items));
        }
        if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
            let mut items = Vec::new();
            for v in obj.try_iter()? {
                items.push(to_value(&v?, depth + 1)?);
            }
            return Ok(Value::from(items));
        }
    }
    Ok(Value::from(obj.str()?.to_str()?))
}

fn key_string(k: &Bound<'_, PyAny>) -> PyResult<String> {
    match k.cast::<PyString>() {
        Ok(s) => Ok(s.to_str()?.to_owned()),
        Err(_) => Ok(k.str()?.to_str()?.to_owned()),
    }
}

/// Template data from a dict; with `used`, only the str keys a template uses are converted
/// (a recipient dict often holds more than its message needs).
fn to_data(
    d: Option<&Bound<'_, PyAny>>,
    used: Option<&BTreeSet<String>>,
) -> PyResult<mime::template::Data> {
    let Some(d) = d.filter(|d| !d.is_none()) else {
        return Ok(mime::template::Data::new());
    };
    let d = d
        .cast::<PyDict>()
        .map_err(|_| PyTypeError::new_err("template data must be a dict"))?;
    let mut pairs = Vec::with_capacity(d.len());
    for (k, v) in d.iter() {
        if let (Some(used), Ok(k)) = (used, k.cast::<PyString>()) {
            if !used.contains(k.to_str()?) {
                continue;
            }
        }
        pairs.push((key_string(&k)?, to_value(&v, 0)?));
    }
    Ok(pairs.into_iter().collect())
}

/// The one envelope address check ([`mime::address::check_path`]) for Python callers
/// (`Engine.send_raw`): raise `InvalidMessage(field=field)` unless `address` is a str that
/// can go into `MAIL FROM` / `RCPT TO` as it is (`""` only with `allow_empty`).
#[pyfunction]
#[pyo3(signature = (address, field, allow_empty = false))]
fn check_address(
    py: Python<'_>,
    address: &Bound<'_, PyAny>,
    field: &str,
    allow_empty: bool,
) -> PyResult<()> {
    let invalid = |why: &str| {
        new_error(
            py,
            "InvalidMessage",
            &format!("{field}: {why}"),
            &[("field", Some(field))],
        )
    };
    let Ok(text) = address.cast::<PyString>() else {
        let kind = address.get_type().name()?;
        return Err(invalid(&format!("an address must be a str, not {kind}")));
    };
    let Ok(text) = text.to_str() else {
        return Err(invalid(
            "an address must be valid Unicode (no lone surrogates)",
        ));
    };
    mime::address::check_path(text, allow_empty).map_err(|why| invalid(&why))
}

/// Seconds since the epoch of an aware datetime's wall-clock second at `offset` seconds
/// east of UTC.
///
/// The fields are read as attributes: the abi3 build has no direct access to the
/// datetime struct (and a date is read once per message at most).
fn civil_unix(moment: &Bound<'_, PyDateTime>, offset: i32) -> PyResult<Result<i64, jiff::Error>> {
    let field = |name: &str| -> PyResult<i64> { moment.getattr(name)?.extract() };
    let wall = jiff::civil::DateTime::new(
        field("year")? as i16,
        field("month")? as i8,
        field("day")? as i8,
        field("hour")? as i8,
        field("minute")? as i8,
        field("second")? as i8,
        0,
    );
    Ok(wall.and_then(|wall| {
        let zone = jiff::tz::TimeZone::fixed(jiff::tz::Offset::from_seconds(offset)?);
        Ok(wall.to_zoned(zone)?.timestamp().as_second())
    }))
}

/// Validate and assemble one message literally (no template rendering).
#[pyfunction]
fn build_message(py: Python<'_>, spec: &Bound<'_, PyAny>) -> PyResult<PyBuiltMessage> {
    let spec = extract_spec(spec)?;
    match py.detach(|| mime::build_message(&spec)) {
        Ok(inner) => Ok(PyBuiltMessage { inner }),
        Err(e) => Err(mime_err(py, &e)),
    }
}

/// A message template compiled once for a batch.
#[pyclass(frozen, name = "Template", module = "fastsmtp._fastsmtp")]
pub struct PyTemplate {
    inner: mime::Template,
}

impl PyTemplate {
    /// One recipient of `render`: an (address, name, data) tuple, an address, or a dict
    /// whose "address" is a str and whose "name" is a str or None (the dict is then the
    /// data as well, like `fastsmtp._engine._recipient_tuple`, which is what `normalize`
    /// is in the engine). With `normalize`, any other item is passed to it, and it returns
    /// the tuple.
    fn recipient(
        &self,
        item: &Bound<'_, PyAny>,
        normalize: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<mime::Recipient> {
        let variables = Some(self.inner.variables());
        if let Ok(address) = item.cast::<PyString>() {
            return Ok(mime::Recipient {
                address: address.to_str()?.to_owned(),
                name: None,
                data: mime::template::Data::new(),
            });
        }
        if let Ok(dict) = item.cast::<PyDict>() {
            let address = dict.get_item(intern!(item.py(), "address"))?;
            let name = dict.get_item(intern!(item.py(), "name"))?;
            if let Some(Ok(address)) = address.as_ref().map(|a| a.cast::<PyString>()) {
                // None: a name that is neither a str nor None, left to `normalize`.
                let name: Option<Option<String>> = match &name {
                    None => Some(None),
                    Some(n) if n.is_none() => Some(None),
                    Some(n) => match n.cast::<PyString>() {
                        Ok(n) => Some(Some(n.to_str()?.to_owned())),
                        Err(_) => None,
                    },
                };
                if let Some(name) = name {
                    return Ok(mime::Recipient {
                        address: address.to_str()?.to_owned(),
                        name,
                        data: to_data(Some(item), variables)?,
                    });
                }
            }
        }
        let tuple = match (normalize, item.cast::<PyTuple>()) {
            (Some(normalize), _) => {
                normalize
                    .call1((item,))?
                    .cast_into::<PyTuple>()
                    .map_err(|_| {
                        PyTypeError::new_err("normalize must return an (address, name, data) tuple")
                    })?
            }
            (None, Ok(tuple)) => tuple.clone(),
            (None, Err(_)) => {
                return Err(PyTypeError::new_err(
                    "each recipient must be an (address, name, data) tuple, an address \
                     or a dict with a str \"address\"",
                ))
            }
        };
        if tuple.len() != 3 {
            return Err(PyTypeError::new_err(
                "each recipient must be an (address, name, data) tuple",
            ));
        }
        Ok(mime::Recipient {
            address: tuple.get_item(0)?.extract()?,
            name: tuple.get_item(1)?.extract()?,
            data: to_data(Some(&tuple.get_item(2)?), variables)?,
        })
    }

    /// Read every recipient (with the GIL), then render them all with it released.
    fn render_all(
        &self,
        py: Python<'_>,
        recipients: &Bound<'_, PyAny>,
        normalize: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<Result<mime::BuiltMessage, MimeError>>> {
        let mut inputs = Vec::with_capacity(recipients.len().unwrap_or(0));
        for item in recipients.try_iter()? {
            inputs.push(self.recipient(&item?, normalize)?);
        }
        Ok(py.detach(|| self.inner.render_batch(inputs)))
    }
}

#[pymethods]
impl PyTemplate {
    #[new]
    #[pyo3(signature = (spec, data = None))]
    fn new(
        py: Python<'_>,
        spec: &Bound<'_, PyAny>,
        data: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let spec = extract_spec(spec)?;
        let data = to_data(data, None)?;
        match py.detach(|| mime::Template::new(&spec, data)) {
            Ok(inner) => Ok(PyTemplate { inner }),
            Err(e) => Err(mime_err(py, &e)),
        }
    }

    #[getter]
    fn variables<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyFrozenSet>> {
        PyFrozenSet::new(py, self.inner.variables().iter())
    }

    #[getter]
    fn recipient_variables<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyFrozenSet>> {
        PyFrozenSet::new(py, self.inner.recipient_variables().iter())
    }

    #[pyo3(signature = (recipients, normalize = None))]
    fn render<'py>(
        &self,
        py: Python<'py>,
        recipients: &Bound<'py, PyAny>,
        normalize: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let results = self.render_all(py, recipients, normalize)?;
        let out = PyList::empty(py);
        for r in results {
            match r {
                Ok(inner) => out.append(Bound::new(py, PyBuiltMessage { inner })?)?,
                Err(e) => out.append(mime_err(py, &e).into_value(py))?,
            }
        }
        Ok(out)
    }

    /// `render`, with the messages and the failures apart: `(messages, [(position,
    /// exception), ...])`, positions into `recipients`. A batch then scans nothing in
    /// Python to find the (usually no) failures.
    #[pyo3(signature = (recipients, normalize = None))]
    fn render_split<'py>(
        &self,
        py: Python<'py>,
        recipients: &Bound<'py, PyAny>,
        normalize: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
        let results = self.render_all(py, recipients, normalize)?;
        let messages = PyList::empty(py);
        let failures = PyList::empty(py);
        for (position, r) in results.into_iter().enumerate() {
            match r {
                Ok(inner) => messages.append(Bound::new(py, PyBuiltMessage { inner })?)?,
                Err(e) => failures.append((position, mime_err(py, &e).into_value(py)))?,
            }
        }
        Ok((messages, failures))
    }

    /// Addresses of the parts encoded once for the batch, for tests.
    fn _shared_parts(&self) -> Vec<usize> {
        self.inner
            .shared_parts()
            .iter()
            .map(|a| a.as_ptr() as usize)
            .collect()
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The stubs' `MessageSpec` alias: a plain dict at runtime.
    m.add("MessageSpec", m.py().get_type::<PyDict>())?;
    m.add_class::<PyBuiltMessage>()?;
    m.add_class::<PyTemplate>()?;
    m.add_function(wrap_pyfunction!(build_message, m)?)?;
    m.add_function(wrap_pyfunction!(check_address, m)?)?;
    Ok(())
}
