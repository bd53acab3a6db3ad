//! The session state machine, as a table and nothing else.
//!
//! A connection is in exactly one [`State`]; an [`Input`] (a reply of some class to the
//! command the state waits for, a call by the user, the end of the connection) moves it
//! to the next state listed in [`TABLE`], or is illegal there. Transactions are not states:
//! they run, many at a time, inside [`State::Ready`] and are tracked by the connection's
//! expected-reply queue.
//!
//! ```text
//! Greeting --220--> Ehlo --2xx--> Ready <-----------------------------+
//!    |               |  \--5xx--> Helo --2xx--> Ready                 |
//!    |               |             \--else--> Failed                  |
//!    |               \--4xx------------------> Failed                 |
//!    \--not 220--> Failed                                             |
//! Ready --starttls()--> StartTls --220--> TlsHandshake --tls_established()--> Ehlo
//!                          \--else--> Failed
//! Ready --auth()--> Auth --final reply--> Ready
//! any live state --EOF, 421, QUIT answered--> Closed;  --peer broke protocol--> Error
//! ```

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Waiting for the server's greeting.
    Greeting,
    /// EHLO sent, waiting for its reply.
    Ehlo,
    /// EHLO refused, HELO sent, waiting for its reply.
    Helo,
    /// Greeted: transactions, STARTTLS, AUTH and QUIT may be queued.
    Ready,
    /// STARTTLS sent, waiting for the 220.
    StartTls,
    /// 220 to STARTTLS received: the transport must upgrade; every byte is discarded.
    TlsHandshake,
    /// An AUTH exchange is running.
    Auth,
    /// The greeting, EHLO/HELO or STARTTLS was refused: only QUIT or closing remain.
    Failed,
    /// The connection is over (QUIT answered, EOF, 421).
    Closed,
    /// The server broke the protocol; sticky.
    Error,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Input {
    /// A 220 reply.
    Reply220,
    /// A 2xx reply (other than a 220 where that matters).
    Reply2xx,
    /// A 3xx reply (a 334 challenge during AUTH).
    Reply3xx,
    /// A 4xx reply other than 421.
    Reply4xx,
    /// A 5xx reply.
    Reply5xx,
    /// The user called `starttls()`.
    StartTlsCalled,
    /// The user called `tls_established()`.
    TlsEstablished,
    /// The user called `auth()`.
    AuthCalled,
    /// EOF, a 421, or the reply to QUIT.
    ConnectionEnded,
    /// The server sent something malformed or unexpected.
    ProtocolViolation,
}

use Input as I;
use State as S;

/// `(state, input, next state)`. Inputs not listed for a state are illegal in it; the
/// `ConnectionEnded` and `ProtocolViolation` rows of the live states are added by [`next`].
pub const TABLE: &[(State, Input, State)] = &[
    // The greeting: only 220 opens the session (RFC 5321 3.1; 554 means go away).
    (S::Greeting, I::Reply220, S::Ehlo),
    (S::Greeting, I::Reply2xx, S::Failed),
    (S::Greeting, I::Reply3xx, S::Failed),
    (S::Greeting, I::Reply4xx, S::Failed),
    (S::Greeting, I::Reply5xx, S::Failed),
    // EHLO, falling back to HELO only when EHLO is not recognised (5xx, RFC 5321 3.2).
    (S::Ehlo, I::Reply220, S::Ready),
    (S::Ehlo, I::Reply2xx, S::Ready),
    (S::Ehlo, I::Reply3xx, S::Failed),
    (S::Ehlo, I::Reply4xx, S::Failed),
    (S::Ehlo, I::Reply5xx, S::Helo),
    (S::Helo, I::Reply220, S::Ready),
    (S::Helo, I::Reply2xx, S::Ready),
    (S::Helo, I::Reply3xx, S::Failed),
    (S::Helo, I::Reply4xx, S::Failed),
    (S::Helo, I::Reply5xx, S::Failed),
    // STARTTLS (RFC 3207): 220 is the go-ahead; the client then sends EHLO again.
    (S::Ready, I::StartTlsCalled, S::StartTls),
    (S::StartTls, I::Reply220, S::TlsHandshake),
    (S::StartTls, I::Reply2xx, S::Failed),
    (S::StartTls, I::Reply3xx, S::Failed),
    (S::StartTls, I::Reply4xx, S::Failed),
    (S::StartTls, I::Reply5xx, S::Failed),
    (S::TlsHandshake, I::TlsEstablished, S::Ehlo),
    // AUTH (RFC 4954): 334 challenges keep the exchange going; anything else ends it.
    (S::Ready, I::AuthCalled, S::Auth),
    (S::Auth, I::Reply3xx, S::Auth),
    (S::Auth, I::Reply220, S::Ready),
    (S::Auth, I::Reply2xx, S::Ready),
    (S::Auth, I::Reply4xx, S::Ready),
    (S::Auth, I::Reply5xx, S::Ready),
];

/// True for states in which the connection is still open.
pub fn is_live(state: State) -> bool {
    !matches!(state, S::Closed | S::Error)
}

/// The state after `input` in `state`, or `None` when the input is illegal there.
pub fn next(state: State, input: Input) -> Option<State> {
    match input {
        I::ConnectionEnded if is_live(state) => Some(S::Closed),
        I::ProtocolViolation if is_live(state) => Some(S::Error),
        _ => TABLE
            .iter()
            .find(|(s, i, _)| *s == state && *i == input)
            .map(|&(_, _, n)| n),
    }
}

/// The input a reply code means.
pub fn reply_input(code: u16) -> Input {
    match code {
        220 => I::Reply220,
        200..=299 => I::Reply2xx,
        300..=399 => I::Reply3xx,
        400..=499 => I::Reply4xx,
        _ => I::Reply5xx,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const ALL: [State; 10] = [
        S::Greeting,
        S::Ehlo,
        S::Helo,
        S::Ready,
        S::StartTls,
        S::TlsHandshake,
        S::Auth,
        S::Failed,
        S::Closed,
        S::Error,
    ];

    #[test]
    fn table_is_a_function() {
        let mut seen = HashSet::new();
        for (s, i, _) in TABLE {
            assert!(seen.insert((s, i)), "duplicate row for {s:?} {i:?}");
        }
    }

    #[test]
    fn every_state_reachable_and_closable() {
        let mut reached = HashSet::from([S::Greeting]);
        loop {
            let before = reached.len();
            for &(s, _, n) in TABLE {
                if reached.contains(&s) {
                    reached.insert(n);
                }
            }
            if reached.len() == before {
                break;
            }
        }
        reached.extend([S::Closed, S::Error]);
        assert_eq!(reached, ALL.into_iter().collect());
        for s in ALL {
            assert_eq!(next(s, I::ConnectionEnded).is_some(), is_live(s));
            assert_eq!(next(s, I::ProtocolViolation).is_some(), is_live(s));
        }
    }

    #[test]
    fn every_waiting_state_handles_every_reply() {
        for s in [S::Greeting, S::Ehlo, S::Helo, S::StartTls, S::Auth] {
            for code in [220, 250, 334, 450, 550] {
                assert!(next(s, reply_input(code)).is_some(), "{s:?} {code}");
            }
        }
        assert_eq!(next(S::Greeting, reply_input(554)), Some(S::Failed));
        assert_eq!(next(S::Ehlo, reply_input(502)), Some(S::Helo));
        assert_eq!(next(S::Closed, I::AuthCalled), None);
        assert_eq!(next(S::Auth, I::StartTlsCalled), None);
    }
}
