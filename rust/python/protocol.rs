//! Bindings for [`crate::protocol`]: `ClientConnection`, its events, `Reply`,
//! `Capabilities`, `RawMessage`, `dot_stuff` and `parse_replies`.
//!
//! Conversion only: the core keeps each transaction's tag (here a [`PyTag`]: the caller's
//! queue item and the message's position in it) and reports it in the transaction's one
//! event. Events are frozen data classes holding Rust values; their `Reply` attributes are
//! made into Python objects when read. Core errors become the `fastsmtp._errors` classes
//! here, and a panic inside the core (a bug: the parser is fuzzed never to panic) is
//! caught and turned into a closed connection rather than crossing into Python.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pyclass::{PyTraverseError, PyVisit};
use pyo3::types::{PyBytes, PyList};

use super::errors::new_error;
use super::mime::PyBuiltMessage;
use super::tls::{to_py as tls_to_py, PyTlsConfig};
use crate::protocol::connection::{
    Body, ClientConnection, Event, MessageBytes, Options, Outcome, Tag, Transaction, Verdict,
};
use crate::protocol::reply::{self, EnhancedCode, Reply, DEFAULT_MAX_REPLY_BYTES};
use crate::protocol::state::State;
use crate::protocol::{dotstuff, Capabilities, Error};
use crate::tls::{TlsError, TlsSession};

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

/// The outcome of one submitted transaction (not every recipient accepted, or not
/// submitted `count_only`).
#[pyclass(frozen, module = "fastsmtp._fastsmtp", name = "TransactionResult")]
pub struct PyTransactionResult {
    lot: Py<PyAny>,
    index: usize,
    outcome: Outcome,
}

#[pymethods]
impl PyTransactionResult {
    /// The queue item the message came from (the `lot` given to `submit`).
    #[getter]
    fn lot(&self, py: Python<'_>) -> Py<PyAny> {
        self.lot.clone_ref(py)
    }
    /// The message's position in its lot.
    #[getter]
    fn index(&self) -> usize {
        self.index
    }
    #[getter]
    fn mail_reply(&self) -> PyReply {
        reply(&self.outcome.mail_reply)
    }
    #[getter]
    fn rcpt_replies(&self) -> Vec<Option<PyReply>> {
        let replies = &self.outcome.rcpt_replies;
        replies.iter().map(|r| r.as_ref().map(reply)).collect()
    }
    #[getter]
    fn data_reply(&self) -> Option<PyReply> {
        self.outcome.data_reply.as_ref().map(reply)
    }
    /// The end of data was answered 2xx.
    #[getter]
    fn delivered(&self) -> bool {
        self.outcome.delivered
    }
    /// Every recipient accepted (MAIL, each RCPT and the end of data answered 2xx).
    #[getter]
    fn all_accepted(&self) -> bool {
        self.outcome.all_accepted()
    }
    /// Per recipient, the reply that decided it: the end of data's 2xx (accepted), the
    /// first refusal (4xx/5xx) among MAIL, its RCPT and the data phase, or None when no
    /// reply decided it. A 2xx here always is an accepted end of data.
    fn verdicts(&self) -> Vec<Option<PyReply>> {
        (0..self.outcome.rcpt_replies.len())
            .map(|i| match self.outcome.verdict(i) {
                Verdict::Accepted(r) | Verdict::Refused(r) => Some(reply(r)),
                Verdict::Unanswered => None,
            })
            .collect()
    }
    fn __repr__(&self, py: Python<'_>) -> String {
        let rcpts: Vec<String> = self
            .outcome
            .rcpt_replies
            .iter()
            .map(|r| r.as_ref().map_or("None".into(), |r| r.code.to_string()))
            .collect();
        format!(
            "TransactionResult({}, mail={}, rcpt=[{}], data={})",
            lot_repr(py, &self.lot, self.index),
            self.outcome.mail_reply.code,
            rcpts.join(", "),
            self.outcome
                .data_reply
                .as_ref()
                .map_or("None".into(), |r| r.to_string())
        )
    }
}

/// The connection ended before this transaction got its final reply.
#[pyclass(frozen, module = "fastsmtp._fastsmtp", name = "TransactionAborted")]
pub struct PyTransactionAborted {
    lot: Py<PyAny>,
    index: usize,
    end_of_data_sent: bool,
    reason: String,
    reply: Option<Reply>,
}

#[pymethods]
impl PyTransactionAborted {
    #[getter]
    fn lot(&self, py: Python<'_>) -> Py<PyAny> {
        self.lot.clone_ref(py)
    }
    #[getter]
    fn index(&self) -> usize {
        self.index
    }
    /// Its end of data had been handed out: the server may have taken the message.
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
            lot_repr(py, &self.lot, self.index),
            py_bool(self.end_of_data_sent),
            self.reason
        )
    }
}

/// Count-only transactions of one lot whose every recipient was accepted.
#[pyclass(frozen, module = "fastsmtp._fastsmtp", name = "Accepted")]
pub struct PyAccepted {
    #[pyo3(get)]
    lot: Py<PyAny>,
    #[pyo3(get)]
    transactions: usize,
    #[pyo3(get)]
    recipients: usize,
}

#[pymethods]
impl PyAccepted {
    fn __repr__(&self) -> String {
        format!(
            "Accepted(transactions={}, recipients={})",
            self.transactions, self.recipients
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

/// `lot=<repr>, index=N`.
fn lot_repr(py: Python<'_>, lot: &Py<PyAny>, index: usize) -> String {
    let lot = lot
        .bind(py)
        .repr()
        .map_or_else(|_| "?".into(), |r| r.to_string());
    format!("lot={lot}, index={index}")
}

/// What the core carries for each transaction: the caller's queue item and the
/// message's position in it. Count-only acceptances merge within one lot.
struct PyTag {
    lot: Py<PyAny>,
    index: usize,
}

impl Tag for PyTag {
    fn same_batch(&self, other: &Self) -> bool {
        self.lot.is(&other.lot)
    }
}

/// Convert one core event into its Python class.
fn event_to_py(py: Python<'_>, event: Event<PyTag>) -> PyResult<Py<PyAny>> {
    Ok(match event {
        Event::Accepted {
            tag,
            transactions,
            recipients,
        } => Py::new(
            py,
            PyAccepted {
                lot: tag.lot,
                transactions,
                recipients,
            },
        )?
        .into_any(),
        Event::TransactionResult { tag, outcome } => Py::new(
            py,
            PyTransactionResult {
                lot: tag.lot,
                index: tag.index,
                outcome,
            },
        )?
        .into_any(),
        Event::TransactionAborted {
            tag,
            end_of_data_sent,
            reason,
            reply,
        } => Py::new(
            py,
            PyTransactionAborted {
                lot: tag.lot,
                index: tag.index,
                end_of_data_sent,
                reason,
                reply,
            },
        )?
        .into_any(),
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

fn events_to_py<'py>(py: Python<'py>, events: Vec<Event<PyTag>>) -> PyResult<Bound<'py, PyList>> {
    if events.is_empty() {
        return Ok(PyList::empty(py));
    }
    let converted = events
        .into_iter()
        .map(|e| event_to_py(py, e))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, converted)
}

/// Inputs at least this large are encrypted or decrypted with the GIL released (one full
/// record, ~2 µs of AES-GCM); for a read's few hundred bytes the hand-off costs more.
const TLS_DETACH_MIN: usize = 16 * 1024;

/// The TLS layer under a connection: everything the core writes goes through it, and
/// every read comes out of it, so the caller sees only ciphertext.
struct Tls {
    session: TlsSession,
    /// Started after the server's 220 to STARTTLS: the core is told when the handshake
    /// is done (implicit TLS starts before the greeting and tells it nothing).
    starttls: bool,
    established: bool,
    /// Plaintext out of the last read (reused).
    plain: Vec<u8>,
    /// Ciphertext of the last write (reused).
    out: Vec<u8>,
}

impl Tls {
    /// Decrypt `data` into `self.plain`, releasing the GIL for large reads.
    fn read(&mut self, py: Python<'_>, data: &[u8]) -> Result<(), TlsError> {
        self.plain.clear();
        let (session, plain) = (&mut self.session, &mut self.plain);
        if data.len() >= TLS_DETACH_MIN {
            py.detach(|| session.read_tls(data, plain))
        } else {
            session.read_tls(data, plain)
        }
    }

    /// Seal `plain` and append every TLS byte ready to go (handshake, records, alerts).
    fn seal(&mut self, py: Python<'_>, plain: &[u8], out: &mut Vec<u8>) {
        // A failed session refuses more plaintext; its error is reported by the read that
        // saw it, and take_tls still hands out the alert to send.
        let session = &mut self.session;
        if plain.len() >= TLS_DETACH_MIN {
            py.detach(|| {
                let _ = session.write_plain(plain);
                session.take_tls(out);
            });
        } else {
            if !plain.is_empty() {
                let _ = session.write_plain(plain);
            }
            session.take_tls(out);
        }
    }
}

/// A message the caller assembled itself (`Engine.send_raw`), validated and in wire form:
/// the envelope is checked and every bare CR or LF of the bytes made CRLF when it is made,
/// so nothing malformed can reach a command or DATA later.
#[pyclass(frozen, module = "fastsmtp._fastsmtp", name = "RawMessage")]
pub struct PyRawMessage {
    tx: Transaction,
    message_id: String,
}

#[pymethods]
impl PyRawMessage {
    #[new]
    #[pyo3(signature = (sender, recipients, data, message_id = None))]
    fn new(
        py: Python<'_>,
        sender: &str,
        recipients: Vec<String>,
        data: &[u8],
        message_id: Option<String>,
    ) -> PyResult<Self> {
        let tx = Transaction::from_raw(sender, &recipients, data).map_err(|e| to_py(py, e))?;
        let message_id = message_id.unwrap_or_default();
        Ok(PyRawMessage { tx, message_id })
    }
    #[getter]
    fn envelope_sender(&self) -> &str {
        self.tx.sender.as_str()
    }
    #[getter]
    fn recipients(&self) -> Vec<&str> {
        self.tx.recipients.iter().map(|r| r.as_str()).collect()
    }
    /// How many envelope recipients (without making their list).
    #[getter]
    fn recipient_count(&self) -> usize {
        self.tx.recipients.len()
    }
    #[getter]
    fn message_id(&self) -> &str {
        &self.message_id
    }
    fn __len__(&self) -> usize {
        self.tx.body.len()
    }
    /// The bytes as they go out (line ends made CRLF).
    fn as_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.tx.body.to_vec())
    }
    fn __repr__(&self) -> String {
        format!(
            "<RawMessage from {:?} to {} recipient(s), {} octets>",
            self.tx.sender.as_str(),
            self.tx.recipients.len(),
            self.tx.body.len()
        )
    }
}

/// A sans-IO SMTP client connection (see the stub file for the full contract).
///
/// The core has no clock; this edge reads one (monotonic, from when the connection was
/// made) to stamp what goes out and to tell how long a reply has been awaited, so the
/// caller passes no time on the hot path.
#[pyclass(module = "fastsmtp._fastsmtp", name = "ClientConnection")]
pub struct PyClientConnection {
    conn: ClientConnection<PyTag>,
    started: Instant,
    /// Seconds since `started` of the last read.
    last_read: f64,
    /// The TLS layer, once `start_tls` was called.
    tls: Option<Tls>,
}

impl PyClientConnection {
    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Run a core call that reports events, catching a panic (a bug) as a closed
    /// connection.
    fn guarded<'py>(
        &mut self,
        py: Python<'py>,
        f: impl FnOnce(&mut ClientConnection<PyTag>) -> Vec<Event<PyTag>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let events = self.unwinding(f);
        events_to_py(py, events)
    }

    fn unwinding(
        &mut self,
        f: impl FnOnce(&mut ClientConnection<PyTag>) -> Vec<Event<PyTag>>,
    ) -> Vec<Event<PyTag>> {
        let conn = &mut self.conn;
        match catch_unwind(AssertUnwindSafe(|| f(conn))) {
            Ok(events) => events,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".into());
                conn.internal_error(&what)
            }
        }
    }

    /// The core's next bytes, through TLS when it is on: what to write to the socket.
    fn take_output<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let now = self.now();
        match &mut self.tls {
            None => self
                .conn
                .take_data_to_send(now, |bytes| PyBytes::new(py, bytes)),
            Some(tls) => {
                // One reused buffer: a read's records are sealed into it, then copied once
                // into the bytes the caller writes.
                let mut out = std::mem::take(&mut tls.out);
                out.clear();
                self.conn
                    .take_data_to_send(now, |plain| tls.seal(py, plain, &mut out));
                let bytes = PyBytes::new(py, &out);
                if let Some(tls) = &mut self.tls {
                    tls.out = out;
                }
                bytes
            }
        }
    }

    /// Feed a read to the core (decrypted first when TLS is on). A TLS failure ends the
    /// connection: its transactions are aborted and Closed carries the TLS error.
    fn receive<'py>(&mut self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyList>> {
        let Some(tls) = &mut self.tls else {
            return self.guarded(py, |c| c.receive_data(data));
        };
        let read = tls.read(py, data);
        let plain = std::mem::take(&mut tls.plain);
        // The handshake just finished on a STARTTLS upgrade: EHLO again (RFC 3207 4.2).
        let mut upgraded = Ok(());
        if tls.starttls && !tls.established && !tls.session.is_handshaking() && read.is_ok() {
            tls.established = true;
            upgraded = self.conn.tls_established();
        }
        let mut events = if plain.is_empty() {
            Vec::new()
        } else {
            self.unwinding(|c| c.receive_data(&plain))
        };
        let mut peer_closed = false;
        if let Some(tls) = &mut self.tls {
            tls.plain = plain;
            peer_closed = tls.session.peer_closed();
        }
        if peer_closed && read.is_ok() {
            // close_notify: the server is done (it may wait for ours before closing TCP):
            // to the core this is the end of the connection.
            events.extend(self.unwinding(|c| c.receive_data(b"")));
        }
        if let Err(e) = upgraded {
            return Err(to_py(py, e));
        }
        if let Err(e) = read {
            events.extend(self.conn.abort(&format!("TLS: {}", e.message)));
            return self.tls_failed(py, events, e);
        }
        events_to_py(py, events)
    }

    /// The events of a connection ended by a TLS error, with that error (a typed
    /// `fastsmtp` TLS exception) as Closed's `error`.
    fn tls_failed<'py>(
        &mut self,
        py: Python<'py>,
        events: Vec<Event<PyTag>>,
        e: TlsError,
    ) -> PyResult<Bound<'py, PyList>> {
        let error = tls_to_py(py, e).into_value(py).into_any();
        let converted = events
            .into_iter()
            .map(|event| match event {
                Event::Closed { reason, reply, .. } => Py::new(
                    py,
                    PyClosed {
                        reason,
                        reply,
                        error: Some(error.clone_ref(py)),
                    },
                )
                .map(Py::into_any),
                other => event_to_py(py, other),
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, converted)
    }

    fn queue(
        &mut self,
        py: Python<'_>,
        lot: &Py<PyAny>,
        index: usize,
        message: &Bound<'_, PyAny>,
        recipients: Option<&[String]>,
        count_only: bool,
    ) -> PyResult<()> {
        let tx = transaction(message, recipients)?;
        let tag = PyTag {
            lot: lot.clone_ref(py),
            index,
        };
        self.conn
            .submit(tag, tx, count_only)
            .map_err(|e| to_py(py, e))
    }
}

#[pymethods]
impl PyClientConnection {
    #[new]
    #[pyo3(signature = (local_hostname = "localhost", *, max_reply_bytes = 65536, data_window = 1))]
    fn new(
        py: Python<'_>,
        local_hostname: &str,
        max_reply_bytes: usize,
        data_window: usize,
    ) -> PyResult<Self> {
        let options = Options {
            max_reply_bytes,
            data_window,
        };
        let conn = ClientConnection::new(local_hostname, options).map_err(|e| to_py(py, e))?;
        Ok(PyClientConnection {
            conn,
            started: Instant::now(),
            last_read: 0.0,
            tls: None,
        })
    }

    /// One read's worth of work in one call: feed `data`, then take what the connection
    /// framed in answer. Returns `(events, bytes to write)`; a result of at least
    /// `DATA_PIECE` octets may have left more of a large body (call `data_to_send`).
    fn feed<'py>(
        &mut self,
        py: Python<'py>,
        data: &[u8],
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyBytes>)> {
        self.last_read = self.now();
        let events = self.receive(py, data)?;
        let out = self.take_output(py);
        Ok((events, out))
    }

    /// Feed bytes read from the server (ciphertext once TLS is on); the events they
    /// complete, in order.
    fn receive_data<'py>(&mut self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyList>> {
        if data.is_empty() {
            return Ok(PyList::empty(py)); // EOF is eof(), not empty data
        }
        self.last_read = self.now();
        self.receive(py, data)
    }

    /// The server closed the connection. With TLS, a stream cut inside a record or the
    /// handshake ends it with that TLS error.
    fn eof<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        if let Some(tls) = &mut self.tls {
            if let Err(e) = tls.session.eof() {
                let events = self.conn.abort(&format!("TLS: {}", e.message));
                return self.tls_failed(py, events, e);
            }
        }
        self.guarded(py, |c| c.receive_data(b""))
    }

    /// End the connection now for the caller's `reason` (a reply deadline, a transport
    /// error): every unresolved transaction is aborted with it, then Closed.
    fn abort<'py>(&mut self, py: Python<'py>, reason: &str) -> PyResult<Bound<'py, PyList>> {
        self.guarded(py, |c| c.abort(reason))
    }

    /// The tags held for transactions in flight reference the caller's queue items, which
    /// can reference the caller's connection and so this object: let the garbage collector
    /// see them, so such a cycle can be freed.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        for tag in self.conn.tags() {
            visit.call(&tag.lot)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.conn.forget();
    }

    /// The next bytes to write (everything framed, or at least `DATA_PIECE` octets of
    /// it when a large body is queued; ciphertext once TLS is on), counted as sent now
    /// (for reply deadlines).
    fn data_to_send<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        self.take_output(py)
    }

    #[getter]
    fn has_data_to_send(&self) -> bool {
        self.conn.has_data_to_send() || self.tls.as_ref().is_some_and(|t| t.session.wants_write())
    }

    /// Run the connection over TLS from now on: at once for implicit TLS (before the
    /// greeting), or after the StartTlsReady event for STARTTLS (the core has discarded
    /// whatever the server sent after its 220). The handshake goes through `feed` and
    /// `data_to_send` like everything else; when it completes after STARTTLS, EHLO is sent
    /// again and a Ready event follows. A TLS failure ends the connection, with the typed
    /// TLS exception as Closed's `error`.
    fn start_tls(
        &mut self,
        py: Python<'_>,
        config: &PyTlsConfig,
        server_name: &str,
    ) -> PyResult<()> {
        if self.tls.is_some() {
            return Err(new_error(
                py,
                "LocalProtocolError",
                "TLS is already on",
                &[],
            ));
        }
        let starttls = match self.conn.state() {
            State::TlsHandshake => true,
            State::Greeting if self.conn.bytes_sent() == 0 => false,
            other => {
                let message = format!(
                    "start_tls() needs a new connection or a STARTTLS go-ahead, not {other:?}"
                );
                return Err(new_error(py, "LocalProtocolError", &message, &[]));
            }
        };
        let session =
            TlsSession::new(config.config(), server_name).map_err(|e| tls_to_py(py, e))?;
        self.tls = Some(Tls {
            session,
            starttls,
            established: false,
            plain: Vec::new(),
            out: Vec::new(),
        });
        Ok(())
    }

    /// End TLS politely: the close_notify alert to write before closing the socket
    /// (b"" without TLS).
    fn close_tls<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let mut out = Vec::new();
        if let Some(tls) = &mut self.tls {
            tls.session.close();
            tls.session.take_tls(&mut out);
        }
        PyBytes::new(py, &out)
    }

    /// The negotiated TLS version ("TLSv1.3"...), None without TLS or before the handshake.
    #[getter]
    fn tls_version(&self) -> Option<&'static str> {
        self.tls
            .as_ref()
            .and_then(|t| t.session.protocol_version())
            .map(|v| v.as_str())
    }

    /// True if the TLS handshake resumed an earlier session.
    #[getter]
    fn tls_resumed(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.session.resumed())
    }

    /// The server's certificate chain (DER, leaf first) once the TLS handshake is done.
    #[getter]
    fn peer_certificates<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyBytes>> {
        self.tls.as_ref().map_or_else(Vec::new, |t| {
            t.session
                .peer_certificates()
                .iter()
                .map(|c| PyBytes::new(py, c.as_ref()))
                .collect()
        })
    }

    /// The command whose reply is awaited longest and for how many seconds, or None.
    #[getter]
    fn oldest_unanswered(&self) -> Option<(&'static str, f64)> {
        let now = self.now();
        self.conn
            .oldest_unanswered()
            .map(|(kind, at)| (kind.command(), now - at))
    }

    /// Seconds since the server last sent anything (since the connection was made, before
    /// that).
    #[getter]
    fn idle_for(&self) -> f64 {
        self.now() - self.last_read
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

    /// Queue one message (a BuiltMessage or RawMessage) as a transaction tagged
    /// `(lot, index)`; `recipients` replaces its envelope recipients (a retry for some).
    #[pyo3(signature = (lot, index, message, recipients = None, *, count_only = false))]
    fn submit(
        &mut self,
        py: Python<'_>,
        lot: Py<PyAny>,
        index: usize,
        message: &Bound<'_, PyAny>,
        recipients: Option<Vec<String>>,
        count_only: bool,
    ) -> PyResult<()> {
        self.queue(py, &lot, index, message, recipients.as_deref(), count_only)
    }

    /// `submit(lot, i, messages[i], count_only=count_only)` for each `i` in
    /// `range(start, min(start + count, len(messages)))`, in one call. Returns
    /// `(i, exception)` for the messages refused, as `submit` would raise.
    #[pyo3(signature = (lot, messages, start, count, *, count_only = false))]
    fn submit_lot<'py>(
        &mut self,
        py: Python<'py>,
        lot: Py<PyAny>,
        messages: &Bound<'py, PyList>,
        start: usize,
        count: usize,
        count_only: bool,
    ) -> PyResult<Vec<(usize, Py<PyAny>)>> {
        let stop = start.saturating_add(count).min(messages.len());
        let mut refused = Vec::new();
        for index in start..stop {
            let message = messages.get_item(index)?;
            if let Err(e) = self.queue(py, &lot, index, &message, None, count_only) {
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
        self.conn.bytes_sent()
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

/// The transaction for a BuiltMessage or RawMessage, to its own recipients or to
/// `recipients`.
fn transaction(message: &Bound<'_, PyAny>, recipients: Option<&[String]>) -> PyResult<Transaction> {
    let py = message.py();
    if let Ok(built) = message.cast::<PyBuiltMessage>() {
        let m = &built.get().inner;
        let body = Body::from_source(Arc::new(MessageBody(built.clone().unbind())));
        // The builder writes CRLF line ends only (its tests check every shape) and checked
        // its own envelope: neither is scanned again. Other recipients are checked.
        let tx = match recipients {
            None => Transaction::from_built_message(
                m.envelope_sender(),
                m.recipients(),
                body,
                m.smtputf8(),
                m.eight_bit(),
            ),
            Some(rcpts) => Transaction::from_wire_form(
                m.envelope_sender(),
                rcpts,
                body,
                m.smtputf8(),
                m.eight_bit(),
            ),
        };
        return tx.map_err(|e| to_py(py, e));
    }
    if let Ok(raw) = message.cast::<PyRawMessage>() {
        let tx = &raw.get().tx;
        return match recipients {
            None => Ok(tx.clone()),
            Some(rcpts) => Transaction::from_wire_form(
                tx.sender.as_str(),
                rcpts,
                tx.body.clone(),
                tx.smtputf8,
                tx.eight_bit,
            )
            .map_err(|e| to_py(py, e)),
        };
    }
    Err(PyTypeError::new_err(format!(
        "a message must be a BuiltMessage or RawMessage, not {}",
        message.get_type().name()?
    )))
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
    m.add_class::<PyRawMessage>()?;
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
    // A take of at least this many octets may have left more of a large body behind.
    m.add("DATA_PIECE", crate::protocol::output::PIECE)?;
    m.add_function(wrap_pyfunction!(dot_stuff, m)?)?;
    m.add_function(wrap_pyfunction!(parse_replies, m)?)?;
    Ok(())
}
