//! Bindings for [`crate::protocol`]: `ClientConnection`, its events, `Reply`,
//! `Capabilities`, `dot_stuff` and `parse_replies`.
//!
//! Events are frozen classes holding Rust values; their `Reply` attributes are made into
//! Python objects when read. Core errors become the `fastsmtp._errors` classes here, and a
//! panic inside `receive_data` (a bug: the parser is fuzzed never to panic) is caught and
//! turned into a closed connection rather than crossing into Python.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pyclass::{PyTraverseError, PyVisit};
use pyo3::types::{PyBytes, PyList};

use super::errors::new_error;
use super::mime::PyBuiltMessage;
use crate::protocol::connection::{Body, ClientConnection, Event, MessageBytes, Transaction};
use crate::protocol::reply::{self, EnhancedCode, Reply, DEFAULT_MAX_REPLY_BYTES};
use crate::protocol::{dotstuff, Capabilities, Error};

/// Map a core error to its `fastsmtp._errors` exception.
fn to_py(py: Python<'_>, e: Error) -> PyErr {
    match e {
        Error::Local(m) => new_error(py, "LocalProtocolError", &m, &[]),
        Error::Remote(m) => new_error(py, "RemoteProtocolError", &m, &[]),
        Error::InvalidMessage { message, field } => new_error(
            py,
            "InvalidMessage",
            &message,
            &[("field", field.as_deref())],
        ),
        Error::Smtputf8Required(m) => new_error(py, "SMTPUTF8Required", &m, &[]),
    }
}

/// One complete SMTP reply.
#[pyclass(frozen, module = "fastsmtp._fastsmtp", name = "Reply")]
pub struct PyReply(Reply);

#[pymethods]
impl PyReply {
    #[getter]
    fn code(&self) -> u16 {
        self.0.code
    }
    #[getter]
    fn enhanced_code(&self) -> Option<String> {
        self.0.enhanced.map(enhanced_string)
    }
    #[getter]
    fn text(&self) -> &str {
        &self.0.text
    }
    #[getter]
    fn is_positive(&self) -> bool {
        self.0.is_positive()
    }
    #[getter]
    fn is_transient(&self) -> bool {
        self.0.is_transient()
    }
    #[getter]
    fn is_permanent(&self) -> bool {
        self.0.is_permanent()
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyReply>().is_ok_and(|o| o.get().0 == self.0)
    }
    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.0.code, &self.0.text, self.0.enhanced).hash(&mut h);
        h.finish()
    }
    fn __repr__(&self) -> String {
        format!(
            "Reply(code={}, enhanced_code={}, text={:?})",
            self.0.code,
            self.0.enhanced.map_or("None".into(), |e| format!("'{e}'")),
            self.0.text
        )
    }
    fn __str__(&self) -> String {
        self.0.to_string()
    }
}

/// `class.subject.detail` without the formatting machinery (read once per recipient).
fn enhanced_string(e: EnhancedCode) -> String {
    let mut s = String::with_capacity(11);
    for (i, n) in [u16::from(e.class), e.subject, e.detail]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            s.push('.');
        }
        // at most three digits (RFC 3463 2)
        if n >= 100 {
            s.push(char::from(b'0' + (n / 100 % 10) as u8));
        }
        if n >= 10 {
            s.push(char::from(b'0' + (n / 10 % 10) as u8));
        }
        s.push(char::from(b'0' + (n % 10) as u8));
    }
    s
}

fn reply(r: &Reply) -> PyReply {
    PyReply(r.clone())
}

/// What the server's EHLO reply offered.
#[pyclass(frozen, module = "fastsmtp._fastsmtp", name = "Capabilities")]
pub struct PyCapabilities(Capabilities);

/// A value as Python's `repr` shows it (for the `__repr__` of the classes here).
trait PyRepr {
    fn py_repr(&self) -> String;
}

impl PyRepr for bool {
    fn py_repr(&self) -> String {
        py_bool(*self).to_owned()
    }
}

impl PyRepr for Option<u64> {
    fn py_repr(&self) -> String {
        self.map_or("None".into(), |v| v.to_string())
    }
}

impl PyRepr for Vec<String> {
    fn py_repr(&self) -> String {
        format!("{self:?}")
    }
}

/// The `Capabilities` class from one list of fields: a getter each (a copy of the
/// field) and a `__repr__` that lists them in this order.
macro_rules! capabilities_class {
    ($($field:ident: $ty:ty),* $(,)?) => {
        #[pymethods]
        impl PyCapabilities {
            $(
                #[getter]
                fn $field(&self) -> $ty {
                    self.0.$field.clone()
                }
            )*
            fn __repr__(&self) -> String {
                let fields = [$(
                    concat!(stringify!($field), "=").to_owned() + &self.0.$field.py_repr()
                ),*];
                format!("Capabilities({})", fields.join(", "))
            }
        }
    };
}

capabilities_class!(
    pipelining: bool,
    chunking: bool,
    size: Option<u64>,
    eight_bit_mime: bool,
    smtputf8: bool,
    starttls: bool,
    auth: Vec<String>,
    enhanced_status_codes: bool,
    dsn: bool,
    esmtp: bool,
);

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// Greeting and EHLO (or HELO) are done.
#[pyclass(frozen, module = "fastsmtp._fastsmtp", name = "Ready")]
pub struct PyReady {
    greeting: Reply,
    capabilities: Capabilities,
}

#[pymethods]
impl PyReady {
    #[getter]
    fn greeting(&self) -> PyReply {
        reply(&self.greeting)
    }
    #[getter]
    fn capabilities(&self) -> PyCapabilities {
        PyCapabilities(self.capabilities.clone())
    }
    fn __repr__(&self) -> String {
        format!("Ready(greeting={:?})", self.greeting.to_string())
    }
}

/// The server said 220 to STARTTLS: upgrade the transport now.
#[pyclass(frozen, module = "fastsmtp._fastsmtp", name = "StartTlsReady")]
pub struct PyStartTlsReady;

#[pymethods]
impl PyStartTlsReady {
    fn __repr__(&self) -> &'static str {
        "StartTlsReady()"
    }
}

/// An event that carries just one reply: the frozen class, its `reply` getter and its
/// `__repr__`.
macro_rules! reply_event {
    ($(#[$doc:meta])* $rust:ident, $name:tt) => {
        $(#[$doc])*
        #[pyclass(frozen, module = "fastsmtp._fastsmtp", name = $name)]
        pub struct $rust(Reply);

        #[pymethods]
        impl $rust {
            #[getter]
            fn reply(&self) -> PyReply {
                reply(&self.0)
            }
            fn __repr__(&self) -> String {
                format!(concat!($name, "({:?})"), self.0.to_string())
            }
        }
    };
}

reply_event!(
    /// AUTH succeeded.
    PyAuthSucceeded,
    "AuthSucceeded"
);
reply_event!(
    /// AUTH failed.
    PyAuthFailed,
    "AuthFailed"
);

reply_event!(
    /// The reply to NOOP.
    PyNoopReplied,
    "NoopReplied"
);

/// The greeting, EHLO/HELO or STARTTLS was refused.
#[pyclass(frozen, module = "fastsmtp._fastsmtp", name = "CommandFailed")]
pub struct PyCommandFailed {
    command: &'static str,
    reply: Reply,
}

#[pymethods]
impl PyCommandFailed {
    #[getter]
    fn command(&self) -> &'static str {
        self.command
    }
    #[getter]
    fn reply(&self) -> PyReply {
        reply(&self.reply)
    }
    fn __repr__(&self) -> String {
        format!(
            "CommandFailed({:?}, {:?})",
            self.command,
            self.reply.to_string()
        )
    }
}

/// The outcome of one submitted transaction.
#[pyclass(frozen, module = "fastsmtp._fastsmtp", name = "TransactionResult")]
pub struct PyTransactionResult {
    tag: Py<PyAny>,
    index: Option<usize>,
    mail_reply: Reply,
    rcpt_replies: Vec<Option<Reply>>,
    data_reply: Option<Reply>,
}

#[pymethods]
impl PyTransactionResult {
    #[getter]
    fn tag(&self, py: Python<'_>) -> Py<PyAny> {
        self.tag.clone_ref(py)
    }
    #[getter]
    fn index(&self) -> Option<usize> {
        self.index
    }
    #[getter]
    fn mail_reply(&self) -> PyReply {
        reply(&self.mail_reply)
    }
    #[getter]
    fn rcpt_replies(&self) -> Vec<Option<PyReply>> {
        self.rcpt_replies
            .iter()
            .map(|r| r.as_ref().map(reply))
            .collect()
    }
    #[getter]
    fn data_reply(&self) -> Option<PyReply> {
        self.data_reply.as_ref().map(reply)
    }
    /// MAIL, every RCPT and the end of data answered 2xx or 3xx (the common case, which
    /// then needs only `data_reply`).
    #[getter]
    fn all_positive(&self) -> bool {
        all_positive(&self.mail_reply, &self.rcpt_replies, &self.data_reply)
    }
    fn __repr__(&self, py: Python<'_>) -> String {
        let rcpts: Vec<String> = self
            .rcpt_replies
            .iter()
            .map(|r| r.as_ref().map_or("None".into(), |r| r.code.to_string()))
            .collect();
        format!(
            "TransactionResult({}, mail={}, rcpt=[{}], data={})",
            tag_repr(py, &self.tag, self.index),
            self.mail_reply.code,
            rcpts.join(", "),
            self.data_reply
                .as_ref()
                .map_or("None".into(), |r| r.to_string())
        )
    }
}

/// The connection ended before this transaction got its final reply.
#[pyclass(frozen, module = "fastsmtp._fastsmtp", name = "TransactionAborted")]
pub struct PyTransactionAborted {
    tag: Py<PyAny>,
    index: Option<usize>,
    end_of_data_sent: bool,
    reason: String,
    reply: Option<Reply>,
}

#[pymethods]
impl PyTransactionAborted {
    #[getter]
    fn tag(&self, py: Python<'_>) -> Py<PyAny> {
        self.tag.clone_ref(py)
    }
    #[getter]
    fn index(&self) -> Option<usize> {
        self.index
    }
    #[getter]
    fn end_of_data_sent(&self) -> bool {
        self.end_of_data_sent
    }
    #[getter]
    fn reason(&self) -> &str {
        &self.reason
    }
    #[getter]
    fn reply(&self) -> Option<PyReply> {
        self.reply.as_ref().map(reply)
    }
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "TransactionAborted({}, end_of_data_sent={}, reason={:?})",
            tag_repr(py, &self.tag, self.index),
            py_bool(self.end_of_data_sent),
            self.reason
        )
    }
}

/// The connection is finished.
#[pyclass(frozen, module = "fastsmtp._fastsmtp", name = "Closed")]
pub struct PyClosed {
    reason: String,
    reply: Option<Reply>,
    error: Option<Py<PyAny>>,
}

#[pymethods]
impl PyClosed {
    #[getter]
    fn reason(&self) -> &str {
        &self.reason
    }
    #[getter]
    fn reply(&self) -> Option<PyReply> {
        self.reply.as_ref().map(reply)
    }
    #[getter]
    fn error(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.error.as_ref().map(|e| e.clone_ref(py))
    }
    fn __repr__(&self) -> String {
        format!("Closed(reason={:?})", self.reason)
    }
}

/// Whether MAIL, every RCPT and the end of data were answered 2xx or 3xx.
fn all_positive(mail: &Reply, rcpts: &[Option<Reply>], data: &Option<Reply>) -> bool {
    mail.is_positive()
        && data.as_ref().is_some_and(Reply::is_positive)
        && rcpts
            .iter()
            .all(|r| r.as_ref().is_some_and(Reply::is_positive))
}

/// `tag=<repr>`, and `, index=N` for a transaction from `submit_run`.
fn tag_repr(py: Python<'_>, tag: &Py<PyAny>, index: Option<usize>) -> String {
    let tag = tag
        .bind(py)
        .repr()
        .map_or_else(|_| "?".into(), |r| r.to_string());
    match index {
        Some(i) => format!("tag={tag}, index={i}"),
        None => format!("tag={tag}"),
    }
}

/// Recipients accepted by transactions submitted with the same `on_accepted`, reported
/// together: the count-only path needs no per-transaction object (see `submit`).
#[pyclass(frozen, module = "fastsmtp._fastsmtp", name = "Accepted")]
pub struct PyAccepted {
    #[pyo3(get)]
    on_accepted: Py<PyAny>,
    #[pyo3(get)]
    recipients: usize,
}

#[pymethods]
impl PyAccepted {
    /// `on_accepted(recipients)`: one call from Python instead of two attribute reads
    /// and a call (this runs once per read on the count-only path).
    fn __call__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.on_accepted.call1(py, (self.recipients,))
    }
    fn __repr__(&self) -> String {
        format!("Accepted(recipients={})", self.recipients)
    }
}

/// Convert one core event (other than a transaction's) into its Python class.
fn event_to_py(py: Python<'_>, event: Event) -> PyResult<Py<PyAny>> {
    Ok(match event {
        Event::Ready {
            greeting,
            capabilities,
        } => Py::new(
            py,
            PyReady {
                greeting,
                capabilities,
            },
        )?
        .into_any(),
        Event::StartTlsReady => Py::new(py, PyStartTlsReady)?.into_any(),
        Event::AuthSucceeded(r) => Py::new(py, PyAuthSucceeded(r))?.into_any(),
        Event::AuthFailed(r) => Py::new(py, PyAuthFailed(r))?.into_any(),
        Event::NoopReplied(r) => Py::new(py, PyNoopReplied(r))?.into_any(),
        Event::CommandFailed { command, reply } => {
            Py::new(py, PyCommandFailed { command, reply })?.into_any()
        }
        Event::TransactionResult { .. } | Event::TransactionAborted { .. } => {
            unreachable!("transaction events are converted with their tag")
        }
        Event::Closed {
            reason,
            reply,
            error,
        } => {
            let error = error.map(|m| {
                new_error(py, "RemoteProtocolError", &m, &[])
                    .into_value(py)
                    .into_any()
            });
            Py::new(
                py,
                PyClosed {
                    reason,
                    reply,
                    error,
                },
            )?
            .into_any()
        }
    })
}

/// What the binding keeps per transaction in flight: the caller's tag, returned in its
/// event, and the optional count-only callback.
struct Slot {
    txn_id: u64,
    tag: Py<PyAny>,
    /// The message's position in the list given to `submit_run`; None for `submit`.
    index: Option<usize>,
    on_accepted: Option<Py<PyAny>>,
}

/// A sans-IO SMTP client connection (see the stub file for the full contract).
///
/// The core numbers transactions; this binding maps the numbers back to the caller's tags
/// (any Python object, usually its job), so the caller keeps no table of its own.
#[pyclass(module = "fastsmtp._fastsmtp", name = "ClientConnection")]
pub struct PyClientConnection {
    conn: ClientConnection,
    next_txn_id: u64,
    /// In submit order; replies resolve transactions in that order, so the one looked up
    /// is almost always at the front.
    slots: VecDeque<Slot>,
    /// Octets handed out by `data_to_send` (the caller's statistics, without a Python
    /// `len` and addition per write).
    bytes_sent: u64,
}

impl PyClientConnection {
    /// Hand one transaction to the core and remember what its events must carry.
    fn queue(
        &mut self,
        tx: Transaction,
        tag: Py<PyAny>,
        index: Option<usize>,
        on_accepted: Option<Py<PyAny>>,
    ) -> Result<(), Error> {
        let txn_id = self.next_txn_id;
        self.conn.submit(txn_id, tx)?;
        self.next_txn_id += 1;
        self.slots.push_back(Slot {
            txn_id,
            tag,
            index,
            on_accepted,
        });
        Ok(())
    }

    fn take_slot(&mut self, py: Python<'_>, txn_id: u64) -> Slot {
        let at = if self.slots.front().is_some_and(|s| s.txn_id == txn_id) {
            Some(0)
        } else {
            self.slots.iter().position(|s| s.txn_id == txn_id)
        };
        at.and_then(|i| self.slots.remove(i))
            .unwrap_or_else(|| Slot {
                // Unreachable: the core only reports transactions it was given.
                txn_id,
                tag: py.None(),
                index: None,
                on_accepted: None,
            })
    }
}

/// Builds `receive_data`'s list, merging consecutive count-only acceptances that share a
/// callback into one `Accepted`.
struct EventList<'py> {
    list: Bound<'py, PyList>,
    accepted: Option<(Py<PyAny>, usize)>,
}

impl<'py> EventList<'py> {
    fn accept(&mut self, on_accepted: Py<PyAny>, recipients: usize) -> PyResult<()> {
        if let Some((current, count)) = &mut self.accepted {
            if current.is(&on_accepted) {
                *count += recipients;
                return Ok(());
            }
        }
        self.flush()?;
        self.accepted = Some((on_accepted, recipients));
        Ok(())
    }

    fn push(&mut self, event: Py<PyAny>) -> PyResult<()> {
        self.flush()?;
        self.list.append(event)
    }

    fn flush(&mut self) -> PyResult<()> {
        if let Some((on_accepted, recipients)) = self.accepted.take() {
            let py = self.list.py();
            let event = Py::new(
                py,
                PyAccepted {
                    on_accepted,
                    recipients,
                },
            )?;
            self.list.append(event)?;
        }
        Ok(())
    }
}

#[pymethods]
impl PyClientConnection {
    #[new]
    #[pyo3(signature = (local_hostname = "localhost", *, max_reply_bytes = 65536))]
    fn new(py: Python<'_>, local_hostname: &str, max_reply_bytes: usize) -> PyResult<Self> {
        let conn =
            ClientConnection::new(local_hostname, max_reply_bytes).map_err(|e| to_py(py, e))?;
        Ok(PyClientConnection {
            conn,
            next_txn_id: 0,
            slots: VecDeque::new(),
            bytes_sent: 0,
        })
    }

    fn receive_data<'py>(&mut self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyList>> {
        let conn = &mut self.conn;
        let events = match catch_unwind(AssertUnwindSafe(|| conn.receive_data(data))) {
            Ok(events) => events,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".into());
                conn.internal_error(&what)
            }
        };
        let mut out = EventList {
            list: PyList::empty(py),
            accepted: None,
        };
        for event in events {
            match event {
                Event::TransactionResult {
                    txn_id,
                    mail_reply,
                    rcpt_replies,
                    data_reply,
                } => {
                    let slot = self.take_slot(py, txn_id);
                    if let Some(on_accepted) = slot.on_accepted {
                        if all_positive(&mail_reply, &rcpt_replies, &data_reply) {
                            out.accept(on_accepted, rcpt_replies.len())?;
                            continue;
                        }
                    }
                    let result = PyTransactionResult {
                        tag: slot.tag,
                        index: slot.index,
                        mail_reply,
                        rcpt_replies,
                        data_reply,
                    };
                    out.push(Py::new(py, result)?.into_any())?;
                }
                Event::TransactionAborted {
                    txn_id,
                    end_of_data_sent,
                    reason,
                    reply,
                } => {
                    let slot = self.take_slot(py, txn_id);
                    let aborted = PyTransactionAborted {
                        tag: slot.tag,
                        index: slot.index,
                        end_of_data_sent,
                        reason,
                        reply,
                    };
                    out.push(Py::new(py, aborted)?.into_any())?;
                }
                other => out.push(event_to_py(py, other)?)?,
            }
        }
        out.flush()?;
        Ok(out.list)
    }

    /// The tags and callbacks held for transactions in flight reference the caller's jobs,
    /// which can reference the caller's connection and so this object: let the garbage
    /// collector see them, so such a cycle can be freed.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        for slot in &self.slots {
            visit.call(&slot.tag)?;
            if let Some(on_accepted) = &slot.on_accepted {
                visit.call(on_accepted)?;
            }
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.slots.clear();
    }

    fn data_to_send<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let bytes_sent = &mut self.bytes_sent;
        self.conn.with_data_to_send(|bytes| {
            *bytes_sent += bytes.len() as u64;
            PyBytes::new(py, bytes)
        })
    }

    fn starttls(&mut self, py: Python<'_>) -> PyResult<()> {
        self.conn.starttls().map_err(|e| to_py(py, e))
    }

    fn tls_established(&mut self, py: Python<'_>) -> PyResult<()> {
        self.conn.tls_established().map_err(|e| to_py(py, e))
    }

    #[pyo3(signature = (mechanism, username, secret, *, allow_plaintext = false))]
    fn auth(
        &mut self,
        py: Python<'_>,
        mechanism: &str,
        username: &str,
        secret: &str,
        allow_plaintext: bool,
    ) -> PyResult<()> {
        self.conn
            .auth(mechanism, username, secret, allow_plaintext)
            .map_err(|e| to_py(py, e))
    }

    #[pyo3(signature = (tag, message = None, on_accepted = None, *, sender = None, recipients = None, body = None))]
    #[allow(clippy::too_many_arguments)]
    fn submit(
        &mut self,
        py: Python<'_>,
        tag: Py<PyAny>,
        message: Option<&Bound<'_, PyAny>>,
        on_accepted: Option<Py<PyAny>>,
        sender: Option<&str>,
        recipients: Option<Vec<String>>,
        body: Option<&[u8]>,
    ) -> PyResult<()> {
        let tx = match (message, sender, recipients, body) {
            (Some(message), None, None, None) => transaction_from_message(message)?,
            (None, Some(sender), Some(recipients), Some(body)) => {
                Transaction::from_raw(sender, &recipients, body).map_err(|e| to_py(py, e))?
            }
            _ => {
                return Err(PyTypeError::new_err(
                    "submit() takes either a message, or sender, recipients and body",
                ))
            }
        };
        self.queue(tx, tag, None, on_accepted)
            .map_err(|e| to_py(py, e))
    }

    /// `submit(tag, message, on_accepted)` for each of `messages[start:start + count]` in
    /// one call, each transaction's events carrying the same tag and the message's position
    /// as `index`: a batch needs no Python object or call per message on its way out.
    /// Returns `(position, exception)` for the messages refused, as `submit` would raise.
    #[pyo3(signature = (tag, messages, start, count, on_accepted = None))]
    fn submit_run<'py>(
        &mut self,
        py: Python<'py>,
        tag: Py<PyAny>,
        messages: &Bound<'py, PyList>,
        start: usize,
        count: usize,
        on_accepted: Option<Py<PyAny>>,
    ) -> PyResult<Vec<(usize, Py<PyAny>)>> {
        let stop = start.saturating_add(count).min(messages.len());
        let mut refused = Vec::new();
        for index in start..stop {
            let queued = transaction_from_message(&messages.get_item(index)?).and_then(|tx| {
                let on_accepted = on_accepted.as_ref().map(|f| f.clone_ref(py));
                self.queue(tx, tag.clone_ref(py), Some(index), on_accepted)
                    .map_err(|e| to_py(py, e))
            });
            if let Err(e) = queued {
                refused.push((index, e.into_value(py).into_any()));
            }
        }
        Ok(refused)
    }

    fn noop(&mut self, py: Python<'_>) -> PyResult<()> {
        self.conn.noop().map_err(|e| to_py(py, e))
    }

    fn quit(&mut self, py: Python<'_>) -> PyResult<()> {
        self.conn.quit().map_err(|e| to_py(py, e))
    }

    #[getter]
    fn capabilities(&self) -> Option<PyCapabilities> {
        self.conn.capabilities().cloned().map(PyCapabilities)
    }
    #[getter]
    fn tls_active(&self) -> bool {
        self.conn.tls_active()
    }
    #[getter]
    fn in_flight(&self) -> usize {
        self.conn.in_flight()
    }
    #[getter]
    fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }
    #[getter]
    fn bytes_in_flight(&self) -> usize {
        self.conn.bytes_in_flight()
    }
    #[getter]
    fn is_ready(&self) -> bool {
        self.conn.is_ready()
    }
    #[getter]
    fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }
    fn __repr__(&self) -> String {
        format!(
            "<ClientConnection state={:?} in_flight={}>",
            self.conn.state(),
            self.conn.in_flight()
        )
    }
}

/// A `BuiltMessage` as a transaction body: its chunks are written straight from the
/// message (shared attachment parts included), never joined or copied on the way.
struct MessageBody(Py<PyBuiltMessage>);

impl MessageBytes for MessageBody {
    fn len(&self) -> usize {
        self.0.get().inner.len()
    }
    fn for_each_chunk(&self, f: &mut dyn FnMut(&[u8])) {
        for chunk in self.0.get().inner.chunks() {
            f(chunk)
        }
    }
}

/// A transaction from a `BuiltMessage` (the raw path, `Transaction::from_raw`, normalizes).
fn transaction_from_message(message: &Bound<'_, PyAny>) -> PyResult<Transaction> {
    let py = message.py();
    let built = message.cast::<PyBuiltMessage>()?;
    let m = &built.get().inner;
    let body = Body::from_source(Arc::new(MessageBody(built.clone().unbind())));
    // The builder writes CRLF line ends only (its tests check every shape): no rescan.
    Transaction::from_wire_form(
        m.envelope_sender(),
        m.recipients(),
        body,
        m.smtputf8(),
        m.eight_bit(),
    )
    .map_err(|e| to_py(py, e))
}

/// The DATA encoding of a body: leading dots doubled, CRLF line ends, a final CRLF.
#[pyfunction]
fn dot_stuff<'py>(py: Python<'py>, body: &[u8]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &dotstuff::dot_stuff(body))
}

/// Parse the complete replies in `data`; raises RemoteProtocolError when malformed.
#[pyfunction]
fn parse_replies(py: Python<'_>, data: &[u8]) -> PyResult<Vec<PyReply>> {
    let replies = catch_unwind(|| reply::parse_all(data, DEFAULT_MAX_REPLY_BYTES))
        .unwrap_or_else(|_| Err(Error::remote("internal error while parsing")));
    Ok(replies
        .map_err(|e| to_py(py, e))?
        .into_iter()
        .map(PyReply)
        .collect())
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyReply>()?;
    m.add_class::<PyCapabilities>()?;
    m.add_class::<PyReady>()?;
    m.add_class::<PyStartTlsReady>()?;
    m.add_class::<PyAuthSucceeded>()?;
    m.add_class::<PyAuthFailed>()?;
    m.add_class::<PyNoopReplied>()?;
    m.add_class::<PyCommandFailed>()?;
    m.add_class::<PyTransactionResult>()?;
    m.add_class::<PyTransactionAborted>()?;
    m.add_class::<PyAccepted>()?;
    m.add_class::<PyClosed>()?;
    m.add_class::<PyClientConnection>()?;
    // The stubs' `Event` alias, a real union at runtime: `isinstance(e, Event)` works.
    let classes = [
        m.getattr("Ready")?,
        m.getattr("StartTlsReady")?,
        m.getattr("AuthSucceeded")?,
        m.getattr("AuthFailed")?,
        m.getattr("CommandFailed")?,
        m.getattr("TransactionResult")?,
        m.getattr("TransactionAborted")?,
        m.getattr("NoopReplied")?,
        m.getattr("Accepted")?,
        m.getattr("Closed")?,
    ];
    let or = m.py().import("operator")?.getattr("or_")?;
    let event = m
        .py()
        .import("functools")?
        .call_method1("reduce", (or, classes))?;
    m.add("Event", event)?;
    m.add_function(wrap_pyfunction!(dot_stuff, m)?)?;
    m.add_function(wrap_pyfunction!(parse_replies, m)?)?;
    Ok(())
}
