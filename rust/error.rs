//! The core's one error type. Each variant maps to a stable code from the project's error
//! catalogue (docs/protocol.md, "Error codes"), which is what clients and logs see.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The bytes are not JSON (or not UTF-8).
    InvalidJson,
    /// Valid JSON, but not a frame shape the provider sends.
    InvalidFrame,
    /// A symbol that is not `CODE$REGION` / `CODE.REGION`.
    InvalidSymbol,
    /// A required field is missing or a field has the wrong type or range.
    InvalidField,
    /// A market-data `type` the core does not know.
    InvalidType,
    /// A frame larger than the configured maximum.
    FrameTooLarge,
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidFrame => "invalid_frame",
            ErrorCode::InvalidSymbol => "invalid_symbol",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::InvalidType => "invalid_type",
            ErrorCode::FrameTooLarge => "frame_too_large",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreError {
    pub code: ErrorCode,
    pub message: String,
}

impl CoreError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        CoreError {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for CoreError {}

pub type CoreResult<T> = Result<T, CoreError>;
