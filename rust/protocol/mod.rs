//! Sans-IO SMTP client protocol (filled in by the protocol work).
