//! Encoders: each update is encoded once per format, and the resulting bytes (or the ready
//! WebSocket frame around them) are shared by every receiver.
pub mod json;
pub mod protobuf;
pub mod wsframe;
