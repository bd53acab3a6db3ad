//! MIME assembly and per-recipient personalization (filled in by the MIME work).
