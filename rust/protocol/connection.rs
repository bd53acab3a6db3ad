//! [`ClientConnection`]: the sans-IO SMTP client, one per TCP connection.
//!
//! The caller feeds server bytes to [`receive_data`](ClientConnection::receive_data), gets
//! [`Event`]s back, and writes whatever [`take_data_to_send`](ClientConnection::take_data_to_send)
//! hands it. Every command written appends an [`Expect`] to a queue; replies arrive in
//! command order (RFC 2920 3.1), so the front of the queue always says which command,
//! transaction and recipient a reply answers.
//!
//! # Tags
//! Each transaction is submitted with the caller's tag (`T`: in the Python binding, the
//! batch it belongs to and the message's index) and comes back in exactly one event that
//! carries it: [`Event::TransactionResult`], [`Event::TransactionAborted`], or, for a
//! transaction submitted `count_only` whose every recipient was accepted,
//! [`Event::Accepted`], which counts consecutive such transactions of one batch together
//! (see [`Tag::same_batch`]) so a caller that only counts makes no object per message.
//!
//! # Framing
//! Chosen from the EHLO capabilities:
//! * **CHUNKING + PIPELINING**: `MAIL`, `RCPT`..., then `BDAT <n> LAST` + the raw body.
//!   With the default `data_window` of 1, a `BDAT LAST` goes out once every earlier command
//!   is answered, together with the next transaction's `MAIL` and `RCPT`s: one round trip
//!   per message, as with DATA (whose 354 is the same synchronisation point), at most one
//!   message in doubt if the connection breaks, and no body sent for a transaction whose
//!   recipients were all refused. A larger window pipelines up to that many `BDAT LAST`s
//!   without waiting (fewer round trips; more messages in doubt when a connection breaks).
//! * **PIPELINING**: `MAIL`+`RCPT`...+`DATA` as one group; after the 354 the dot-stuffed
//!   body, `.` and the next transaction's group go out in one write. When DATA is refused
//!   nothing of the body is sent.
//! * **neither** (CHUNKING alone included): lock-step, one command, then its reply.
//!
//! # Never a false "accepted"
//! A recipient is accepted only when its `RCPT` and its transaction's end of data (`.` or
//! `BDAT ... LAST`) were answered 2xx ([`Outcome::verdict`]). Because a pipelined reply is
//! matched to its command only by position, a server that sends one reply too many (or
//! too few) would shift every later reply onto the wrong command; so a reply the command
//! it lands on cannot have is a protocol error of the server, which ends the connection:
//! * a reply of the wrong class: anything but 354 / 4xx / 5xx to `DATA`; 3xx to `MAIL`,
//!   `RCPT`, `RSET`, `NOOP` or an end of data;
//! * a 2xx to an end of data whose enhanced status code is an addressing one (`2.1.x`,
//!   RFC 3463 3.2: the reply to a `MAIL` or `RCPT`, out of step);
//! * a reply when no command is waiting, or before the command it would answer was handed
//!   out by [`take_data_to_send`](ClientConnection::take_data_to_send) (a server cannot
//!   answer what it has not received).
//!
//! Transactions not yet resolved are then aborted, each saying whether its end of data
//! had gone out (the caller reports those in doubt and sends the others again).
//!
//! # Reply deadlines
//! The core has no clock: the caller passes its time to `take_data_to_send`, which stamps
//! the commands handed out, and [`oldest_unanswered`](ClientConnection::oldest_unanswered)
//! tells when the oldest command still waiting for its reply was sent. A reply must be
//! complete within the caller's timeout of that moment; bytes trickling in do not extend
//! it.
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
//! EOF, a 421 in place of any reply (or when none is expected), or a protocol error ends
//! the connection: every unresolved transaction gets a [`Event::TransactionAborted`], then
//! one [`Event::Closed`]. A protocol error is sticky.

use std::collections::VecDeque;

use super::auth::{AuthExchange, Mechanism};
use super::capabilities::Capabilities;
use super::command::{self, Domain, MailParams};
use super::error::{Error, Result};
use super::output::Output;
use super::reply::{Reply, ReplyParser};
use super::state::{self, Input, State};
pub use super::transaction::{Body, MessageBytes, Transaction};

/// Closed/aborted reason: the reply to QUIT arrived.
pub const REASON_QUIT: &str = "quit";
/// Closed/aborted reason: the server closed the connection.
pub const REASON_EOF: &str = "eof";
/// Closed/aborted reason: the server sent 421 (service not available, closing).
pub const REASON_421: &str = "421";
/// Closed/aborted reason prefix: the server broke the protocol.
pub const REASON_PROTOCOL_ERROR: &str = "protocol error";

/// What a caller attaches to each transaction.
pub trait Tag {
    /// True when `self` and `other` belong to the same batch, so that count-only
    /// acceptances of both may be reported in one [`Event::Accepted`].
    fn same_batch(&self, other: &Self) -> bool;
}

/// Plain numbers as tags (tests, simple callers): equal numbers are one batch.
impl Tag for u64 {
    fn same_batch(&self, other: &Self) -> bool {
        self == other
    }
}

/// Settings of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// A reply longer than this is a protocol error.
    pub max_reply_bytes: usize,
    /// With CHUNKING: at most this many ends of data (`BDAT ... LAST`) unanswered at once.
    pub data_window: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_reply_bytes: 65536,
            data_window: 1,
        }
    }
}

/// The replies of one resolved transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Reply to MAIL.
    pub mail_reply: Reply,
    /// Replies to RCPT, in submit order (`None` if never sent).
    pub rcpt_replies: Vec<Option<Reply>>,
    /// Reply to the end of data, or to a refused DATA; `None` without a data phase.
    pub data_reply: Option<Reply>,
    /// The end of data was answered 2xx: the server took the message.
    pub delivered: bool,
}

/// What decided one recipient of a resolved transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// RCPT and the end of data were answered 2xx (the end-of-data reply).
    Accepted(&'a Reply),
    /// MAIL, RCPT, DATA or the end of data was refused (4xx or 5xx: that reply).
    Refused(&'a Reply),
    /// No reply decided it (nothing was refused, yet no end of data was answered).
    Unanswered,
}

impl Outcome {
    /// The verdict for recipient `i`: the first refusal among MAIL, its RCPT and the data
    /// phase, else acceptance by the end of data's 2xx.
    pub fn verdict(&self, i: usize) -> Verdict<'_> {
        if !self.mail_reply.is_completion() {
            return Verdict::Refused(&self.mail_reply);
        }
        match self.rcpt_replies.get(i) {
            Some(Some(r)) if !r.is_completion() => return Verdict::Refused(r),
            Some(Some(_)) => {}
            _ => return Verdict::Unanswered,
        }
        match &self.data_reply {
            Some(r) if self.delivered => Verdict::Accepted(r),
            Some(r) if !r.is_completion() => Verdict::Refused(r),
            _ => Verdict::Unanswered,
        }
    }

    /// Every recipient accepted.
    pub fn all_accepted(&self) -> bool {
        self.delivered
            && self.mail_reply.is_completion()
            && self
                .rcpt_replies
                .iter()
                .all(|r| r.as_ref().is_some_and(Reply::is_completion))
    }
}

/// What the connection reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<T> {
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
    /// Count-only transactions of one batch, every recipient accepted.
    Accepted {
        /// The tag of the first of them.
        tag: T,
        /// How many transactions.
        transactions: usize,
        /// How many recipients in all.
        recipients: usize,
    },
    /// The outcome of one transaction (not all accepted, or not submitted count-only).
    TransactionResult {
        /// The caller's tag.
        tag: T,
        /// The replies.
        outcome: Outcome,
    },
    /// The connection ended before this transaction was resolved.
    TransactionAborted {
        /// The caller's tag.
        tag: T,
        /// The final `.` / `BDAT LAST` had been handed out: the server may have the message.
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

impl Kind {
    /// How a person would name the command (in timeout and protocol error texts).
    pub fn command(self) -> &'static str {
        match self {
            Kind::Greeting => "the greeting",
            Kind::Ehlo => "EHLO",
            Kind::Helo => "HELO",
            Kind::StartTls => "STARTTLS",
            Kind::Auth => "AUTH",
            Kind::Mail => "MAIL FROM",
            Kind::Rcpt => "RCPT TO",
            Kind::Data => "DATA",
            Kind::DataEnd => "the end of data",
            Kind::Bdat => "BDAT LAST",
            Kind::Rset => "RSET",
            Kind::Noop => "NOOP",
            Kind::Quit => "QUIT",
        }
    }

    fn ends_data(self) -> bool {
        matches!(self, Kind::DataEnd | Kind::Bdat)
    }
}

/// Why `reply` cannot be the answer to a `kind` command, if it cannot (see the module
/// documentation, "Never a false accepted"). Session commands are judged by the state
/// table instead.
fn misplaced(kind: Kind, reply: &Reply) -> Option<String> {
    let class = reply.code / 100;
    let fits = match kind {
        // RFC 5321 4.3.2: MAIL, RCPT, RSET, NOOP: 2xx, 4xx, 5xx only.
        Kind::Mail | Kind::Rcpt | Kind::Rset | Kind::Noop => class != 3,
        // DATA: I: 354 -> data; E: 4xx, 5xx. A 2xx means no body will be read.
        Kind::Data => reply.code == 354 || class >= 4,
        // The end of data: 2xx, 4xx, 5xx; and a 2xx must not carry the addressing status
        // (RFC 3463 3.2, X.1.XXX) of a reply to MAIL or RCPT.
        Kind::DataEnd | Kind::Bdat => {
            class != 3 && !(class == 2 && reply.enhanced.is_some_and(|e| e.subject == 1))
        }
        _ => true,
    };
    (!fits).then(|| format!("reply \"{reply}\" to {}", kind.command()))
}

/// One entry of the expected-reply queue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expect {
    /// The command answered.
    pub kind: Kind,
    /// The transaction's sequence number (0 for session commands).
    pub seq: u64,
    /// The recipient index for [`Kind::Rcpt`].
    pub rcpt: u32,
    /// The output offset just past the command: it is sent once that much is handed out.
    pub end: u64,
    /// When it was handed out (the caller's clock), once it was.
    pub sent_at: Option<f64>,
}

/// A submitted transaction and what has been learnt about it.
#[derive(Debug)]
struct Txn<T> {
    tag: T,
    count_only: bool,
    /// Order of writing (0 while only pending).
    seq: u64,
    tx: Transaction,
    mail_reply: Option<Reply>,
    rcpt_replies: Vec<Option<Reply>>,
    data_reply: Option<Reply>,
    accepted: usize,
    /// MAIL and RCPTs are written; the data phase waits for the data window.
    data_held: bool,
    /// Output offset just past its `.`/`BDAT LAST`, once framed.
    eod_end: Option<u64>,
    /// The end-of-data (or BDAT LAST) reply arrived: the server's transaction is over.
    data_ended: bool,
    /// MAIL got 503: the server may still have been inside an earlier transaction.
    nested: bool,
    /// Already retried once after a 503 to MAIL.
    retried: bool,
}

impl<T> Txn<T> {
    fn new(tag: T, count_only: bool, tx: Transaction) -> Self {
        let n = tx.recipients.len();
        Txn {
            tag,
            count_only,
            seq: 0,
            tx,
            mail_reply: None,
            rcpt_replies: vec![None; n],
            data_reply: None,
            accepted: 0,
            data_held: false,
            eod_end: None,
            data_ended: false,
            nested: false,
            retried: false,
        }
    }

    fn reset_for_retry(self) -> Self {
        Txn {
            retried: true,
            ..Txn::new(self.tag, self.count_only, self.tx)
        }
    }
}

/// The sans-IO SMTP client connection; see the module documentation.
#[derive(Debug)]
pub struct ClientConnection<T> {
    state: State,
    options: Options,
    local: Domain,
    parser: ReplyParser,
    out: Output,
    greeting: Option<Reply>,
    caps: Option<Capabilities>,
    tls_active: bool,
    expected: VecDeque<Expect>,
    /// Submitted, nothing written yet.
    pending: VecDeque<Txn<T>>,
    /// Commands written; the front is the one replies are for.
    active: VecDeque<Txn<T>>,
    /// A DATA is outstanding: nothing may be written before its 354 (RFC 2920 3.1).
    awaiting_data: bool,
    /// Ends of data written whose reply has not come.
    eods_unanswered: usize,
    needs_rset: bool,
    quit_requested: bool,
    quit_sent: bool,
    auth: Option<AuthExchange>,
    next_seq: u64,
    bytes_in_flight: usize,
}

impl<T: Tag> ClientConnection<T> {
    /// A connection that will greet as `local_hostname`.
    pub fn new(local_hostname: &str, options: Options) -> Result<Self> {
        if options.data_window == 0 {
            return Err(Error::local("data_window must be at least 1"));
        }
        Ok(ClientConnection {
            state: State::Greeting,
            options,
            local: Domain::new(local_hostname)?,
            parser: ReplyParser::new(options.max_reply_bytes),
            out: Output::default(),
            greeting: None,
            caps: None,
            tls_active: false,
            expected: VecDeque::from([Expect {
                kind: Kind::Greeting,
                seq: 0,
                rcpt: 0,
                end: 0,
                sent_at: None,
            }]),
            pending: VecDeque::new(),
            active: VecDeque::new(),
            awaiting_data: false,
            eods_unanswered: 0,
            needs_rset: false,
            quit_requested: false,
            quit_sent: false,
            auth: None,
            next_seq: 1,
            bytes_in_flight: 0,
        })
    }

    // ---- queries ------------------------------------------------------------------------

    /// The session state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The settings.
    pub fn options(&self) -> Options {
        self.options
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

    /// Octets handed out by `take_data_to_send` since the connection began.
    pub fn bytes_sent(&self) -> u64 {
        self.out.handed()
    }

    /// True when framed bytes wait to be taken.
    pub fn has_data_to_send(&self) -> bool {
        !self.out.is_empty()
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

    /// The oldest command still waiting for its reply, and when it was handed out (by
    /// the caller's clock): its reply is late once the caller's timeout has passed since.
    /// `None` when nothing that was sent waits for a reply.
    pub fn oldest_unanswered(&self) -> Option<(Kind, f64)> {
        let front = self.expected.front()?;
        Some((front.kind, front.sent_at?))
    }

    /// The tags of every transaction in flight (for a garbage collector that must see
    /// what the tags reference).
    pub fn tags(&self) -> impl Iterator<Item = &T> {
        self.active.iter().chain(&self.pending).map(|t| &t.tag)
    }

    /// Drop every transaction in flight without reporting it and close: for tearing down
    /// a connection whose caller is gone (the garbage collector breaking a cycle).
    pub fn forget(&mut self) {
        self.active.clear();
        self.pending.clear();
        self.expected.clear();
        self.out.clear();
        self.state = State::Closed;
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

    /// Hand the next bytes to write to `f` (possibly empty), then count them as sent at
    /// `now` (the caller's clock, for reply deadlines). Everything framed comes out in one
    /// call, except that a large body comes out a piece at a time: call again while
    /// [`has_data_to_send`](Self::has_data_to_send) (when the transport takes more).
    pub fn take_data_to_send<R>(&mut self, now: f64, f: impl FnOnce(&[u8]) -> R) -> R {
        let r = self.out.take(f);
        let handed = self.out.handed();
        // Stamp what just went out; the stamped ones are at the front, so walk back from
        // the end only over unstamped entries.
        let unstamped = self
            .expected
            .iter()
            .rev()
            .take_while(|e| e.sent_at.is_none())
            .count();
        let from = self.expected.len() - unstamped;
        for e in self.expected.range_mut(from..) {
            if e.end > handed {
                break;
            }
            e.sent_at = Some(now);
        }
        r
    }

    /// The bytes to write now (all of them), drained; for tests and simple callers.
    pub fn data_to_send(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        loop {
            let piece = self.take_data_to_send(0.0, <[u8]>::to_vec);
            if piece.is_empty() {
                return all;
            }
            all.extend(piece);
        }
    }

    fn expect(&mut self, kind: Kind, seq: u64, rcpt: u32) {
        self.expected.push_back(Expect {
            kind,
            seq,
            rcpt,
            end: self.out.framed(),
            sent_at: None,
        });
    }

    // ---- user calls ---------------------------------------------------------------------

    /// Queue one transaction (only when ready). Checks SMTPUTF8 and SIZE against the
    /// server's capabilities before anything is queued. With `count_only`, a transaction
    /// whose every recipient is accepted is reported only in an [`Event::Accepted`] count.
    pub fn submit(&mut self, tag: T, tx: Transaction, count_only: bool) -> Result<()> {
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
        self.pending.push_back(Txn::new(tag, count_only, tx));
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
        self.out.write(command::starttls);
        self.expect(Kind::StartTls, 0, 0);
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
        self.out.write(command::noop);
        self.expect(Kind::Noop, 0, 0);
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
        let local = &self.local;
        self.out.write(|o| command::ehlo(o, local));
        self.expect(Kind::Ehlo, 0, 0);
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
        self.out.write(|o| exchange.start(o));
        self.auth = Some(exchange);
        self.expect(Kind::Auth, 0, 0);
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
    pub fn receive_data(&mut self, data: &[u8]) -> Vec<Event<T>> {
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

    /// The connection ends now for a reason of the caller's (a reply deadline passed, the
    /// transport failed): every unresolved transaction is aborted with `reason`, then
    /// [`Event::Closed`].
    pub fn abort(&mut self, reason: &str) -> Vec<Event<T>> {
        let mut events = Vec::new();
        if state::is_live(self.state) {
            self.end(reason.into(), None, None, &mut events);
        }
        events
    }

    /// End the connection because of a bug of ours (used by the bindings if a panic was
    /// caught): every transaction is aborted and the state becomes the error state.
    pub fn internal_error(&mut self, message: &str) -> Vec<Event<T>> {
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

    fn protocol_error(&mut self, message: String, events: &mut Vec<Event<T>>) {
        let reason = format!("{REASON_PROTOCOL_ERROR}: {message}");
        self.end(reason, None, Some(message), events);
    }

    /// Abort everything unresolved and close.
    fn end(
        &mut self,
        reason: String,
        reply: Option<Reply>,
        error: Option<String>,
        events: &mut Vec<Event<T>>,
    ) {
        let handed = self.out.handed();
        for txn in self.active.drain(..).chain(self.pending.drain(..)) {
            events.push(Event::TransactionAborted {
                tag: txn.tag,
                end_of_data_sent: txn.eod_end.is_some_and(|end| end <= handed),
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
        self.eods_unanswered = 0;
    }

    fn handle_reply(&mut self, reply: Reply, events: &mut Vec<Event<T>>) {
        let Some(exp) = self.expected.pop_front() else {
            if reply.code == 421 {
                self.end(REASON_421.into(), Some(reply), None, events);
            } else {
                self.protocol_error(format!("unexpected reply \"{reply}\""), events);
            }
            return;
        };
        if exp.end > self.out.handed() {
            // The server answered a command it cannot have received: a surplus reply
            // earlier in the stream shifted this one onto the wrong command.
            let message = format!(
                "reply \"{reply}\" before {} was sent (replies out of step)",
                exp.kind.command()
            );
            self.protocol_error(message, events);
            return;
        }
        if reply.code == 421 && exp.kind != Kind::Quit {
            // RFC 5321 3.8: the server is shutting the connection down, whatever we asked.
            self.end(REASON_421.into(), Some(reply), None, events);
            return;
        }
        if let Some(message) = misplaced(exp.kind, &reply) {
            self.protocol_error(message, events);
            return;
        }
        match exp.kind {
            Kind::Greeting | Kind::Ehlo | Kind::Helo | Kind::StartTls | Kind::Auth => {
                self.session_reply(exp.kind, reply, events)
            }
            Kind::Mail | Kind::Rcpt | Kind::Data | Kind::DataEnd | Kind::Bdat => {
                self.txn_reply(exp, reply, events)
            }
            Kind::Rset if !reply.is_completion() => {
                // The server may still be inside the old transaction: nothing after it
                // can be trusted to land in a fresh one.
                self.protocol_error(format!("RSET refused: \"{reply}\""), events)
            }
            Kind::Rset => self.pump(),
            Kind::Noop => {
                events.push(Event::NoopReplied(reply));
                self.pump();
            }
            Kind::Quit => self.end(REASON_QUIT.into(), Some(reply), None, events),
        }
    }

    fn session_reply(&mut self, kind: Kind, reply: Reply, events: &mut Vec<Event<T>>) {
        if let Err(e) = self.transition(state::reply_input(reply.code)) {
            self.protocol_error(e.to_string(), events);
            return;
        }
        match (kind, self.state) {
            (Kind::Greeting, State::Ehlo) => {
                self.greeting = Some(reply);
                let local = &self.local;
                self.out.write(|o| command::ehlo(o, local));
                self.expect(Kind::Ehlo, 0, 0);
            }
            (Kind::Ehlo, State::Helo) => {
                let local = &self.local;
                self.out.write(|o| command::helo(o, local));
                self.expect(Kind::Helo, 0, 0);
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
                    self.out.write(|o| exchange.respond(&reply.text, o));
                    self.expect(Kind::Auth, 0, 0);
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

    fn txn_reply(&mut self, exp: Expect, reply: Reply, events: &mut Vec<Event<T>>) {
        let lockstep = self.lockstep();
        if exp.kind.ends_data() {
            self.eods_unanswered = self.eods_unanswered.saturating_sub(1);
        }
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
                            let first = first.clone();
                            self.out.write(|o| command::rcpt(o, &first));
                            self.expect(Kind::Rcpt, exp.seq, 0);
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
                if txn.data_held && self.expected.is_empty() {
                    // Its last reply: with a data window of 1 the BDAT LAST waited for it.
                    if txn.accepted == 0 {
                        self.resolve_front(events);
                    } else {
                        self.pump();
                    }
                    return;
                }
                if lockstep {
                    if let Some(next) = txn.tx.recipients.get(i + 1) {
                        let next = next.clone();
                        self.out.write(|o| command::rcpt(o, &next));
                        self.expect(Kind::Rcpt, exp.seq, exp.rcpt + 1);
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
                    let body = (txn.accepted > 0).then(|| txn.tx.body.clone());
                    if let Some(body) = body {
                        self.out.body(&body, true);
                    }
                    self.out.write(command::end_of_data);
                    self.eods_unanswered += 1;
                    if let Some(txn) = self.active.front_mut() {
                        txn.eod_end = Some(self.out.framed());
                    }
                    self.expect(Kind::DataEnd, exp.seq, 0);
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
    fn resolve_front(&mut self, events: &mut Vec<Event<T>>) {
        let Some(txn) = self.active.pop_front() else {
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
            self.pending.push_front(txn.reset_for_retry());
        } else {
            self.bytes_in_flight = self.bytes_in_flight.saturating_sub(txn.tx.body.len());
            let outcome = Outcome {
                mail_reply: txn.mail_reply.unwrap_or_else(|| Reply::new(0, "")),
                rcpt_replies: txn.rcpt_replies,
                data_reply: txn.data_reply,
                delivered,
            };
            Self::report(txn.tag, txn.count_only, outcome, events);
        }
        self.pump();
    }

    /// The event for a resolved transaction; consecutive count-only acceptances of one
    /// batch become one [`Event::Accepted`].
    fn report(tag: T, count_only: bool, outcome: Outcome, events: &mut Vec<Event<T>>) {
        if count_only && outcome.all_accepted() {
            let n = outcome.rcpt_replies.len();
            if let Some(Event::Accepted {
                tag: first,
                transactions,
                recipients,
            }) = events.last_mut()
            {
                if first.same_batch(&tag) {
                    *transactions += 1;
                    *recipients += n;
                    return;
                }
            }
            events.push(Event::Accepted {
                tag,
                transactions: 1,
                recipients: n,
            });
        } else {
            events.push(Event::TransactionResult { tag, outcome });
        }
    }

    /// Write what may be written now.
    fn pump(&mut self) {
        if self.state != State::Ready || self.awaiting_data {
            return;
        }
        let lockstep = self.lockstep();
        let chunking = self.chunking();
        if let Some(held) = self.active.back().filter(|t| t.data_held) {
            // With a window of 1, a held transaction whose every RCPT was refused is
            // resolved by its last RCPT reply, never given a body.
            if !self.eod_allowed() || (self.options.data_window == 1 && held.accepted == 0) {
                return;
            }
            self.write_data_phase();
        }
        while !lockstep || self.expected.is_empty() {
            let Some(mut txn) = self.pending.pop_front() else {
                break;
            };
            if self.needs_rset {
                self.needs_rset = false;
                self.out.write(command::rset);
                self.expect(Kind::Rset, 0, 0);
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
            self.out.write(|o| command::mail(o, &txn.tx.sender, params));
            self.expect(Kind::Mail, seq, 0);
            if lockstep {
                self.active.push_back(txn);
                return;
            }
            for (i, r) in txn.tx.recipients.iter().enumerate() {
                self.out.write(|o| command::rcpt(o, r));
                self.expect(Kind::Rcpt, seq, i as u32);
            }
            self.active.push_back(txn);
            if chunking && !self.eod_allowed() {
                if let Some(txn) = self.active.back_mut() {
                    txn.data_held = true;
                }
                return;
            }
            self.write_data_phase();
            if !chunking {
                return; // wait for the 354
            }
        }
        if self.quit_requested
            && self.pending.is_empty()
            && !self.awaiting_data
            && !self.active.back().is_some_and(|t| t.data_held)
            && (!lockstep || self.expected.is_empty())
        {
            self.write_quit();
        }
    }

    /// May a `BDAT LAST` be written now? At most `data_window` may be unanswered, and
    /// with a window of 1 only once every earlier command is answered: the transaction's
    /// own `MAIL` and `RCPT` replies are then known (no body for a transaction without an
    /// accepted recipient), and a surplus reply from the server lands on a command not yet
    /// sent, where it is caught, instead of on the end of data.
    fn eod_allowed(&self) -> bool {
        self.eods_unanswered < self.options.data_window
            && (self.options.data_window > 1 || self.expected.is_empty())
    }

    /// DATA, or BDAT LAST with the body, for the last written transaction.
    fn write_data_phase(&mut self) {
        let chunking = self.chunking();
        let Some(txn) = self.active.back_mut() else {
            return;
        };
        txn.data_held = false;
        let seq = txn.seq;
        if chunking {
            let body = txn.tx.body.clone();
            self.out.write(|o| command::bdat_last(o, body.len()));
            self.out.body(&body, false);
            if let Some(txn) = self.active.back_mut() {
                txn.eod_end = Some(self.out.framed());
            }
            self.eods_unanswered += 1;
            self.expect(Kind::Bdat, seq, 0);
        } else {
            self.out.write(command::data);
            self.awaiting_data = true;
            self.expect(Kind::Data, seq, 0);
        }
    }

    fn write_quit(&mut self) {
        if !self.quit_sent {
            self.quit_sent = true;
            self.out.write(command::quit);
            self.expect(Kind::Quit, 0, 0);
        }
    }
}
