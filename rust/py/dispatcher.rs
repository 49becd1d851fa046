//! `Dispatcher` for Python. The edge registers each connection with a handle (its connection
//! object) and gets an integer id; `flush` returns `(handle, bytes)` for every connection
//! with something to send, so the edge's write loop runs once per connection per event-loop
//! turn, never per delivery. Batch frames shared by several connections are one `bytes`
//! object.

use std::collections::HashMap;
use std::sync::Arc;

use pyo3::exceptions::PyTypeError;
use pyo3::gc::PyVisit;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use pyo3::PyTraverseError;
use rustc_hash::FxHashMap;

use super::errors::to_pyerr;
use super::update::PyUpdate;
use crate::encode::bus;
use crate::encode::format::frame_message;
use crate::encode::{EncodedUpdate, Format};
use crate::fanout::slab::SideTable;
use crate::fanout::{ConnId, Dispatcher, DispatcherLimits, Marked, Mode, Outgoing};
use crate::state::now_ms;

#[pyclass(module = "tickgate._core", name = "Dispatcher")]
pub struct PyDispatcher {
    inner: Dispatcher,
    /// The edge's object for each connection id (held strongly while registered), and the
    /// callable that writes bytes to its socket.
    handles: SideTable<(Py<PyAny>, Option<Py<PyAny>>)>,
    flushed: Vec<(ConnId, Outgoing)>,
}

/// One connection's bytes, its handle and its transport, collected while the dispatcher is borrowed.
type PendingWrite<'py> = (Py<PyAny>, Option<Py<PyAny>>, Bound<'py, PyBytes>);

fn parse_format(py: Python<'_>, format: &str) -> PyResult<Format> {
    Format::parse(format).map_err(|e| to_pyerr(py, e))
}

/// The core's updates behind a list of `tickgate.Update`.
pub(crate) fn held_updates(updates: &Bound<'_, PyList>) -> PyResult<Vec<Arc<EncodedUpdate>>> {
    updates
        .iter()
        .map(|item| {
            item.downcast::<PyUpdate>()
                .map(|u| u.get().encoded.clone())
                .map_err(|_| PyTypeError::new_err("expected a list of tickgate.Update"))
        })
        .collect()
}

fn strings(names: Vec<Arc<str>>) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Turns what the dispatcher hands out into `bytes`: a connection's frames are copied once,
/// straight into the new object; a batch shared by a group becomes one object for all.
struct ToBytes<'py> {
    py: Python<'py>,
    shared: FxHashMap<usize, Bound<'py, PyBytes>>,
}

impl<'py> ToBytes<'py> {
    fn new(py: Python<'py>) -> Self {
        ToBytes {
            py,
            shared: FxHashMap::default(),
        }
    }

    fn convert(&mut self, outgoing: &Outgoing) -> PyResult<Bound<'py, PyBytes>> {
        match outgoing {
            Outgoing::Shared(v) => {
                if let Some(b) = self.shared.get(&(Arc::as_ptr(v) as usize)) {
                    return Ok(b.clone());
                }
                let b = PyBytes::new(self.py, v);
                self.shared.insert(Arc::as_ptr(v) as usize, b.clone());
                Ok(b)
            }
            Outgoing::Frames(_) => PyBytes::new_with(self.py, outgoing.len(), |buf| {
                outgoing.write_to(buf);
                Ok(())
            }),
        }
    }
}

impl PyDispatcher {
    fn parse_mode(&self, py: Python<'_>, mode: &str, interval_ms: i64) -> PyResult<Mode> {
        self.inner
            .parse_mode(mode, interval_ms)
            .map_err(|e| to_pyerr(py, e))
    }

    fn handle<'py>(&self, py: Python<'py>, id: ConnId) -> Option<Bound<'py, PyAny>> {
        self.handles.get(&id).map(|(h, _)| h.bind(py).clone())
    }
}

#[pymethods]
impl PyDispatcher {
    #[new]
    #[pyo3(signature = (*, soft_cap_bytes, tick_cap, lag_deadline_ms, wheel_tick_ms, min_interval_ms, max_interval_ms, zstd_dictionary = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        soft_cap_bytes: usize,
        tick_cap: usize,
        lag_deadline_ms: i64,
        wheel_tick_ms: i64,
        min_interval_ms: u32,
        max_interval_ms: u32,
        zstd_dictionary: Option<&[u8]>,
    ) -> PyResult<Self> {
        let limits = DispatcherLimits {
            soft_cap_bytes,
            tick_cap,
            lag_deadline_ms,
            wheel_tick_ms,
            min_interval_ms,
            max_interval_ms,
        };
        Ok(PyDispatcher {
            inner: Dispatcher::new(limits, zstd_dictionary).map_err(|e| to_pyerr(py, e))?,
            handles: SideTable::default(),
            flushed: Vec::new(),
        })
    }

    /// Registers a connection; `format` is `json`, `proto` or `proto+zstd` (or the
    /// subprotocol name); `transport`, if given, is what `write_out` calls `write(bytes)` on
    /// (the object, not a bound method: one less object kept per connection).
    /// Raises `InvalidModeError` for a bad mode.
    #[pyo3(signature = (handle, format = "json", mode = "immediate", interval_ms = 500, transport = None))]
    fn connect(
        &mut self,
        py: Python<'_>,
        handle: Py<PyAny>,
        format: &str,
        mode: &str,
        interval_ms: i64,
        transport: Option<Py<PyAny>>,
    ) -> PyResult<ConnId> {
        let format = parse_format(py, format)?;
        let mode = self.parse_mode(py, mode, interval_ms)?;
        let id = self
            .inner
            .connect(format, mode, now_ms())
            .map_err(|e| to_pyerr(py, e))?;
        self.handles.insert(id, (handle, transport));
        Ok(id)
    }

    /// The handle `conn` was registered with, or `None`.
    fn handle_of<'py>(&self, py: Python<'py>, conn: ConnId) -> Option<Bound<'py, PyAny>> {
        self.handle(py, conn)
    }

    /// Forgets a connection; returns the channels that lost their last receiver.
    fn disconnect(&mut self, conn: ConnId) -> Vec<String> {
        self.handles.remove(&conn);
        strings(self.inner.disconnect(conn))
    }

    /// Returns the channels that gained their first receiver.
    fn subscribe(&mut self, conn: ConnId, channels: Vec<String>) -> Vec<String> {
        strings(self.inner.subscribe(conn, &channels))
    }

    /// Returns the channels that lost their last receiver. Nothing of `channels` reaches the
    /// connection after this returns.
    fn unsubscribe(&mut self, conn: ConnId, channels: Vec<String>) -> Vec<String> {
        strings(self.inner.unsubscribe(conn, &channels))
    }

    /// `updates` for `conn` alone, in its format, as bytes to write after its queued frames
    /// (`take_outbox` first): snapshots when `snapshot`, refreshes when `refresh` (data back
    /// after the channels were stale), else the missed updates of a resume (one batch for a
    /// batch-mode client). `None` for an unknown connection or no updates.
    #[pyo3(signature = (conn, updates, snapshot = false, refresh = false))]
    fn frames_for<'py>(
        &mut self,
        py: Python<'py>,
        conn: ConnId,
        updates: &Bound<'py, PyList>,
        snapshot: bool,
        refresh: bool,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let held = held_updates(updates)?;
        let marked = match (snapshot, refresh) {
            (_, true) => Marked::Refresh,
            (true, false) => Marked::Snapshot,
            (false, false) => Marked::Missed,
        };
        Ok(self
            .inner
            .frames_for(conn, &held, marked, now_ms())
            .map(|b| PyBytes::new(py, &b)))
    }

    /// `{channel: seq}`: the last update of each of `conn`'s channels handed out to be written
    /// to it, for channels with nothing still queued for it (what its session records).
    fn delivered(&self, conn: ConnId) -> HashMap<String, u64> {
        self.inner
            .delivered(conn)
            .into_iter()
            .map(|(c, s)| (c.to_string(), s))
            .collect()
    }

    /// Sheds load under overload: 0 none; 1 and 2 leave depth and klines out for
    /// immediate-mode connections; 3 delivers nothing live.
    fn set_shedding(&mut self, level: u8) {
        self.inner.set_shedding(level);
    }

    /// Drops channels the provider refused from every holder: `[(handle, [channel, ...])]`.
    fn drop_channels<'py>(&mut self, py: Python<'py>, channels: Vec<String>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for (id, names) in self.inner.drop_channels(&channels) {
            if let Some(h) = self.handle(py, id) {
                out.append((h, strings(names)))?;
            }
        }
        Ok(out)
    }

    /// Channels `conn` holds, sorted.
    fn channels_of(&self, conn: ConnId) -> Vec<String> {
        strings(self.inner.index().channels_of(conn))
    }

    fn is_subscribed(&self, conn: ConnId, channel: &str) -> bool {
        self.inner.index().is_subscribed(conn, channel)
    }

    /// Every channel with at least one receiver, sorted.
    fn channels(&self) -> Vec<String> {
        strings(self.inner.index().channels())
    }

    /// Raises `InvalidModeError` for a mode or interval the limits do not allow.
    #[pyo3(signature = (mode, interval_ms = 500))]
    fn check_mode(&self, py: Python<'_>, mode: &str, interval_ms: i64) -> PyResult<()> {
        self.parse_mode(py, mode, interval_ms).map(|_| ())
    }

    #[pyo3(signature = (conn, mode, interval_ms = 500))]
    fn set_mode(&mut self, py: Python<'_>, conn: ConnId, mode: &str, interval_ms: i64) -> PyResult<()> {
        let mode = self.parse_mode(py, mode, interval_ms)?;
        self.inner
            .set_mode(conn, mode, now_ms())
            .map_err(|e| to_pyerr(py, e))
    }

    /// `(mode, interval_ms)` of a connection (`interval_ms` 0 in immediate mode).
    fn mode_of(&self, conn: ConnId) -> Option<(&'static str, u32)> {
        self.inner.mode(conn).map(|m| match m {
            Mode::Immediate => ("immediate", 0),
            Mode::Batch { interval_ms } => ("batch", interval_ms),
        })
    }

    /// The edge's socket went over (`True`) or back under (`False`) its high watermark.
    fn set_paused(&mut self, conn: ConnId, paused: bool) {
        self.inner.set_paused(conn, paused, now_ms());
    }

    /// Handles of connections paused past the lag deadline.
    fn lagging<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyAny>> {
        self.inner
            .lagging(now_ms())
            .into_iter()
            .filter_map(|id| self.handle(py, id))
            .collect()
    }

    /// Fans out a list of `Update`s (one provider frame's worth); returns the receivers
    /// reached in all.
    fn publish(&mut self, updates: &Bound<'_, PyList>) -> PyResult<usize> {
        let mut reached = 0;
        for item in updates.iter() {
            let update = item
                .downcast::<PyUpdate>()
                .map_err(|_| PyTypeError::new_err("publish takes a list of tickgate.Update"))?;
            reached += self.inner.publish(&update.get().encoded);
        }
        Ok(reached)
    }

    /// Fans out a bus record (`pack_updates` in the ingest process) without making a Python
    /// object per update; returns `(updates, receivers reached)`. Raises `DecodeError` for a
    /// corrupt record (nothing of it is published).
    fn publish_packed(&mut self, py: Python<'_>, record: &[u8]) -> PyResult<(usize, usize)> {
        let updates = bus::unpack(record).map_err(|e| to_pyerr(py, e))?;
        let count = updates.len();
        let reached = updates
            .into_iter()
            .map(|u| self.inner.publish(&Arc::new(u)))
            .sum();
        Ok((count, reached))
    }

    /// Queued frames of one connection (write them before a reply), or `None`.
    fn take_outbox<'py>(&mut self, py: Python<'py>, conn: ConnId) -> PyResult<Option<Bound<'py, PyBytes>>> {
        self.inner
            .take_outbox(conn)
            .map(|out| ToBytes::new(py).convert(&out))
            .transpose()
    }

    /// Everything due now, as `[(handle, bytes)]`: one entry per connection.
    fn flush<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut flushed = std::mem::take(&mut self.flushed);
        self.inner.flush(now_ms(), &mut flushed);
        let out = PyList::empty(py);
        let mut to_bytes = ToBytes::new(py);
        for (id, outgoing) in flushed.drain(..) {
            if let Some(handle) = self.handle(py, id) {
                out.append((handle, to_bytes.convert(&outgoing)?))?;
            }
        }
        self.flushed = flushed;
        Ok(out)
    }

    /// Like `flush`, but calls each connection's `transport.write` with its bytes here, so the
    /// edge's per-connection write costs no Python bytecode. Returns `[(handle, exception)]`
    /// for the writes that raised (the edge drops those); a connection registered without a
    /// transport is reported there too, with a `TypeError`, rather than losing its bytes.
    ///
    /// The writes run after the dispatcher is released: a write that crosses the socket's
    /// high watermark calls back into `set_paused` from inside the write.
    fn write_out<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyList>> {
        let py = slf.py();
        let mut writes: Vec<PendingWrite<'py>> = Vec::new();
        {
            let mut this = slf.borrow_mut();
            let this = &mut *this;
            let mut flushed = std::mem::take(&mut this.flushed);
            this.inner.flush(now_ms(), &mut flushed);
            let mut to_bytes = ToBytes::new(py);
            for (id, outgoing) in flushed.drain(..) {
                let Some((handle, writer)) = this.handles.get(&id) else {
                    continue;
                };
                let bytes = to_bytes.convert(&outgoing)?;
                writes.push((
                    handle.clone_ref(py),
                    writer.as_ref().map(|w| w.clone_ref(py)),
                    bytes,
                ));
            }
            this.flushed = flushed;
        }
        let failed = PyList::empty(py);
        for (handle, writer, bytes) in writes {
            let result = match writer {
                Some(w) => w
                    .bind(py)
                    .call_method1(intern!(py, "write"), (bytes,))
                    .map(|_| ()),
                None => Err(PyTypeError::new_err("connection registered without a transport")),
            };
            if let Err(e) = result {
                failed.append((handle.bind(py), e.value(py)))?;
            }
        }
        Ok(failed)
    }

    /// A complete server frame for a message the edge built (a reply, an error) in the
    /// connection's format: text for JSON, binary for Protobuf, zstd-compressed for `+zstd`.
    fn frame_message<'py>(
        &mut self,
        py: Python<'py>,
        format: &str,
        payload: &[u8],
    ) -> PyResult<Bound<'py, PyBytes>> {
        let format = parse_format(py, format)?;
        Ok(PyBytes::new(
            py,
            &frame_message(format, payload, self.inner.compressor()),
        ))
    }

    /// The zstd dictionary id in use, if any.
    #[getter]
    fn zstd_dictionary_id(&mut self) -> Option<u32> {
        self.inner.compressor().dictionary_id()
    }

    #[getter]
    fn wheel_tick_ms(&self) -> i64 {
        self.inner.limits().wheel_tick_ms
    }

    #[getter]
    fn connection_count(&self) -> usize {
        self.inner.connection_count()
    }

    #[getter]
    fn channel_count(&self) -> usize {
        self.inner.index().channel_count()
    }

    #[getter]
    fn subscription_count(&self) -> usize {
        self.inner.index().subscription_count()
    }

    /// Counters and gauges for `/metrics`.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
        let d = PyDict::new(py);
        d.set_item("published", s.published)?;
        d.set_item("deliveries", s.deliveries)?;
        d.set_item("conflated", s.conflated)?;
        d.set_item("ticks_dropped", s.ticks_dropped)?;
        d.set_item("batches", s.batches)?;
        d.set_item("batch_encodes", s.batch_encodes)?;
        d.set_item("bytes_out", s.bytes_out)?;
        d.set_item("slow_conflations", s.slow_conflations)?;
        d.set_item("shed", s.shed)?;
        d.set_item("connections", self.inner.connection_count())?;
        d.set_item("batch_connections", self.inner.batch_connection_count())?;
        d.set_item("paused_connections", self.inner.paused_count())?;
        d.set_item("channels", self.inner.index().channel_count())?;
        d.set_item("subscriptions", self.inner.index().subscription_count())?;
        Ok(d)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        for (h, w) in self.handles.values() {
            visit.call(h)?;
            if let Some(w) = w {
                visit.call(w)?;
            }
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.handles.clear();
    }
}
