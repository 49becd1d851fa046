//! tickgate's core: provider frames in, normalized, sequenced, encoded bytes out. No I/O.
//!
//! Everything outside `py` is plain Rust (tested with `cargo test`, no Python needed); `py`
//! holds the only PyO3 code, thin wrappers that translate types and errors.

pub mod encode;
pub mod error;
pub mod fanout;
pub mod model;
pub mod providers;
pub mod state;

#[cfg(feature = "python")]
mod py;

pub use error::{CoreError, CoreResult, ErrorCode};
pub use fanout::SubscriptionIndex;
pub use state::{Event, FeedProcessor, ProcessorConfig};
