"""tickgate's error codes, read from the one catalogue in the Rust core (``rust/error.rs``).

Every error a client, an embedding service or a log sees carries one of these codes. The
core's exceptions carry them as ``.code``; the edge's ``{"type":"error","code":...}`` replies
use the same enum. docs/protocol.md's table is checked against the catalogue by a test.
"""

from __future__ import annotations

from enum import StrEnum

from tickgate._core import (
    DecodeError,
    InvalidModeError,
    InvalidSymbolError,
    InvalidTypeError,
    error_catalogue,
)

__all__ = [
    "CATALOGUE",
    "DecodeError",
    "ErrorCode",
    "InvalidModeError",
    "InvalidSymbolError",
    "InvalidTypeError",
]

ErrorCode = StrEnum("ErrorCode", [(code.upper(), code) for code, _ in error_catalogue()])  # type: ignore[misc]
ErrorCode.__doc__ = "The catalogue's codes: ``ErrorCode.INVALID_JSON == 'invalid_json'``, ..."

#: code -> one-line description, in catalogue order.
CATALOGUE: dict[ErrorCode, str] = {ErrorCode(code): text for code, text in error_catalogue()}
