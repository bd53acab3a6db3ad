//! fastsmtp's Rust core: every byte fastsmtp puts on or reads from the wire.
//!
//! * [`mime`] assembles RFC 5322 / MIME messages and renders per-recipient templates.
//! * [`protocol`] is a sans-IO SMTP client: it frames pipelined commands and parses replies
//!   into per-transaction outcomes, without sockets, clocks or threads.
//! * [`tls`] is a sans-IO TLS client session (rustls): ciphertext in, plaintext out.
//! * [`bounce`] parses inbound reports (RFC 3464 DSNs, RFC 5965 complaints, non-standard
//!   bounces, auto-replies), classifies failures and signs/checks VERP addresses.
//! * `python` (feature `python`) holds the PyO3 bindings only: conversion and error mapping
//!   happen at that edge, the core modules know nothing of Python.

pub mod bounce;
pub mod mime;
pub mod protocol;
pub mod tls;

#[cfg(feature = "python")]
mod python;

/// Rust allocations of the Python extension (Python's own objects keep their allocator).
#[cfg(feature = "extension-module")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
