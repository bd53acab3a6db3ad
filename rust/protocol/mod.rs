//! Sans-IO SMTP client protocol: no sockets, clocks or threads, only bytes in and out.
//!
//! Small modules with one job each:
//! * [`reply`]: the incremental reply parser (multi-line, RFC 3463 enhanced codes, limits);
//! * [`capabilities`]: the EHLO reply as a set of extensions;
//! * [`dotstuff`]: line-end normalization and the DATA dot-stuffing codec;
//! * [`command`]: exact command bytes, injection-proof by construction;
//! * [`auth`]: SASL PLAIN, LOGIN, XOAUTH2 and CRAM-MD5;
//! * [`state`]: the session state machine as a table;
//! * [`transaction`]: what one transaction sends, validated, in wire form;
//! * [`output`]: framed bytes not yet handed out, their stream offsets, large bodies in pieces;
//! * [`connection`]: [`ClientConnection`], which frames pipelined transactions and maps
//!   every reply back to its command, transaction and recipient;
//! * [`error`]: the one error enum, mapped to Python exceptions at the binding edge.

pub mod auth;
pub mod capabilities;
pub mod command;
pub mod connection;
pub mod dotstuff;
pub mod error;
pub mod output;
pub mod reply;
pub mod state;
pub mod transaction;

pub use capabilities::Capabilities;
pub use connection::{ClientConnection, Event, Options, Outcome, Tag, Verdict};
pub use error::{Error, Result};
pub use reply::{EnhancedCode, Reply, ReplyParser};
pub use transaction::{Body, MessageBytes, Transaction};

#[cfg(test)]
mod connection_tests;
#[cfg(test)]
mod fuzz_tests;
