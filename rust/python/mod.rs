//! PyO3 bindings: the native module `fastsmtp._fastsmtp`.
//!
//! Each submodule converts its part of the core at the edge and registers its classes here.

use pyo3::prelude::*;

mod bounce;
mod clock;
mod dkim;
pub(crate) mod errors;
mod mime;
mod protocol;
pub(crate) mod tls;

#[pymodule]
fn _fastsmtp(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    mime::register(m)?;
    dkim::register(m)?;
    protocol::register(m)?;
    tls::register(m)?;
    bounce::register(m)?;
    Ok(())
}
