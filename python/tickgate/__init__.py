"""tickgate: a real-time market-data push gateway.

The hot path (decode, normalize, derive, sequence, encode, fan-out index) is the Rust
extension ``tickgate._core``; this package is its public face.
"""

from __future__ import annotations

from tickgate._core import (
    ControlEvent,
    FeedProcessor,
    FrameError,
    SubscriptionIndex,
    Update,
    __version__,
    make_channel,
    normalize_symbol,
    normalize_type,
    split_channel,
    ws_frame,
)
from tickgate.errors import (
    CATALOGUE,
    DecodeError,
    ErrorCode,
    InvalidSymbolError,
    InvalidTypeError,
)

__all__ = [
    "CATALOGUE",
    "ControlEvent",
    "DecodeError",
    "ErrorCode",
    "FeedProcessor",
    "FrameError",
    "InvalidSymbolError",
    "InvalidTypeError",
    "SubscriptionIndex",
    "Update",
    "__version__",
    "make_channel",
    "normalize_symbol",
    "normalize_type",
    "split_channel",
    "ws_frame",
]
