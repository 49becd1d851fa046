"""tickgate's one catalogue of error codes.

Every error a client, an embedding service or a log sees carries one of these codes. The
Rust core raises the core codes (its exceptions carry them as ``.code``); the gateway's
protocol layer uses the same catalogue for its ``{"type":"error","code":...}`` replies.
docs/protocol.md documents each code in a line.
"""

from __future__ import annotations

from enum import StrEnum

from tickgate._core import DecodeError, InvalidSymbolError, InvalidTypeError

__all__ = [
    "CATALOGUE",
    "DecodeError",
    "ErrorCode",
    "InvalidSymbolError",
    "InvalidTypeError",
]


class ErrorCode(StrEnum):
    INVALID_JSON = "invalid_json"
    INVALID_FRAME = "invalid_frame"
    INVALID_MESSAGE = "invalid_message"
    INVALID_FIELD = "invalid_field"
    UNKNOWN_ACTION = "unknown_action"
    INVALID_SYMBOL = "invalid_symbol"
    INVALID_TYPE = "invalid_type"
    FRAME_TOO_LARGE = "frame_too_large"
    SUBSCRIPTION_LIMIT = "subscription_limit"
    UPSTREAM_REJECTED = "upstream_rejected"
    INTERNAL = "internal"


CATALOGUE: dict[ErrorCode, str] = {
    ErrorCode.INVALID_JSON: "The bytes are not JSON (or not UTF-8).",
    ErrorCode.INVALID_FRAME: "Valid JSON, but not a frame shape the provider sends.",
    ErrorCode.INVALID_MESSAGE: "A client request whose fields are missing or of the wrong type.",
    ErrorCode.INVALID_FIELD: "A provider frame with a required field missing or out of range.",
    ErrorCode.UNKNOWN_ACTION: "A client request with an action the gateway does not know.",
    ErrorCode.INVALID_SYMBOL: "A symbol that is not CODE$REGION or CODE.REGION.",
    ErrorCode.INVALID_TYPE: "A data type other than tick, quote, depth, kline@1..kline@10.",
    ErrorCode.FRAME_TOO_LARGE: "A frame larger than the configured maximum.",
    ErrorCode.SUBSCRIPTION_LIMIT: "A subscription over a configured or provider limit.",
    ErrorCode.UPSTREAM_REJECTED: "The provider refused a subscription the client asked for.",
    ErrorCode.INTERNAL: "A gateway fault; the request was not applied.",
}
