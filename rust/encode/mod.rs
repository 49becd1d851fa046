//! Encoders: each update is encoded once per format, and the resulting bytes (or the ready
//! WebSocket frame around them) are shared by every receiver.
pub mod bus;
pub mod encoded;
pub mod format;
pub mod json;
pub mod protobuf;
pub mod wsframe;

pub use encoded::EncodedUpdate;
pub use format::{Compressor, Format};
