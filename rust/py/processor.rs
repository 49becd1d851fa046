//! `FeedProcessor` for Python: provider frames in; `Update`s (for the fan-out) and
//! `ControlEvent`s (for the provider adapter) out, handed back separately.

use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyString};

use super::errors::to_pyerr;
use super::update::{PyControlEvent, PyFrameError, PyUpdate};
use crate::encode::EncodedUpdate;
use crate::error::{CoreError, ErrorCode};
use crate::model::parse_channel;
use crate::providers::Provider;
use crate::state::processor::{DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_SYMBOLS};
use crate::state::sanity::SanityLimits;
use crate::state::{now_ms, Event, FeedProcessor, ProcessorConfig};

#[pyclass(module = "tickgate._core", name = "FeedProcessor")]
pub struct PyFeedProcessor {
    inner: FeedProcessor,
    events: Vec<Event>,
}

/// Frame bytes from `bytes` or `str` without copying; other buffers are copied once.
enum FrameBytes<'py> {
    Bytes(Bound<'py, PyBytes>),
    Str(Bound<'py, PyString>),
    Owned(Vec<u8>),
}

impl FrameBytes<'_> {
    fn extract<'py>(obj: &Bound<'py, PyAny>) -> PyResult<FrameBytes<'py>> {
        if let Ok(b) = obj.downcast::<PyBytes>() {
            return Ok(FrameBytes::Bytes(b.clone()));
        }
        if let Ok(s) = obj.downcast::<PyString>() {
            return Ok(FrameBytes::Str(s.clone()));
        }
        if let Ok(b) = obj.downcast::<PyByteArray>() {
            return Ok(FrameBytes::Owned(b.to_vec()));
        }
        let buf = PyBuffer::<u8>::get(obj).map_err(|_| {
            pyo3::exceptions::PyTypeError::new_err("frame must be bytes, str, bytearray or a byte buffer")
        })?;
        Ok(FrameBytes::Owned(buf.to_vec(obj.py())?))
    }

    /// The frame's bytes; text that cannot be UTF-8 (lone surrogates) is a bad frame.
    fn bytes(&self) -> Result<&[u8], CoreError> {
        match self {
            FrameBytes::Bytes(b) => Ok(b.as_bytes()),
            FrameBytes::Str(s) => s
                .to_str()
                .map(str::as_bytes)
                .map_err(|_| CoreError::new(ErrorCode::InvalidJson, "frame text is not valid UTF-8")),
            FrameBytes::Owned(v) => Ok(v),
        }
    }
}

/// What `ingest` returns: the updates, and the provider's control events.
type Ingested<'py> = (Bound<'py, PyList>, Bound<'py, PyList>);

impl PyFeedProcessor {
    fn drain_into(
        &mut self,
        py: Python<'_>,
        updates: &Bound<'_, PyList>,
        controls: &Bound<'_, PyList>,
    ) -> PyResult<()> {
        for event in self.events.drain(..) {
            match event {
                Event::Update(u) => {
                    updates.append(Bound::new(py, PyUpdate::new(Arc::new(EncodedUpdate::new(u))))?)?
                }
                Event::Control(c) => controls.append(Bound::new(py, PyControlEvent::from(c))?)?,
            }
        }
        Ok(())
    }
}

#[pymethods]
impl PyFeedProcessor {
    #[new]
    /// `max_past_ms` / `max_future_ms`: how far before or after its receipt an update's event
    /// time may be; beyond that it is dropped as implausible (default: 10 years, 1 hour).
    #[pyo3(signature = (provider, *, epoch = None, max_frame_bytes = DEFAULT_MAX_FRAME_BYTES, max_symbols = DEFAULT_MAX_SYMBOLS, max_past_ms = None, max_future_ms = None))]
    fn new(
        py: Python<'_>,
        provider: &str,
        epoch: Option<String>,
        max_frame_bytes: usize,
        max_symbols: usize,
        max_past_ms: Option<i64>,
        max_future_ms: Option<i64>,
    ) -> PyResult<Self> {
        let provider = Provider::parse(provider).map_err(|e| to_pyerr(py, e))?;
        let defaults = SanityLimits::default();
        let sanity = SanityLimits {
            max_past_ms: max_past_ms.unwrap_or(defaults.max_past_ms),
            max_future_ms: max_future_ms.unwrap_or(defaults.max_future_ms),
            ..defaults
        };
        Ok(PyFeedProcessor {
            inner: FeedProcessor::new(ProcessorConfig {
                epoch,
                max_frame_bytes,
                max_symbols,
                sanity,
                ..ProcessorConfig::new(provider)
            }),
            events: Vec::with_capacity(4),
        })
    }

    /// Decodes one frame into `(updates, controls)`. Raises `DecodeError` (a `ValueError`) if
    /// it is malformed; state is then unchanged. `provider`: the frame's protocol when not this
    /// processor's own (a backup provider feeding the same channels; one numbering for all).
    #[pyo3(signature = (frame, recv_time_ms = None, provider = None))]
    fn ingest<'py>(
        &mut self,
        py: Python<'py>,
        frame: &Bound<'py, PyAny>,
        recv_time_ms: Option<i64>,
        provider: Option<&str>,
    ) -> PyResult<Ingested<'py>> {
        let recv = recv_time_ms.unwrap_or_else(now_ms);
        let provider = match provider {
            Some(name) => Provider::parse(name).map_err(|e| to_pyerr(py, e))?,
            None => self.inner.provider(),
        };
        let frame = FrameBytes::extract(frame)?;
        let bytes = frame.bytes().map_err(|e| to_pyerr(py, e))?;
        self.inner
            .process_as(provider, bytes, recv, &mut self.events)
            .map_err(|e| to_pyerr(py, e))?;
        let (updates, controls) = (PyList::empty(py), PyList::empty(py));
        self.drain_into(py, &updates, &controls)?;
        Ok((updates, controls))
    }

    /// Decodes a batch (one socket read's worth) in one call into `(updates, controls,
    /// errors)`. A malformed frame becomes a `FrameError`; it never stops the rest.
    #[pyo3(signature = (frames, recv_time_ms = None))]
    fn ingest_many<'py>(
        &mut self,
        py: Python<'py>,
        frames: &Bound<'py, PyAny>,
        recv_time_ms: Option<i64>,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>, Bound<'py, PyList>)> {
        let recv = recv_time_ms.unwrap_or_else(now_ms);
        let (updates, controls, errors) = (PyList::empty(py), PyList::empty(py), PyList::empty(py));
        for (index, item) in frames.try_iter()?.enumerate() {
            // Every per-frame problem, a wrong type included, stays with that frame: the
            // updates already sequenced in this batch must reach the caller.
            let result = match FrameBytes::extract(&item?) {
                Ok(frame) => frame
                    .bytes()
                    .and_then(|b| self.inner.process(b, recv, &mut self.events)),
                Err(e) => Err(CoreError::new(ErrorCode::InvalidFrame, e.to_string())),
            };
            match result {
                Ok(()) => self.drain_into(py, &updates, &controls)?,
                Err(e) => errors.append(PyFrameError {
                    index,
                    code: e.code.as_str(),
                    message: e.message,
                })?,
            }
        }
        Ok((updates, controls, errors))
    }

    /// The last sequence number given on `channel` (`SYMBOL:type`), 0 if none yet.
    fn last_seq(&self, py: Python<'_>, channel: &str) -> PyResult<u64> {
        let (symbol, kind) = parse_channel(channel).map_err(|e| to_pyerr(py, e))?;
        Ok(self.inner.last_seq(&symbol, kind))
    }

    /// Changes when sequence state resets (a new process); clients compare it on resume.
    #[getter]
    fn epoch(&self) -> &str {
        self.inner.epoch()
    }

    #[getter]
    fn provider(&self) -> &'static str {
        self.inner.provider().name()
    }

    /// Maps `provider`'s spellings to the gateway's symbols (`{"0700.HK": "700$HK"}`): its
    /// updates for them are numbered as those. Raises `DecodeError` for a symbol either side
    /// cannot read.
    fn set_symbol_map(
        &mut self,
        py: Python<'_>,
        provider: &str,
        mapping: HashMap<String, String>,
    ) -> PyResult<()> {
        let provider = Provider::parse(provider).map_err(|e| to_pyerr(py, e))?;
        let pairs: Vec<(String, String)> = mapping.into_iter().collect();
        self.inner
            .set_symbol_map(provider, &pairs)
            .map_err(|e| to_pyerr(py, e))
    }

    /// Forgets the state of `symbols` (nobody has held them for a while); returns how many had
    /// any. If one comes back, its seqs carry on above every seq given out so far.
    fn release(&mut self, symbols: Vec<String>) -> usize {
        symbols.iter().filter(|s| self.inner.release(s)).count()
    }

    /// Marks a hole in each of `channels` (their stream stopped reaching the gateway): the next
    /// update of each skips one seq, so no one resumes across it believing nothing was missed.
    /// Channels that are not `SYMBOL:type` are ignored.
    fn mark_gap(&mut self, channels: Vec<String>) {
        for channel in &channels {
            if let Ok((symbol, kind)) = parse_channel(channel) {
                self.inner.mark_gap(&symbol, kind);
            }
        }
    }

    /// Counters: frames, updates, errors, symbols held, symbols released, and updates dropped
    /// as implausible by reason.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (frames, updates, errors) = self.inner.counters();
        let d = PyDict::new(py);
        d.set_item("frames", frames)?;
        d.set_item("updates", updates)?;
        d.set_item("errors", errors)?;
        d.set_item("symbols", self.inner.symbol_count())?;
        d.set_item("released", self.inner.released_count())?;
        let dropped = PyDict::new(py);
        for (why, n) in self.inner.dropped() {
            dropped.set_item(why.name(), n)?;
        }
        d.set_item("dropped", dropped)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "<FeedProcessor provider={} epoch={}>",
            self.inner.provider().name(),
            self.inner.epoch()
        )
    }
}
