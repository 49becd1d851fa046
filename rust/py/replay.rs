//! `ReplayRing` for Python: the ingest appends each frame's updates; resume and snapshots read.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use super::dispatcher::held_updates;
use super::update::PyUpdate;
use crate::model::kind::KLINE_PERIODS;
use crate::model::{channel_name, Kind};
use crate::state::now_ms;
use crate::state::replay::{Replay, ReplayLimits, ReplayRing};

#[pyclass(module = "tickgate._core", name = "ReplayRing")]
pub struct PyReplayRing {
    inner: ReplayRing,
}

#[pymethods]
impl PyReplayRing {
    #[new]
    #[pyo3(signature = (*, window_ms, max_bytes))]
    fn new(window_ms: i64, max_bytes: usize) -> Self {
        PyReplayRing {
            inner: ReplayRing::new(ReplayLimits { window_ms, max_bytes }),
        }
    }

    /// Keeps `updates` (one provider frame's, in order), dropping what ages out.
    fn append(&mut self, updates: &Bound<'_, PyList>) -> PyResult<()> {
        let now = now_ms();
        for u in held_updates(updates)? {
            self.inner.append(&u, now);
        }
        Ok(())
    }

    /// Drops what is older than the window (call now and then when no updates come).
    fn evict(&mut self) {
        self.inner.evict(now_ms());
    }

    /// Every update on `channel` after `after_seq` (`last_seq`: the processor's latest seq on
    /// it), in order; `None` when the ring no longer reaches back that far.
    fn since(
        &self,
        py: Python<'_>,
        channel: &str,
        after_seq: u64,
        last_seq: u64,
    ) -> PyResult<Option<Py<PyList>>> {
        match self.inner.since(channel, after_seq, last_seq) {
            Replay::Gap => Ok(None),
            Replay::Updates(us) => {
                let out = PyList::empty(py);
                for u in us {
                    out.append(Bound::new(py, PyUpdate::new(u))?)?;
                }
                Ok(Some(out.unbind()))
            }
        }
    }

    /// Drops everything held for every channel of `symbols` (their state was released).
    fn forget_symbols(&mut self, symbols: Vec<String>) {
        let kinds = [Kind::Tick, Kind::Quote, Kind::Depth]
            .into_iter()
            .chain((1..=KLINE_PERIODS).map(Kind::Kline));
        let channels: Vec<String> = kinds
            .flat_map(|k| symbols.iter().map(move |s| channel_name(s, k)))
            .collect();
        self.inner.forget(&channels);
    }

    /// The latest update seen on `channel`, however old, or `None`.
    fn latest(&self, py: Python<'_>, channel: &str) -> PyResult<Option<Py<PyUpdate>>> {
        self.inner
            .latest(channel)
            .map(|u| Py::new(py, PyUpdate::new(Arc::clone(u))))
            .transpose()
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
        let d = PyDict::new(py);
        d.set_item("updates", s.updates)?;
        d.set_item("bytes", s.bytes)?;
        d.set_item("channels", s.channels)?;
        d.set_item("evicted_by_age", s.evicted_by_age)?;
        d.set_item("evicted_by_size", s.evicted_by_size)?;
        Ok(d)
    }
}
