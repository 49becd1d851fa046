"""The client protocol: a superset of the seed article's JSON messages (docs/protocol.md).

``CommandHandler`` turns one client message into pool changes and replies. It never raises
for bad input: every problem becomes a ``{"type":"error","code":...}`` reply to that client
alone, with a code from the catalogue (``tickgate.errors``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from tickgate._core import DecodeError, make_channel, normalize_symbol, normalize_type, split_channel
from tickgate.errors import ErrorCode

if TYPE_CHECKING:
    from tickgate.server.connection import ClientConnection
    from tickgate.upstream.pool import SubscriptionPool

log = logging.getLogger("tickgate.protocol")

DEFAULT_TYPES = ("quote",)
#: The seed's reply to unparsable input; seed clients may match on it.
INVALID_JSON_MSG = "Invalid JSON format"
MAX_ITEMS_PER_REQUEST = 1000


class ProtocolError(Exception):
    def __init__(self, code: ErrorCode, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


_NO_ID = object()


def error_message(code: ErrorCode, msg: str, request_id: Any = _NO_ID, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "error", "code": code.value, "msg": msg, **extra}
    if request_id is not _NO_ID:
        out["id"] = request_id
    return out


def _string_list(message: dict[str, Any], key: str, *, required: bool) -> list[str] | None:
    """A list of strings; a comma-separated string is accepted too (iTick's own style)."""
    value = message.get(key)
    if value is None:
        if required:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, f'"{key}" is required')
        return None
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f'"{key}" must be a list of strings')
    if not value and required:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f'"{key}" must not be empty')
    if len(value) > MAX_ITEMS_PER_REQUEST:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, f'"{key}" holds more than {MAX_ITEMS_PER_REQUEST} items'
        )
    return value


def _canonical(raw: list[str], normalize: Callable[[str], str], code: ErrorCode) -> list[str]:
    """Canonical spellings, duplicates removed, first occurrence kept; the core's error
    becomes a protocol error with ``code``."""
    try:
        return list(dict.fromkeys(normalize(item) for item in raw))
    except DecodeError as e:
        raise ProtocolError(code, str(e)) from None


def _symbols(raw: list[str]) -> list[str]:
    return _canonical(raw, normalize_symbol, ErrorCode.INVALID_SYMBOL)


def _types(raw: list[str]) -> list[str]:
    return _canonical(raw, normalize_type, ErrorCode.INVALID_TYPE)


def describe(channels: list[str]) -> dict[str, list[str]]:
    """``symbols``/``types``/``channels`` lists (sorted) for replies."""
    symbols, types = set(), set()
    for ch in channels:
        symbol, kind = split_channel(ch)
        symbols.add(symbol)
        types.add(kind)
    return {"symbols": sorted(symbols), "types": sorted(types), "channels": sorted(channels)}


class CommandHandler:
    def __init__(self, pool: SubscriptionPool, *, epoch: str, max_channels_per_connection: int) -> None:
        self._pool = pool
        self._epoch = epoch
        self._max_channels = max_channels_per_connection
        self._decoder = msgspec.json.Decoder()
        self.errors_sent = 0

    def handle(self, conn: ClientConnection, payload: bytes) -> None:
        request_id: Any = _NO_ID
        try:
            try:
                message = self._decoder.decode(payload)
            except msgspec.DecodeError:
                raise ProtocolError(ErrorCode.INVALID_JSON, INVALID_JSON_MSG) from None
            if not isinstance(message, dict):
                raise ProtocolError(ErrorCode.INVALID_MESSAGE, "a request must be a JSON object")
            request_id = message.get("id", _NO_ID)
            action = message.get("action")
            if not isinstance(action, str):
                raise ProtocolError(ErrorCode.INVALID_MESSAGE, '"action" is required and must be a string')
            handler = self._actions.get(action)
            if handler is None:
                raise ProtocolError(
                    ErrorCode.UNKNOWN_ACTION,
                    f"unknown action {action[:40]!r}; known: {', '.join(sorted(self._actions))}",
                )
            reply = handler(self, conn, message)
        except ProtocolError as e:
            self.errors_sent += 1
            conn.send_message(error_message(e.code, e.msg, request_id))
            return
        except Exception:
            # A bug must cost this one request, not the connection or the gateway.
            log.exception("request from %r failed", conn)
            self.errors_sent += 1
            conn.send_message(
                error_message(ErrorCode.INTERNAL, "internal error; request not applied", request_id)
            )
            return
        if request_id is not _NO_ID:
            reply["id"] = request_id
        conn.send_message(reply)

    def _subscribe(self, conn: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
        symbols = _symbols(_string_list(message, "symbols", required=True) or [])
        types = _types(_string_list(message, "types", required=False) or list(DEFAULT_TYPES))
        channels = [make_channel(s, t) for s in symbols for t in types]
        index = self._pool.index
        held = index.channels_of(conn)
        new = [c for c in channels if not index.is_subscribed(conn, c)]
        if len(held) + len(new) > self._max_channels:
            raise ProtocolError(
                ErrorCode.SUBSCRIPTION_LIMIT,
                f"subscribing {len(new)} more channels would exceed the limit of {self._max_channels} "
                f"per connection (holding {len(held)})",
            )
        self._pool.subscribe(conn, channels)
        mine = describe(index.channels_of(conn))
        return {
            "type": "success",
            "action": "subscribe",
            "msg": f"Subscribed to {','.join(mine['symbols'])}",
            "symbols": symbols,
            "types": types,
            "channels": channels,
            "epoch": self._epoch,
        }

    def _unsubscribe(self, conn: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
        symbols = _symbols(_string_list(message, "symbols", required=True) or [])
        raw_types = _string_list(message, "types", required=False)
        held = self._pool.index.channels_of(conn)
        if raw_types is None:
            wanted = set(symbols)
            channels = [c for c in held if split_channel(c)[0] in wanted]
        else:
            types = _types(raw_types)
            held_set = set(held)
            channels = [c for c in (make_channel(s, t) for s in symbols for t in types) if c in held_set]
        self._pool.unsubscribe(conn, channels)
        return {
            "type": "success",
            "action": "unsubscribe",
            "msg": f"Unsubscribed from {','.join(symbols)}",
            "symbols": symbols,
            "channels": sorted(channels),
        }

    def _query(self, conn: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
        return {"type": "subscriptions", **describe(self._pool.index.channels_of(conn)), "epoch": self._epoch}

    def _ping(self, conn: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
        return {"type": "pong", "timestamp": int(time.time() * 1000)}

    _actions: ClassVar[
        dict[str, Callable[[CommandHandler, ClientConnection, dict[str, Any]], dict[str, Any]]]
    ] = {
        "subscribe": _subscribe,
        "unsubscribe": _unsubscribe,
        "query_subscribe": _query,
        "ping": _ping,
    }
