//! Python views of core events. `Update` holds the core's `EncodedUpdate`, the same one the
//! dispatcher fans out, so an update is encoded at most once per format however many
//! receivers, batches or Python readers ask for it.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::encode::EncodedUpdate;
use crate::model::{DepthLevel, Payload};
use crate::providers::Control;

#[pyclass(module = "tickgate._core", name = "Update", frozen)]
pub struct PyUpdate {
    pub(crate) encoded: Arc<EncodedUpdate>,
    // The Python bytes views, made on demand from the core's buffers.
    json: GILOnceCell<Py<PyBytes>>,
    json_frame: GILOnceCell<Py<PyBytes>>,
    protobuf: GILOnceCell<Py<PyBytes>>,
    protobuf_frame: GILOnceCell<Py<PyBytes>>,
}

impl PyUpdate {
    pub fn new(encoded: Arc<EncodedUpdate>) -> Self {
        PyUpdate {
            encoded,
            json: GILOnceCell::new(),
            json_frame: GILOnceCell::new(),
            protobuf: GILOnceCell::new(),
            protobuf_frame: GILOnceCell::new(),
        }
    }
}

fn cached<'py>(py: Python<'py>, cell: &GILOnceCell<Py<PyBytes>>, bytes: &[u8]) -> Bound<'py, PyBytes> {
    cell.get_or_init(py, || PyBytes::new(py, bytes).unbind())
        .bind(py)
        .clone()
}

#[pymethods]
impl PyUpdate {
    /// `tick`, `quote`, `depth` or `kline@N`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.encoded.update.kind().name()
    }
    #[getter]
    fn symbol(&self) -> &str {
        &self.encoded.update.symbol
    }
    #[getter]
    fn channel(&self) -> &str {
        &self.encoded.update.channel
    }
    #[getter]
    fn seq(&self) -> u64 {
        self.encoded.update.seq
    }
    #[getter]
    fn epoch(&self) -> &str {
        &self.encoded.update.epoch
    }
    #[getter]
    fn provider(&self) -> &str {
        &self.encoded.update.provider
    }
    #[getter]
    fn event_time_ms(&self) -> i64 {
        self.encoded.update.event_time_ms
    }
    #[getter]
    fn recv_time_ms(&self) -> i64 {
        self.encoded.update.recv_time_ms
    }

    /// The seed-compatible JSON push, encoded once.
    #[getter]
    fn json<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        cached(py, &self.json, self.encoded.json_payload())
    }
    /// The JSON push as a complete unmasked WebSocket text frame, encoded once.
    #[getter]
    fn json_frame<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        cached(py, &self.json_frame, self.encoded.json_frame())
    }
    /// `tickgate.v1.Update` Protobuf bytes, encoded once.
    #[getter]
    fn protobuf<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        cached(py, &self.protobuf, self.encoded.proto().update())
    }
    /// `tickgate.v1.ServerMessage` holding the update, as a complete unmasked WebSocket binary
    /// frame: what a `tickgate.v1.proto` client receives. Encoded once.
    #[getter]
    fn protobuf_frame<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        cached(py, &self.protobuf_frame, self.encoded.proto().frame())
    }

    /// The normalized update as a plain dict (snake_case names, `None` for absent fields).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let u = &self.encoded.update;
        let d = PyDict::new(py);
        d.set_item("kind", u.kind().name())?;
        d.set_item("symbol", &*u.symbol)?;
        d.set_item("channel", &*u.channel)?;
        d.set_item("seq", u.seq)?;
        d.set_item("epoch", &*u.epoch)?;
        d.set_item("provider", &*u.provider)?;
        d.set_item("event_time_ms", u.event_time_ms)?;
        d.set_item("recv_time_ms", u.recv_time_ms)?;
        match &u.payload {
            Payload::Tick(t) => {
                d.set_item("price", t.price)?;
                d.set_item("volume", t.volume)?;
                d.set_item("direction", t.direction as u8)?;
                d.set_item("session", t.session as u8)?;
                d.set_item("turnover", t.turnover)?;
                d.set_item("status", t.status.map(|s| s as u8))?;
                d.set_item("cumulative_volume", t.cumulative_volume)?;
                d.set_item("change", t.change)?;
                d.set_item("change_percent", t.change_percent)?;
            }
            Payload::Quote(q) => {
                d.set_item("last", q.last)?;
                d.set_item("open", q.open)?;
                d.set_item("high", q.high)?;
                d.set_item("low", q.low)?;
                d.set_item("prev_close", q.prev_close)?;
                d.set_item("change", q.change)?;
                d.set_item("change_percent", q.change_percent)?;
                d.set_item("volume", q.volume)?;
                d.set_item("turnover", q.turnover)?;
                d.set_item("status", q.status as u8)?;
            }
            Payload::Depth(dp) => {
                d.set_item("asks", levels(py, &dp.asks)?)?;
                d.set_item("bids", levels(py, &dp.bids)?)?;
            }
            Payload::Kline(k) => {
                d.set_item("period", k.period)?;
                d.set_item("open_time_ms", k.open_time_ms)?;
                d.set_item("open", k.open)?;
                d.set_item("high", k.high)?;
                d.set_item("low", k.low)?;
                d.set_item("close", k.close)?;
                d.set_item("volume", k.volume)?;
                d.set_item("turnover", k.turnover)?;
            }
        }
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "<Update {} seq={} epoch={}>",
            self.encoded.update.channel, self.encoded.update.seq, self.encoded.update.epoch
        )
    }
}

fn levels<'py>(py: Python<'py>, levels: &[DepthLevel]) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    for l in levels {
        let d = PyDict::new(py);
        d.set_item("position", l.position)?;
        d.set_item("price", l.price)?;
        d.set_item("volume", l.volume)?;
        d.set_item("orders", l.orders)?;
        out.append(d)?;
    }
    Ok(out)
}

/// A provider control frame: greeting, auth/subscribe/unsubscribe result, pong, notice.
#[pyclass(module = "tickgate._core", name = "ControlEvent", frozen, get_all)]
pub struct PyControlEvent {
    /// `connected`, `auth`, `subscribe`, `unsubscribe`, `pong` or `notice`.
    kind: &'static str,
    ok: bool,
    message: String,
    params: Option<String>,
    action: String,
}

impl From<Control> for PyControlEvent {
    fn from(c: Control) -> Self {
        PyControlEvent {
            kind: c.kind.as_str(),
            ok: c.ok,
            message: c.message,
            params: c.params,
            action: c.action,
        }
    }
}

#[pymethods]
impl PyControlEvent {
    fn __repr__(&self) -> String {
        format!(
            "<ControlEvent {} ok={} message={:?}>",
            self.kind, self.ok, self.message
        )
    }
}

/// A frame from a batch that could not be decoded; the rest of the batch still was.
#[pyclass(module = "tickgate._core", name = "FrameError", frozen, get_all)]
pub struct PyFrameError {
    /// Position of the frame in the batch.
    pub index: usize,
    /// Catalogue code (`invalid_json`, `invalid_frame`, ...).
    pub code: &'static str,
    pub message: String,
}

#[pymethods]
impl PyFrameError {
    fn __repr__(&self) -> String {
        format!("<FrameError #{} {}: {}>", self.index, self.code, self.message)
    }
}
