//! The only PyO3 code: registers `tickgate._core` and translates between Python and the core.

mod dispatcher;
mod errors;
mod index;
mod processor;
mod replay;
mod update;

use std::sync::Arc;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::encode::bus;
use crate::encode::protobuf::FILE_DESCRIPTOR_SET;
use crate::encode::wsframe::{frame, Opcode};
use crate::encode::Format;
use crate::model::{channel_name, parse_channel, symbol, Kind};

/// Canonical `CODE$REGION` for any accepted spelling; raises `InvalidSymbolError`.
#[pyfunction]
fn normalize_symbol(py: Python<'_>, raw: &str) -> PyResult<String> {
    symbol::canonicalize(raw).map_err(|e| errors::to_pyerr(py, e))
}

/// Canonical type name (`tick`, `quote`, `depth`, `kline@N`); raises `InvalidTypeError`.
#[pyfunction]
fn normalize_type(py: Python<'_>, raw: &str) -> PyResult<&'static str> {
    Kind::parse(raw)
        .map(Kind::name)
        .map_err(|e| errors::to_pyerr(py, e))
}

/// `SYMBOL:type` from any accepted spellings of both.
#[pyfunction]
fn make_channel(py: Python<'_>, symbol_raw: &str, type_raw: &str) -> PyResult<String> {
    let symbol = symbol::canonicalize(symbol_raw).map_err(|e| errors::to_pyerr(py, e))?;
    let kind = Kind::parse(type_raw).map_err(|e| errors::to_pyerr(py, e))?;
    Ok(channel_name(&symbol, kind))
}

/// `(symbol, type)` of a channel name, both canonical.
#[pyfunction]
fn split_channel(py: Python<'_>, channel: &str) -> PyResult<(String, &'static str)> {
    let (symbol, kind) = parse_channel(channel).map_err(|e| errors::to_pyerr(py, e))?;
    Ok((symbol, kind.name()))
}

/// A complete unmasked server WebSocket frame (text, or binary when `binary`).
#[pyfunction]
#[pyo3(signature = (payload, binary = false))]
fn ws_frame<'py>(py: Python<'py>, payload: &[u8], binary: bool) -> Bound<'py, PyBytes> {
    let op = if binary { Opcode::Binary } else { Opcode::Text };
    PyBytes::new(py, &frame(op, payload))
}

/// One bus record holding `updates` with their JSON and Protobuf encodings (made now if they
/// were not yet), for an edge process to fan out without encoding again.
#[pyfunction]
fn pack_updates<'py>(py: Python<'py>, updates: &Bound<'py, PyList>) -> PyResult<Bound<'py, PyBytes>> {
    let mut held = Vec::with_capacity(updates.len());
    for item in updates.iter() {
        let update = item
            .downcast::<update::PyUpdate>()
            .map_err(|_| PyTypeError::new_err("pack_updates takes a list of tickgate.Update"))?;
        held.push(update.get().encoded.clone());
    }
    Ok(PyBytes::new(py, &bus::pack(held.iter().map(|u| &**u))))
}

/// The updates of a bus record, encodings in place; raises `DecodeError` if it is corrupt.
#[pyfunction]
fn unpack_updates<'py>(py: Python<'py>, record: &[u8]) -> PyResult<Bound<'py, PyList>> {
    let updates = bus::unpack(record).map_err(|e| errors::to_pyerr(py, e))?;
    let out = PyList::empty(py);
    for u in updates {
        out.append(Bound::new(py, update::PyUpdate::new(Arc::new(u)))?)?;
    }
    Ok(out)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("FILE_DESCRIPTOR_SET", PyBytes::new(m.py(), FILE_DESCRIPTOR_SET))?;
    errors::register(m)?;
    m.add_class::<processor::PyFeedProcessor>()?;
    m.add_class::<update::PyUpdate>()?;
    m.add_class::<update::PyControlEvent>()?;
    m.add_class::<update::PyFrameError>()?;
    m.add_class::<index::PySubscriptionIndex>()?;
    m.add_class::<dispatcher::PyDispatcher>()?;
    m.add_class::<replay::PyReplayRing>()?;
    let subprotocols: Vec<&str> = Format::ALL.iter().map(|f| f.subprotocol()).collect();
    m.add("SUBPROTOCOLS", subprotocols)?;
    m.add_function(wrap_pyfunction!(normalize_symbol, m)?)?;
    m.add_function(wrap_pyfunction!(normalize_type, m)?)?;
    m.add_function(wrap_pyfunction!(make_channel, m)?)?;
    m.add_function(wrap_pyfunction!(split_channel, m)?)?;
    m.add_function(wrap_pyfunction!(ws_frame, m)?)?;
    m.add("BUS_RECORD_VERSION", bus::VERSION)?;
    m.add_function(wrap_pyfunction!(pack_updates, m)?)?;
    m.add_function(wrap_pyfunction!(unpack_updates, m)?)?;
    Ok(())
}
