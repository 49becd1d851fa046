//! Per-symbol state held by the core: trading days, derived fields, sequence numbers.
pub mod calendar;
pub mod derive;
pub mod processor;
pub mod released;
pub mod replay;
pub mod sanity;

pub use processor::{now_ms, Event, FeedProcessor, ProcessorConfig};
