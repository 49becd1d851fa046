"""tickgate: a real-time market-data push gateway.

The hot path (decode, normalize, derive, sequence, encode, fan-out index) is the Rust
extension ``tickgate._core``; this package is its public face.
"""

from __future__ import annotations

from tickgate._core import (
    SUBPROTOCOLS,
    ControlEvent,
    Dispatcher,
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
from tickgate.config import ConfigError, GatewayConfig, load_config
from tickgate.errors import (
    CATALOGUE,
    DecodeError,
    ErrorCode,
    InvalidModeError,
    InvalidSymbolError,
    InvalidTypeError,
)

__all__ = [
    "CATALOGUE",
    "SUBPROTOCOLS",
    "ConfigError",
    "ControlEvent",
    "DecodeError",
    "Dispatcher",
    "ErrorCode",
    "FeedProcessor",
    "FrameError",
    "Gateway",
    "GatewayConfig",
    "InvalidModeError",
    "InvalidSymbolError",
    "InvalidTypeError",
    "ItickAdapter",
    "SubscriptionIndex",
    "SubscriptionPool",
    "Update",
    "__version__",
    "load_config",
    "make_channel",
    "normalize_symbol",
    "normalize_type",
    "split_channel",
    "ws_frame",
]


def __getattr__(name: str) -> object:
    # The server side pulls in picows and prometheus-client; load it only when asked for, so
    # `import tickgate` stays light for code that only uses the core.
    if name == "Gateway":
        from tickgate.gateway import Gateway

        return Gateway
    if name in ("ItickAdapter", "SubscriptionPool"):
        from tickgate import upstream

        return getattr(upstream, name)
    raise AttributeError(f"module 'tickgate' has no attribute {name!r}")
