//! `SubscriptionIndex` for Python. Connections are any Python objects (the gateway passes
//! its connection objects), keyed by identity; `receivers()` returns a cached tuple of those
//! objects, rebuilt only after the channel's membership changes, so the per-update cost of
//! finding receivers is one hash lookup.

use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use pyo3::PyTraverseError;
use rustc_hash::FxHashMap;

use crate::fanout::{Change, ChannelId, ConnId, SubscriptionIndex};

#[pyclass(module = "tickgate._core", name = "SubscriptionIndex", weakref)]
#[derive(Default)]
pub struct PySubscriptionIndex {
    index: SubscriptionIndex,
    /// Strong references to subscribed connections: identity keys stay valid while held.
    handles: FxHashMap<ConnId, Py<PyAny>>,
    receivers: FxHashMap<ChannelId, Py<PyTuple>>,
}

fn conn_id(handle: &Bound<'_, PyAny>) -> ConnId {
    handle.as_ptr() as usize as ConnId
}

impl PySubscriptionIndex {
    fn apply<'py>(
        &mut self,
        py: Python<'py>,
        changes: impl IntoIterator<Item = Change>,
    ) -> PyResult<Bound<'py, PyList>> {
        let edges = PyList::empty(py);
        for c in changes {
            self.receivers.remove(&c.channel);
            if c.edge {
                edges.append(&*c.name)?;
            }
        }
        Ok(edges)
    }

    fn forget_if_idle(&mut self, conn: ConnId) {
        if self.index.channels_of(conn).is_empty() {
            self.handles.remove(&conn);
        }
    }
}

#[pymethods]
impl PySubscriptionIndex {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Subscribes `conn` to `channels`; returns the channels that gained their first
    /// receiver (what upstream must now subscribe).
    fn subscribe<'py>(
        &mut self,
        py: Python<'py>,
        conn: &Bound<'py, PyAny>,
        channels: Vec<String>,
    ) -> PyResult<Bound<'py, PyList>> {
        let id = conn_id(conn);
        let changes: Vec<Change> = channels
            .iter()
            .filter_map(|c| self.index.subscribe(id, c))
            .collect();
        if !changes.is_empty() {
            self.handles.entry(id).or_insert_with(|| conn.clone().unbind());
        }
        self.apply(py, changes)
    }

    /// Unsubscribes `conn` from `channels`; returns the channels that lost their last
    /// receiver (what upstream may now drop).
    fn unsubscribe<'py>(
        &mut self,
        py: Python<'py>,
        conn: &Bound<'py, PyAny>,
        channels: Vec<String>,
    ) -> PyResult<Bound<'py, PyList>> {
        let id = conn_id(conn);
        let changes: Vec<Change> = channels
            .iter()
            .filter_map(|c| self.index.unsubscribe(id, c))
            .collect();
        self.forget_if_idle(id);
        self.apply(py, changes)
    }

    /// Removes `conn` from every channel; returns the channels that lost their last receiver.
    fn remove<'py>(&mut self, py: Python<'py>, conn: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let id = conn_id(conn);
        let changes = self.index.remove_connection(id);
        self.handles.remove(&id);
        self.apply(py, changes)
    }

    /// The connections subscribed to `channel`, as a tuple (empty if none).
    fn receivers<'py>(&mut self, py: Python<'py>, channel: &str) -> PyResult<Bound<'py, PyTuple>> {
        let Some(id) = self.index.channel_id(channel) else {
            return Ok(PyTuple::empty(py));
        };
        if let Some(t) = self.receivers.get(&id) {
            return Ok(t.bind(py).clone());
        }
        let handles = &self.handles;
        let tuple = PyTuple::new(py, self.index.receivers_of(id).map(|c| handles[&c].bind(py)))?;
        self.receivers.insert(id, tuple.clone().unbind());
        Ok(tuple)
    }

    fn count(&self, channel: &str) -> usize {
        self.index.receiver_count(channel)
    }

    fn is_subscribed(&self, conn: &Bound<'_, PyAny>, channel: &str) -> bool {
        self.index.is_subscribed(conn_id(conn), channel)
    }

    /// Channels `conn` is subscribed to, sorted.
    fn channels_of(&self, conn: &Bound<'_, PyAny>) -> Vec<String> {
        self.index
            .channels_of(conn_id(conn))
            .iter()
            .map(|c| c.to_string())
            .collect()
    }

    /// Every channel with at least one receiver, sorted.
    fn channels(&self) -> Vec<String> {
        self.index.channels().iter().map(|c| c.to_string()).collect()
    }

    #[getter]
    fn channel_count(&self) -> usize {
        self.index.channel_count()
    }

    #[getter]
    fn connection_count(&self) -> usize {
        self.index.connection_count()
    }

    /// Total (connection, channel) pairs.
    fn __len__(&self) -> usize {
        self.index.subscription_count()
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        for h in self.handles.values() {
            visit.call(h)?;
        }
        for t in self.receivers.values() {
            visit.call(t)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.receivers.clear();
        self.handles.clear();
        self.index = SubscriptionIndex::new();
    }
}
