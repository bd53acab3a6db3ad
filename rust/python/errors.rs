//! Python exceptions raised from Rust.
//!
//! The exception classes live in `fastsmtp._errors` (Python), so they can subclass built-ins
//! such as `ValueError` and share one hierarchy with the pure-Python engine. Rust looks them
//! up lazily by name; the import is cached by Python's module table.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Build an instance of `fastsmtp._errors.<name>(message, **kwargs)`.
pub(crate) fn new_error(
    py: Python<'_>,
    name: &str,
    message: &str,
    kwargs: &[(&str, Option<&str>)],
) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let cls = py.import("fastsmtp._errors")?.getattr(name)?;
        let kw = PyDict::new(py);
        for (k, v) in kwargs {
            kw.set_item(k, v)?;
        }
        let instance = cls.call((message,), Some(&kw))?;
        Ok(PyErr::from_value(instance))
    };
    build().unwrap_or_else(|e| PyRuntimeError::new_err(format!("{name}: {message} ({e})")))
}
