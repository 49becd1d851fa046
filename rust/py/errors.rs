//! The one place core errors become Python exceptions. Each exception subclasses a built-in
//! (`ValueError`), so callers' existing `except ValueError` clauses keep working, and carries
//! the catalogue code as `.code`.

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::error::{CoreError, ErrorCode};

create_exception!(
    tickgate._core,
    DecodeError,
    PyValueError,
    "A provider frame or value the core cannot accept; `.code` holds the catalogue code."
);
create_exception!(
    tickgate._core,
    InvalidSymbolError,
    DecodeError,
    "A symbol that is not CODE$REGION / CODE.REGION (code `invalid_symbol`)."
);
create_exception!(
    tickgate._core,
    InvalidModeError,
    PyValueError,
    "A delivery mode or batch interval the gateway does not allow (code `invalid_mode`)."
);
create_exception!(
    tickgate._core,
    InvalidTypeError,
    DecodeError,
    "A market-data type other than tick, quote, depth, kline@1..kline@10 (code `invalid_type`)."
);

pub fn to_pyerr(py: Python<'_>, e: CoreError) -> PyErr {
    let err = match e.code {
        ErrorCode::InvalidSymbol => InvalidSymbolError::new_err(e.message),
        ErrorCode::InvalidType => InvalidTypeError::new_err(e.message),
        ErrorCode::InvalidMode => InvalidModeError::new_err(e.message),
        _ => DecodeError::new_err(e.message),
    };
    // Setting an attribute on a fresh exception instance cannot fail in practice; if it
    // somehow did, the exception without `.code` is still the right one to raise.
    let _ = err.value(py).setattr("code", e.code.as_str());
    err
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("DecodeError", py.get_type::<DecodeError>())?;
    m.add("InvalidSymbolError", py.get_type::<InvalidSymbolError>())?;
    m.add("InvalidTypeError", py.get_type::<InvalidTypeError>())?;
    m.add("InvalidModeError", py.get_type::<InvalidModeError>())?;
    m.add_function(wrap_pyfunction!(error_catalogue, m)?)?;
    Ok(())
}

/// The one error-code catalogue, `[(code, description), ...]` in order: `tickgate.ErrorCode`
/// and the docs are built from / checked against it.
#[pyfunction]
fn error_catalogue() -> Vec<(&'static str, &'static str)> {
    ErrorCode::ALL
        .iter()
        .map(|c| (c.as_str(), c.description()))
        .collect()
}
