//! The one error-code catalogue. Every code a client, an embedding service or a log sees is a
//! variant here; Python builds its `ErrorCode` enum from `ErrorCode::ALL` (exported by
//! `rust/py`), and docs/protocol.md's table is checked against it by a test.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The bytes are not JSON (or not UTF-8).
    InvalidJson,
    /// Valid JSON, but not a frame shape the provider sends.
    InvalidFrame,
    /// A client request whose fields are missing or of the wrong type.
    InvalidMessage,
    /// A provider frame with a required field missing or out of range.
    InvalidField,
    /// A client request with an action the gateway does not know.
    UnknownAction,
    /// A symbol that is not `CODE$REGION` / `CODE.REGION`.
    InvalidSymbol,
    /// A market-data `type` the core does not know.
    InvalidType,
    /// A delivery mode or batch interval the gateway does not allow.
    InvalidMode,
    /// A frame larger than the configured maximum.
    FrameTooLarge,
    /// A subscribe that would take the connection past its subscription cap.
    TooManySubscriptions,
    /// The provider refused a subscription the client asked for.
    UpstreamRejected,
    /// A subscribe that needs new upstream symbols past the provider's limit or the client's
    /// fair share of it.
    Capacity,
    /// A client sending commands faster than its rate limit allows.
    RateLimited,
    /// A client that did not read fast enough; it is closed with 1013.
    SlowConsumer,
    /// A connection without a valid token where one is required (closed with 4001).
    Unauthenticated,
    /// The connection's token expired; a fresh `auth` is needed within the grace period.
    TokenExpired,
    /// A subscription outside what the client's token entitles it to.
    NotEntitled,
    /// A gateway fault; the request was not applied.
    Internal,
}

impl ErrorCode {
    /// Every code, in catalogue order.
    pub const ALL: [ErrorCode; 18] = [
        ErrorCode::InvalidJson,
        ErrorCode::InvalidFrame,
        ErrorCode::InvalidMessage,
        ErrorCode::InvalidField,
        ErrorCode::UnknownAction,
        ErrorCode::InvalidSymbol,
        ErrorCode::InvalidType,
        ErrorCode::InvalidMode,
        ErrorCode::FrameTooLarge,
        ErrorCode::TooManySubscriptions,
        ErrorCode::UpstreamRejected,
        ErrorCode::Capacity,
        ErrorCode::RateLimited,
        ErrorCode::SlowConsumer,
        ErrorCode::Unauthenticated,
        ErrorCode::TokenExpired,
        ErrorCode::NotEntitled,
        ErrorCode::Internal,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidFrame => "invalid_frame",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::UnknownAction => "unknown_action",
            ErrorCode::InvalidSymbol => "invalid_symbol",
            ErrorCode::InvalidType => "invalid_type",
            ErrorCode::InvalidMode => "invalid_mode",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::UpstreamRejected => "upstream_rejected",
            ErrorCode::Capacity => "capacity",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::SlowConsumer => "slow_consumer",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::NotEntitled => "not_entitled",
            ErrorCode::Internal => "internal",
        }
    }

    /// One line for the docs table and `tickgate.CATALOGUE`.
    pub const fn description(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "The bytes are not JSON (or not UTF-8).",
            ErrorCode::InvalidFrame => "Valid JSON, but not a frame shape the provider sends.",
            ErrorCode::InvalidMessage => "A client request whose fields are missing or of the wrong type.",
            ErrorCode::InvalidField => "A provider frame with a required field missing or out of range.",
            ErrorCode::UnknownAction => "A client request with an action the gateway does not know.",
            ErrorCode::InvalidSymbol => "A symbol that is not CODE$REGION or CODE.REGION.",
            ErrorCode::InvalidType => "A data type other than tick, quote, depth, kline@1..kline@10.",
            ErrorCode::InvalidMode => {
                "A delivery mode other than immediate or batch, or a batch interval out of range."
            }
            ErrorCode::FrameTooLarge => "A frame larger than the configured maximum.",
            ErrorCode::TooManySubscriptions => {
                "A subscribe past the connection's subscription cap; nothing is applied."
            }
            ErrorCode::UpstreamRejected => "The provider refused a subscription the client asked for.",
            ErrorCode::Capacity => {
                "A subscribe needing new upstream symbols past the provider's limit or the client's share."
            }
            ErrorCode::RateLimited => "A command over the connection's rate limit; it is not applied.",
            ErrorCode::SlowConsumer => "The client did not read fast enough; it is closed with 1013.",
            ErrorCode::Unauthenticated => {
                "No valid token where one is required; the connection is closed with 4001."
            }
            ErrorCode::TokenExpired => {
                "The connection's token expired: send a fresh auth within the grace period, or be closed."
            }
            ErrorCode::NotEntitled => {
                "A subscription outside what the client's token allows; nothing is applied."
            }
            ErrorCode::Internal => "A gateway fault; the request was not applied.",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_complete_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{} twice", code.as_str());
            assert!(code.as_str().chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            assert!(code.description().ends_with('.'));
        }
    }
}
