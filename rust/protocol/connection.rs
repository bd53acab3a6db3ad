//! [`ClientConnection`]: the sans-IO SMTP client, one per TCP connection.
//!
//! The caller feeds server bytes to [`receive_data`](ClientConnection::receive_data), gets
//! [`Event`]s back, and writes whatever [`data_to_send`](ClientConnection::data_to_send)
//! returns. Every command written appends an [`Expect`] to a queue; replies arrive in
//! command order (RFC 2920 3.1), so the front of the queue always says which command,
//! transaction and recipient a reply answers.
//!
//! # Framing
//! Chosen from the EHLO capabilities:
//! * **CHUNKING + PIPELINING**: `MAIL`, `RCPT`..., `BDAT <n> LAST` + the raw body of every
//!   submitted transaction are written at once, back to back, without waiting for any reply.
//! * **PIPELINING**: `MAIL`+`RCPT`...+`DATA` as one group; after the 354 the dot-stuffed
//!   body, `.` and the next transaction's group go out in one write. When DATA is refused
//!   nothing of the body is sent.
//! * **neither** (CHUNKING alone included): lock-step, one command, then its reply.
//!
//! # RSET and the "nested MAIL" trap
//! RFC 5321 leaves the transaction open when DATA is refused, and Postfix (3.7, checked in
//! `tests/test_protocol_peers.py`) does exactly that: after `554 no valid recipients` to
//! DATA, a following `MAIL` gets `503 5.5.1 Error: nested MAIL command`, the next `RCPT`
//! is *added to the old transaction* and the next message is delivered with the old
//! envelope sender. So a transaction whose MAIL was accepted and that did not reach an
//! end-of-data reply (DATA refused, or every RCPT refused in lock-step) sets `needs_rset`,
//! and `RSET` is written before the next `MAIL`, never before the first. In the DATA and
//! lock-step paths that is always known before the next MAIL is written.
//!
//! In the CHUNKING path transactions are written before earlier ones are answered, but the
//! reply to `BDAT ... LAST` ends the transaction whatever it says (RFC 3030 2; Postfix
//! resets after a refused BDAT, also checked against the real server), so no RSET is
//! needed there. As a guard against servers that keep the transaction open anyway: a
//! transaction whose `MAIL` got `503` and whose data was not accepted is retried once,
//! transparently (not reported), after an `RSET`. If its data *was* accepted despite the
//! 503, it is reported as is: the message was delivered, and the only safe thing is not to
//! send it twice.
//!
//! # Ending
//! EOF, a 421 in place of any reply (or when none is expected), or a malformed reply ends
//! the connection: every unresolved transaction gets a [`Event::TransactionAborted`] saying
//! whether its end of data had been handed out by `data_to_send` (the server may have
//! accepted it), then one [`Event::Closed`]. A protocol error is sticky.

use std::collections::VecDeque;
use std::sync::Arc;

use super::auth::{AuthExchange, Mechanism};
use super::capabilities::Capabilities;
use super::command::{self, Address, Domain, MailParams};
use super::dotstuff::{self, DotStuffer, WireStuffer};
use super::error::{Error, Result};
use super::reply::{Reply, ReplyParser};
use super::state::{self, Input, State};

/// Closed/aborted reason: the reply to QUIT arrived.
pub const REASON_QUIT: &str = "quit";
/// Closed/aborted reason: the server closed the connection.
pub const REASON_EOF: &str = "eof";
/// Closed/aborted reason: the server sent 421 (service not available, closing).
pub const REASON_421: &str = "421";
/// Closed/aborted reason prefix: the server broke the protocol.
pub const REASON_PROTOCOL_ERROR: &str = "protocol error";

/// The bytes of a message, possibly in several chunks (a MIME message shares its big
/// parts between messages instead of joining them).
pub trait MessageBytes: Send + Sync {
    /// Total size in octets.
    fn len(&self) -> usize;
    /// True when there are no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Call `f` with each chunk, in order.
    fn for_each_chunk(&self, f: &mut dyn FnMut(&[u8]));
}

/// One contiguous buffer as [`MessageBytes`].
struct Flat<T>(T);

impl<T: AsRef<[u8]> + Send + Sync> MessageBytes for Flat<T> {
    fn len(&self) -> usize {
        self.0.as_ref().len()
    }
    fn for_each_chunk(&self, f: &mut dyn FnMut(&[u8])) {
        f(self.0.as_ref())
    }
}

/// A message body, shared without copying. Inside a [`Transaction`] it is always in wire
/// form (CRLF line ends, ending with CRLF).
#[derive(Clone)]
pub struct Body(Arc<dyn MessageBytes>);

impl Body {
    /// Wrap any owned byte container (a `Vec<u8>`, an `Arc<[u8]>`...).
    pub fn new<T: AsRef<[u8]> + Send + Sync + 'static>(bytes: T) -> Self {
        Body(Arc::new(Flat(bytes)))
    }

    /// Wrap a chunked source, such as an assembled MIME message.
    pub fn from_source(source: Arc<dyn MessageBytes>) -> Self {
        Body(source)
    }

    /// Size in octets.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Call `f` with each chunk, in order.
    pub fn for_each_chunk(&self, mut f: impl FnMut(&[u8])) {
        self.0.for_each_chunk(&mut f)
    }

    /// The bytes as one vector (copied).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        self.for_each_chunk(|c| v.extend_from_slice(c));
        v
    }

    /// Already in wire form?
    fn is_normalized(&self) -> bool {
        let mut check = dotstuff::LineEndCheck::default();
        self.for_each_chunk(|c| check.update(c));
        check.finish()
    }

    /// A normalized copy.
    fn normalized(&self) -> Body {
        let mut out = Vec::with_capacity(self.len() + self.len() / 32 + 2);
        let mut n = DotStuffer::normalizer();
        self.for_each_chunk(|c| n.encode(c, &mut out));
        n.finish(&mut out);
        Body::new(out)
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Body({} octets)", self.len())
    }
}

/// One message to send: the envelope and the body.
#[derive(Debug, Clone)]
pub struct Transaction {
    /// MAIL FROM (may be the null path).
    pub sender: Address,
    /// RCPT TO, at least one.
    pub recipients: Vec<Address>,
    /// The body, normalized (see [`dotstuff`]).
    pub body: Body,
    /// The message needs SMTPUTF8.
    pub smtputf8: bool,
    /// The body holds 8-bit data.
    pub eight_bit: bool,
}

impl Transaction {
    /// Validate the envelope and normalize the body's line ends (without copying when it is
    /// already in wire form). `smtputf8` is also set when an address is not ASCII.
    pub fn new<S: AsRef<str>>(
        sender: &str,
        recipients: &[S],
        body: Body,
        smtputf8: bool,
        eight_bit: bool,
    ) -> Result<Self> {
        let body = if body.is_normalized() {
            body
        } else {
            body.normalized()
        };
        Self::with_normalized_body(sender, recipients, body, smtputf8, eight_bit)
    }

    /// A transaction from a raw body: line ends normalized, `eight_bit` when any octet is
    /// not ASCII.
    pub fn from_raw<S: AsRef<str>>(sender: &str, recipients: &[S], body: &[u8]) -> Result<Self> {
        let eight_bit = !body.is_ascii();
        let body = match dotstuff::normalize(body) {
            std::borrow::Cow::Borrowed(b) => Body::new(Arc::<[u8]>::from(b)),
            std::borrow::Cow::Owned(v) => Body::new(v),
        };
        Self::with_normalized_body(sender, recipients, body, false, eight_bit)
    }

    /// A transaction whose body is already in wire form (only CRLF line ends, ending with
    /// CRLF), as every assembled MIME message is: the body is not scanned again. The
    /// envelope is still validated.
    pub fn from_wire_form<S: AsRef<str>>(
        sender: &str,
        recipients: &[S],
        body: Body,
        smtputf8: bool,
        eight_bit: bool,
    ) -> Result<Self> {
        debug_assert!(body.is_normalized(), "body not in wire form");
        Self::with_normalized_body(sender, recipients, body, smtputf8, eight_bit)
    }

    fn with_normalized_body<S: AsRef<str>>(
        sender: &str,
        recipients: &[S],
        body: Body,
        smtputf8: bool,
        eight_bit: bool,
    ) -> Result<Self> {
        let sender = Address::sender(sender, "sender")?;
        if recipients.is_empty() {
            return Err(Error::invalid("no recipients", "recipients"));
        }
        let recipients = recipients
            .iter()
            .enumerate()
            .map(|(i, r)| Address::parse(r.as_ref(), false, || format!("recipients[{i}]")))
            .collect::<Result<Vec<_>>>()?;
        let smtputf8 =
            smtputf8 || sender.needs_smtputf8() || recipients.iter().any(Address::needs_smtputf8);
        Ok(Transaction {
            sender,
            recipients,
            body,
            smtputf8,
            eight_bit,
        })
    }
}

/// What the connection reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Greeting and EHLO/HELO done (again after STARTTLS).
    Ready {
        /// The 220 greeting.
        greeting: Reply,
        /// What EHLO offered (all off after HELO).
        capabilities: Capabilities,
    },
    /// 220 to STARTTLS: upgrade the transport, then call `tls_established`.
    StartTlsReady,
    /// AUTH answered 2xx.
    AuthSucceeded(Reply),
    /// AUTH answered 4xx/5xx (or was cancelled).
    AuthFailed(Reply),
    /// The greeting, EHLO/HELO or STARTTLS was refused; the connection is unusable.
    CommandFailed {
        /// `"greeting"`, `"ehlo"`, `"helo"` or `"starttls"`.
        command: &'static str,
        /// The refusal.
        reply: Reply,
    },
    /// The outcome of one transaction.
    TransactionResult {
        /// The caller's id.
        txn_id: u64,
        /// Reply to MAIL.
        mail_reply: Reply,
        /// Replies to RCPT, in submit order (`None` if never sent).
        rcpt_replies: Vec<Option<Reply>>,
        /// Reply to the end of data, or to a refused DATA; `None` without a data phase.
        data_reply: Option<Reply>,
    },
    /// The connection ended before this transaction was resolved.
    TransactionAborted {
        /// The caller's id.
        txn_id: u64,
        /// The final `.` / `BDAT LAST` had been handed out by `data_to_send`.
        end_of_data_sent: bool,
        /// Why (see the `REASON_*` constants).
        reason: String,
        /// The 421, when that is why.
        reply: Option<Reply>,
    },
    /// The reply to NOOP (the connection is alive).
    NoopReplied(Reply),
    /// The connection is over; sent last.
    Closed {
        /// Why (see the `REASON_*` constants).
        reason: String,
        /// The QUIT reply or the 421.
        reply: Option<Reply>,
        /// The protocol violation, when the server broke the protocol.
        error: Option<String>,
    },
}

/// Which command a reply answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The greeting.
    Greeting,
    /// EHLO.
    Ehlo,
    /// HELO.
    Helo,
    /// STARTTLS.
    StartTls,
    /// An AUTH line (the command or a response to 334).
    Auth,
    /// MAIL FROM.
    Mail,
    /// RCPT TO (`Expect::rcpt` says which).
    Rcpt,
    /// DATA (354 expected).
    Data,
    /// The `.` ending the data.
    DataEnd,
    /// BDAT LAST.
    Bdat,
    /// RSET.
    Rset,
    /// NOOP.
    Noop,
    /// QUIT.
    Quit,
}

/// One entry of the expected-reply queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    /// The command answered.
    pub kind: Kind,
    /// The transaction's sequence number (0 for session commands).
    pub seq: u64,
    /// The recipient index for [`Kind::Rcpt`].
    pub rcpt: u32,
}

impl Expect {
    fn session(kind: Kind) -> Self {
        Expect {
            kind,
            seq: 0,
            rcpt: 0,
        }
    }
}

/// A submitted transaction and what has been learnt about it.
#[derive(Debug)]
struct Txn {
    txn_id: u64,
    /// Order of writing (0 while only pending); eod bookkeeping compares these.
    seq: u64,
    tx: Transaction,
    mail_reply: Option<Reply>,
    rcpt_replies: Vec<Option<Reply>>,
    data_reply: Option<Reply>,
    accepted: usize,
    /// The `.`/`BDAT LAST` was written to the output buffer.
    eod_written: bool,
    /// The end-of-data (or BDAT LAST) reply arrived: the server's transaction is over.
    data_ended: bool,
    /// MAIL got 503: the server may still have been inside an earlier transaction.
    nested: bool,
    /// Already retried once after a 503 to MAIL.
    retried: bool,
}

impl Txn {
    fn new(txn_id: u64, tx: Transaction) -> Self {
        let n = tx.recipients.len();
        Txn {
            txn_id,
            seq: 0,
            tx,
            mail_reply: None,
            rcpt_replies: vec![None; n],
            data_reply: None,
            accepted: 0,
            eod_written: false,
            data_ended: false,
            nested: false,
            retried: false,
        }
    }

    fn reset_for_retry(&mut self) {
        let n = self.tx.recipients.len();
        *self = Txn {
            retried: true,
            ..Txn::new(self.txn_id, self.tx.clone())
        };
        debug_assert_eq!(self.rcpt_replies.len(), n);
    }
}

/// The sans-IO SMTP client connection; see the module documentation.
#[derive(Debug)]
pub struct ClientConnection {
    state: State,
    local: Domain,
    parser: ReplyParser,
    out: Vec<u8>,
    greeting: Option<Reply>,
    caps: Option<Capabilities>,
    tls_active: bool,
    expected: VecDeque<Expect>,
    /// Submitted, nothing written yet.
    pending: VecDeque<Txn>,
    /// Commands written; the front is the one replies are for.
    active: VecDeque<Txn>,
    /// A DATA is outstanding: nothing may be written before its 354 (RFC 2920 3.1).
    awaiting_data: bool,
    needs_rset: bool,
    quit_requested: bool,
    quit_sent: bool,
    auth: Option<AuthExchange>,
    next_seq: u64,
    /// Highest seq whose end of data is in `out` / has been handed out.
    eod_written_upto: u64,
    eod_sent_upto: u64,
    bytes_in_flight: usize,
}

impl ClientConnection {
    /// A connection that will greet as `local_hostname`, refusing replies over
    /// `max_reply_bytes`.
    pub fn new(local_hostname: &str, max_reply_bytes: usize) -> Result<Self> {
        Ok(ClientConnection {
            state: State::Greeting,
            local: Domain::new(local_hostname)?,
            parser: ReplyParser::new(max_reply_bytes),
            out: Vec::new(),
            greeting: None,
            caps: None,
            tls_active: false,
            expected: VecDeque::from([Expect::session(Kind::Greeting)]),
            pending: VecDeque::new(),
            active: VecDeque::new(),
            awaiting_data: false,
            needs_rset: false,
            quit_requested: false,
            quit_sent: false,
            auth: None,
            next_seq: 1,
            eod_written_upto: 0,
            eod_sent_upto: 0,
            bytes_in_flight: 0,
        })
    }

    // ---- queries ------------------------------------------------------------------------

    /// The session state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The capabilities of the last EHLO/HELO (`None` before, and right after STARTTLS).
    pub fn capabilities(&self) -> Option<&Capabilities> {
        self.caps.as_ref()
    }

    /// `tls_established` was called.
    pub fn tls_active(&self) -> bool {
        self.tls_active
    }

    /// Transactions submitted and not resolved.
    pub fn in_flight(&self) -> usize {
        self.pending.len() + self.active.len()
    }

    /// Body octets of the transactions in flight.
    pub fn bytes_in_flight(&self) -> usize {
        self.bytes_in_flight
    }

    /// Ready for submit/auth/starttls.
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready && !self.quit_requested
    }

    /// Closed or in the error state.
    pub fn is_closed(&self) -> bool {
        !state::is_live(self.state)
    }

    /// The replies still expected, in order (for tests and debugging).
    pub fn expected(&self) -> impl Iterator<Item = &Expect> {
        self.expected.iter()
    }

    fn idle(&self) -> bool {
        self.expected.is_empty() && self.pending.is_empty() && self.active.is_empty()
    }

    fn check_live(&self) -> Result<()> {
        match self.state {
            State::Closed => Err(Error::local("the connection is closed")),
            State::Error => Err(Error::local("the connection is in the error state")),
            _ => Ok(()),
        }
    }

    // ---- output -------------------------------------------------------------------------

    /// Hand the bytes to write to `f` (possibly empty), then drain them. From here on the
    /// ends of data they contain count as sent.
    pub fn with_data_to_send<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> R {
        let r = f(&self.out);
        self.eod_sent_upto = self.eod_written_upto;
        self.out.clear();
        if self.out.capacity() > (4 << 20) {
            self.out.shrink_to(64 << 10);
        }
        r
    }

    /// The bytes to write now, drained.
    pub fn data_to_send(&mut self) -> Vec<u8> {
        self.with_data_to_send(<[u8]>::to_vec)
    }

    // ---- user calls ---------------------------------------------------------------------

    /// Queue one transaction (only when ready). Checks SMTPUTF8 and SIZE against the
    /// server's capabilities before anything is queued.
    pub fn submit(&mut self, txn_id: u64, tx: Transaction) -> Result<()> {
        self.check_live()?;
        if self.state != State::Ready {
            return Err(Error::local(format!(
                "submit() in state {:?}, not Ready",
                self.state
            )));
        }
        if self.quit_requested {
            return Err(Error::local("submit() after quit()"));
        }
        let caps = self
            .caps
            .as_ref()
            .ok_or_else(|| Error::local("no capabilities"))?;
        if tx.smtputf8 && !caps.smtputf8 {
            return Err(Error::Smtputf8Required(
                "the message needs SMTPUTF8 and the server does not offer it".into(),
            ));
        }
        let size = tx.body.len();
        if let Some(limit) = caps.size {
            if limit > 0 && size as u64 > limit {
                return Err(Error::invalid(
                    format!("message of {size} octets exceeds the server's SIZE limit of {limit}"),
                    "body",
                ));
            }
        }
        self.bytes_in_flight += size;
        self.pending.push_back(Txn::new(txn_id, tx));
        self.pump();
        Ok(())
    }

    /// Queue STARTTLS (only when ready, idle, offered and not yet active).
    pub fn starttls(&mut self) -> Result<()> {
        self.check_live()?;
        if self.state != State::Ready || !self.idle() || self.quit_requested {
            return Err(Error::local("starttls() needs a ready, idle connection"));
        }
        if self.tls_active {
            return Err(Error::local("TLS is already active"));
        }
        if !self.caps.as_ref().is_some_and(|c| c.starttls) {
            return Err(Error::local("the server does not offer STARTTLS"));
        }
        self.transition(Input::StartTlsCalled)?;
        command::starttls(&mut self.out);
        self.expected.push_back(Expect::session(Kind::StartTls));
        Ok(())
    }

    /// Queue NOOP (only when ready and idle): a health check for a connection that sat
    /// unused, answered by [`Event::NoopReplied`]. Transactions submitted meanwhile are
    /// written after it.
    pub fn noop(&mut self) -> Result<()> {
        self.check_live()?;
        if self.state != State::Ready || !self.idle() || self.quit_requested {
            return Err(Error::local("noop() needs a ready, idle connection"));
        }
        command::noop(&mut self.out);
        self.expected.push_back(Expect::session(Kind::Noop));
        Ok(())
    }

    /// The transport is TLS now: forget the capabilities, send EHLO again.
    pub fn tls_established(&mut self) -> Result<()> {
        self.check_live()?;
        if self.state != State::TlsHandshake {
            return Err(Error::local(
                "tls_established() without a STARTTLS go-ahead",
            ));
        }
        self.transition(Input::TlsEstablished)?;
        self.tls_active = true;
        self.caps = None;
        self.parser.clear();
        command::ehlo(&mut self.out, &self.local);
        self.expected.push_back(Expect::session(Kind::Ehlo));
        Ok(())
    }

    /// Queue AUTH. Credentials are emitted only over TLS or with `allow_plaintext`.
    pub fn auth(
        &mut self,
        mechanism: &str,
        username: &str,
        secret: &str,
        allow_plaintext: bool,
    ) -> Result<()> {
        self.check_live()?;
        if self.state != State::Ready || !self.idle() || self.quit_requested {
            return Err(Error::local("auth() needs a ready, idle connection"));
        }
        let mech = Mechanism::parse(mechanism)
            .ok_or_else(|| Error::local(format!("unsupported AUTH mechanism {mechanism:?}")))?;
        if !self
            .caps
            .as_ref()
            .is_some_and(|c| c.offers_auth(mech.name()))
        {
            return Err(Error::local(format!(
                "the server does not offer AUTH {}",
                mech.name()
            )));
        }
        // Never put credentials on a cleartext wire unless the caller said so explicitly.
        if !self.tls_active && !allow_plaintext {
            return Err(Error::local(
                "refusing to send credentials without TLS (allow_plaintext=False)",
            ));
        }
        let mut exchange = AuthExchange::new(mech, username, secret)?;
        self.transition(Input::AuthCalled)?;
        exchange.start(&mut self.out);
        self.auth = Some(exchange);
        self.expected.push_back(Expect::session(Kind::Auth));
        Ok(())
    }

    /// Queue QUIT after everything already queued.
    pub fn quit(&mut self) -> Result<()> {
        self.check_live()?;
        if self.quit_requested {
            return Ok(());
        }
        self.quit_requested = true;
        match self.state {
            State::Failed => self.write_quit(),
            State::Ready => self.pump(),
            _ => {} // written when the session reaches Ready or Failed
        }
        Ok(())
    }

    // ---- input --------------------------------------------------------------------------

    /// Feed bytes from the server (`b""` = the server closed the connection). Never fails:
    /// a misbehaving server ends the connection with events.
    pub fn receive_data(&mut self, data: &[u8]) -> Vec<Event> {
        // Room for the usual read's events (a transaction result or two) without growing.
        let mut events = Vec::with_capacity(4);
        if !state::is_live(self.state) {
            return events;
        }
        if data.is_empty() {
            self.end(REASON_EOF.into(), None, None, &mut events);
            return events;
        }
        if self.state == State::TlsHandshake {
            // Plaintext after the 220 to STARTTLS (CVE-2011-0411 class): never processed.
            return events;
        }
        self.parser.feed(data);
        loop {
            match self.parser.next_reply() {
                Ok(Some(reply)) => {
                    self.handle_reply(reply, &mut events);
                    if !state::is_live(self.state) || self.state == State::TlsHandshake {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    self.protocol_error(e.to_string(), &mut events);
                    break;
                }
            }
        }
        events
    }

    /// End the connection because of a bug of ours (used by the bindings if a panic was
    /// caught): every transaction is aborted and the state becomes the error state.
    pub fn internal_error(&mut self, message: &str) -> Vec<Event> {
        let mut events = Vec::new();
        if state::is_live(self.state) {
            self.protocol_error(format!("internal error: {message}"), &mut events);
        }
        self.state = State::Error;
        events
    }

    // ---- internals ----------------------------------------------------------------------

    fn transition(&mut self, input: Input) -> Result<()> {
        match state::next(self.state, input) {
            Some(next) => {
                self.state = next;
                Ok(())
            }
            None => Err(Error::local(format!(
                "{input:?} is not allowed in state {:?}",
                self.state
            ))),
        }
    }

    fn protocol_error(&mut self, message: String, events: &mut Vec<Event>) {
        let reason = format!("{REASON_PROTOCOL_ERROR}: {message}");
        self.end(reason, None, Some(message), events);
    }

    /// Abort everything unresolved and close.
    fn end(
        &mut self,
        reason: String,
        reply: Option<Reply>,
        error: Option<String>,
        events: &mut Vec<Event>,
    ) {
        for txn in self.active.drain(..).chain(self.pending.drain(..)) {
            events.push(Event::TransactionAborted {
                txn_id: txn.txn_id,
                end_of_data_sent: txn.eod_written && txn.seq <= self.eod_sent_upto,
                reason: reason.clone(),
                reply: reply.clone(),
            });
        }
        let input = if error.is_some() {
            Input::ProtocolViolation
        } else {
            Input::ConnectionEnded
        };
        self.state = state::next(self.state, input).unwrap_or(State::Error);
        events.push(Event::Closed {
            reason,
            reply,
            error,
        });
        self.expected.clear();
        self.out.clear();
        self.parser.clear();
        self.auth = None;
        self.bytes_in_flight = 0;
    }

    fn handle_reply(&mut self, reply: Reply, events: &mut Vec<Event>) {
        let Some(exp) = self.expected.pop_front() else {
            if reply.code == 421 {
                self.end(REASON_421.into(), Some(reply), None, events);
            } else {
                self.protocol_error(format!("unexpected reply \"{reply}\""), events);
            }
            return;
        };
        if reply.code == 421 && exp.kind != Kind::Quit {
            // RFC 5321 3.8: the server is shutting the connection down, whatever we asked.
            self.end(REASON_421.into(), Some(reply), None, events);
            return;
        }
        match exp.kind {
            Kind::Greeting | Kind::Ehlo | Kind::Helo | Kind::StartTls | Kind::Auth => {
                self.session_reply(exp.kind, reply, events)
            }
            Kind::Mail | Kind::Rcpt | Kind::Data | Kind::DataEnd | Kind::Bdat => {
                self.txn_reply(exp, reply, events)
            }
            Kind::Rset => self.pump(),
            Kind::Noop => {
                events.push(Event::NoopReplied(reply));
                self.pump();
            }
            Kind::Quit => self.end(REASON_QUIT.into(), Some(reply), None, events),
        }
    }

    fn session_reply(&mut self, kind: Kind, reply: Reply, events: &mut Vec<Event>) {
        if let Err(e) = self.transition(state::reply_input(reply.code)) {
            self.protocol_error(e.to_string(), events);
            return;
        }
        match (kind, self.state) {
            (Kind::Greeting, State::Ehlo) => {
                self.greeting = Some(reply);
                command::ehlo(&mut self.out, &self.local);
                self.expected.push_back(Expect::session(Kind::Ehlo));
            }
            (Kind::Ehlo, State::Helo) => {
                command::helo(&mut self.out, &self.local);
                self.expected.push_back(Expect::session(Kind::Helo));
            }
            (Kind::Ehlo | Kind::Helo, State::Ready) => {
                let caps = if kind == Kind::Ehlo {
                    Capabilities::from_ehlo(&reply)
                } else {
                    Capabilities::helo()
                };
                self.caps = Some(caps.clone());
                let greeting = self.greeting.clone().unwrap_or_else(|| Reply::new(220, ""));
                events.push(Event::Ready {
                    greeting,
                    capabilities: caps,
                });
                self.pump();
            }
            (Kind::StartTls, State::TlsHandshake) => {
                // Anything the server sent after its 220 is discarded, never parsed.
                self.parser.clear();
                events.push(Event::StartTlsReady);
            }
            (Kind::Auth, State::Auth) => match self.auth.as_mut() {
                Some(exchange) => {
                    exchange.respond(&reply.text, &mut self.out);
                    self.expected.push_back(Expect::session(Kind::Auth));
                }
                None => self.protocol_error("AUTH challenge without an exchange".into(), events),
            },
            (Kind::Auth, State::Ready) => {
                self.auth = None;
                events.push(if reply.is_completion() {
                    Event::AuthSucceeded(reply)
                } else {
                    Event::AuthFailed(reply)
                });
                self.pump();
            }
            (_, State::Failed) => {
                let command = match kind {
                    Kind::Greeting => "greeting",
                    Kind::Ehlo => "ehlo",
                    Kind::Helo => "helo",
                    _ => "starttls",
                };
                events.push(Event::CommandFailed { command, reply });
                if self.quit_requested {
                    self.write_quit();
                }
            }
            (kind, state) => {
                self.protocol_error(format!("reply to {kind:?} led to state {state:?}"), events)
            }
        }
    }

    fn lockstep(&self) -> bool {
        !self.caps.as_ref().is_some_and(|c| c.pipelining)
    }

    fn chunking(&self) -> bool {
        self.caps.as_ref().is_some_and(|c| c.chunking)
    }

    fn txn_reply(&mut self, exp: Expect, reply: Reply, events: &mut Vec<Event>) {
        let lockstep = self.lockstep();
        let Some(txn) = self.active.front_mut().filter(|t| t.seq == exp.seq) else {
            self.protocol_error(format!("reply for unknown transaction {}", exp.seq), events);
            return;
        };
        match exp.kind {
            Kind::Mail => {
                let ok = reply.is_completion();
                txn.nested = reply.code == 503;
                txn.mail_reply = Some(reply);
                if lockstep {
                    match txn.tx.recipients.first() {
                        Some(first) if ok => {
                            command::rcpt(&mut self.out, first);
                            self.expected.push_back(Expect {
                                kind: Kind::Rcpt,
                                seq: exp.seq,
                                rcpt: 0,
                            });
                        }
                        _ => self.resolve_front(events),
                    }
                }
            }
            Kind::Rcpt => {
                let i = exp.rcpt as usize;
                if reply.is_completion() {
                    txn.accepted += 1;
                }
                if let Some(slot) = txn.rcpt_replies.get_mut(i) {
                    *slot = Some(reply);
                }
                if lockstep {
                    if let Some(next) = txn.tx.recipients.get(i + 1) {
                        command::rcpt(&mut self.out, next);
                        let rcpt = exp.rcpt + 1;
                        self.expected.push_back(Expect {
                            kind: Kind::Rcpt,
                            seq: exp.seq,
                            rcpt,
                        });
                    } else if txn.accepted > 0 {
                        self.write_data_phase();
                    } else {
                        self.resolve_front(events);
                    }
                }
            }
            Kind::Data => {
                self.awaiting_data = false;
                if reply.code == 354 {
                    // RFC 2920 3.1: the body, its end and the next group in one write. With
                    // no recipient accepted (the server said 354 anyway) only the end of
                    // data is sent, which closes the data phase properly.
                    if txn.accepted > 0 {
                        let body = &txn.tx.body;
                        let out = &mut self.out;
                        out.reserve(body.len() + body.len() / 64 + 5);
                        // Every transaction body is in wire form (see `Transaction::new`).
                        let mut stuffer = WireStuffer::new();
                        body.for_each_chunk(|c| stuffer.encode(c, out));
                        stuffer.finish(out);
                    }
                    command::end_of_data(&mut self.out);
                    txn.eod_written = true;
                    self.eod_written_upto = exp.seq;
                    self.expected.push_back(Expect {
                        kind: Kind::DataEnd,
                        seq: exp.seq,
                        rcpt: 0,
                    });
                    self.pump();
                } else {
                    txn.data_reply = Some(reply);
                    self.resolve_front(events);
                }
            }
            Kind::DataEnd | Kind::Bdat => {
                txn.data_reply = Some(reply);
                txn.data_ended = true;
                self.resolve_front(events);
            }
            _ => {}
        }
    }

    /// The front transaction is resolved: report it (or retry it once, see the module doc).
    fn resolve_front(&mut self, events: &mut Vec<Event>) {
        let Some(mut txn) = self.active.pop_front() else {
            return;
        };
        let mail_ok = txn.mail_reply.as_ref().is_some_and(Reply::is_completion);
        if mail_ok && !txn.data_ended {
            // The server may still be inside this transaction.
            self.needs_rset = true;
        }
        let delivered = txn.data_ended && txn.data_reply.as_ref().is_some_and(Reply::is_completion);
        if txn.nested && !txn.retried && !delivered {
            self.needs_rset = true;
            txn.reset_for_retry();
            self.pending.push_front(txn);
        } else {
            self.bytes_in_flight = self.bytes_in_flight.saturating_sub(txn.tx.body.len());
            events.push(Event::TransactionResult {
                txn_id: txn.txn_id,
                mail_reply: txn.mail_reply.unwrap_or_else(|| Reply::new(0, "")),
                rcpt_replies: txn.rcpt_replies,
                data_reply: txn.data_reply,
            });
        }
        self.pump();
    }

    /// Write what may be written now.
    fn pump(&mut self) {
        if self.state != State::Ready || self.awaiting_data {
            return;
        }
        let lockstep = self.lockstep();
        let chunking = self.chunking();
        while !lockstep || self.expected.is_empty() {
            let Some(mut txn) = self.pending.pop_front() else {
                break;
            };
            if self.needs_rset {
                self.needs_rset = false;
                command::rset(&mut self.out);
                self.expected.push_back(Expect::session(Kind::Rset));
                if lockstep {
                    self.pending.push_front(txn);
                    return;
                }
            }
            txn.seq = self.next_seq;
            self.next_seq += 1;
            let seq = txn.seq;
            let caps = self.caps.as_ref();
            let params = MailParams {
                size: caps.and_then(|c| c.size).map(|_| txn.tx.body.len()),
                eight_bit_mime: txn.tx.eight_bit && caps.is_some_and(|c| c.eight_bit_mime),
                smtputf8: txn.tx.smtputf8,
            };
            command::mail(&mut self.out, &txn.tx.sender, params);
            self.expected.push_back(Expect {
                kind: Kind::Mail,
                seq,
                rcpt: 0,
            });
            if lockstep {
                self.active.push_back(txn);
                return;
            }
            for (i, r) in txn.tx.recipients.iter().enumerate() {
                command::rcpt(&mut self.out, r);
                self.expected.push_back(Expect {
                    kind: Kind::Rcpt,
                    seq,
                    rcpt: i as u32,
                });
            }
            self.active.push_back(txn);
            self.write_data_phase();
            if !chunking {
                return; // wait for the 354
            }
        }
        if self.quit_requested
            && self.pending.is_empty()
            && !self.awaiting_data
            && (!lockstep || self.expected.is_empty())
        {
            self.write_quit();
        }
    }

    /// DATA, or BDAT LAST with the body, for the last written transaction.
    fn write_data_phase(&mut self) {
        let chunking = self.chunking();
        let Some(txn) = self.active.back_mut() else {
            return;
        };
        if chunking {
            let out = &mut self.out;
            out.reserve(txn.tx.body.len() + 32);
            command::bdat_last(out, txn.tx.body.len());
            txn.tx.body.for_each_chunk(|c| out.extend_from_slice(c));
            txn.eod_written = true;
            self.eod_written_upto = txn.seq;
            self.expected.push_back(Expect {
                kind: Kind::Bdat,
                seq: txn.seq,
                rcpt: 0,
            });
        } else {
            command::data(&mut self.out);
            self.awaiting_data = true;
            self.expected.push_back(Expect {
                kind: Kind::Data,
                seq: txn.seq,
                rcpt: 0,
            });
        }
    }

    fn write_quit(&mut self) {
        if !self.quit_sent {
            self.quit_sent = true;
            command::quit(&mut self.out);
            self.expected.push_back(Expect::session(Kind::Quit));
        }
    }
}
