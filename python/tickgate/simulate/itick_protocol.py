"""iTick WebSocket frames: parsing client commands and encoding server replies and market-data pushes.

The shapes follow the iTick section of the providers reference; every server message is its own text frame.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .market import Bar, DepthBook, Symbol, SymbolMarket, Tick, parse_symbol

KLINE_TYPES: dict[str, int] = {f"kline@{period}": period for period in range(1, 11)}
DATA_TYPE_ORDER: tuple[str, ...] = ("tick", "quote", "depth", *KLINE_TYPES)
"""Every subscribable type, in the order pushes for one update go out (the trade first, then its effects)."""
DATA_TYPES = frozenset(DATA_TYPE_ORDER)

SYMBOL_STYLES = ("dot", "dollar")
KLINE_STYLES = ("flat", "nested")

_ECHO_LIMIT = 40  # longest piece of client input quoted back in an error message

_encode = msgspec.json.Encoder().encode
_decoder = msgspec.json.Decoder()


def encode(message: dict[str, Any]) -> bytes:
    return _encode(message)


def decode_command(payload: bytes) -> dict[str, Any] | None:
    """The command object in ``payload``, or None when it is not JSON or not a JSON object."""
    try:
        message = _decoder.decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    return message if isinstance(message, dict) else None


# -- replies -------------------------------------------------------------------------------------------------

GREETING = encode({"code": 1, "msg": "Connected Successfully"})
AUTH_FAILED = encode({"code": 0, "resAc": "auth", "msg": "auth failed"})
SUBSCRIBED = encode({"code": 1, "resAc": "subscribe", "msg": "subscribe Successfully"})
UNSUBSCRIBED = encode({"code": 1, "resAc": "unsubscribe", "msg": "unsubscribe Successfully"})
LIMIT_EXCEEDED = encode({"code": 0, "resAc": "subscribe", "msg": "exceeding the maximum subscription limit"})
INVALID_MESSAGE = encode({"code": 0, "msg": "invalid message"})

MSG_NOT_AUTHENTICATED = "not authenticated"
MSG_UNKNOWN_ACTION = "cannot be resolved action"


def error_reply(action: str, msg: str) -> bytes:
    return encode({"code": 0, "resAc": action, "msg": msg})


def authenticated_reply(token: str) -> bytes:
    return encode({"code": 1, "resAc": "auth", "msg": "authenticated", "data": {"params": token}})


def pong_reply(params: Any) -> bytes:
    # iTick's pong carries no "code" and echoes params exactly as sent (string or number).
    return encode({"resAc": "pong", "data": {"params": params}})


# -- command arguments ---------------------------------------------------------------------------------------


class CommandError(ValueError):
    """A command argument iTick would reject; ``msg`` is what goes back to the client."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg


def _quote_input(text: str) -> str:
    return repr(text if len(text) <= _ECHO_LIMIT else text[:_ECHO_LIMIT] + "...")


def _split_list(value: Any, name: str) -> list[str]:
    """``"A, B,"`` (or ``["A", "B"]``, which some clients send) as its non-empty, stripped items."""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        value = ",".join(value)
    if not isinstance(value, str):
        raise CommandError(f"{name} must be a comma-separated string")
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_symbols(params: Any) -> list[Symbol]:
    """Symbols of a subscribe/unsubscribe command, deduplicated, in order; CommandError on any bad one."""
    items = _split_list(params, "params")
    if not items:
        raise CommandError("params cannot be empty, expected symbols such as AAPL$US,TSLA$US")
    symbols: dict[str, Symbol] = {}
    for item in items:
        symbol = parse_symbol(item)
        if symbol is None:
            raise CommandError(f"invalid symbol {_quote_input(item)}, expected CODE$REGION such as AAPL$US")
        symbols.setdefault(symbol.canonical, symbol)
    return list(symbols.values())


def parse_types(types: Any) -> set[str]:
    """Data types of a command (case-insensitive); CommandError on an unknown or missing one."""
    items = _split_list(types, "types")
    if not items:
        raise CommandError("types cannot be empty, expected tick, quote, depth or kline@1..kline@10")
    parsed: set[str] = set()
    for item in items:
        data_type = item.lower()
        if data_type not in DATA_TYPES:
            raise CommandError(
                f"invalid type {_quote_input(item)}, expected tick, quote, depth or kline@1..kline@10"
            )
        parsed.add(data_type)
    return parsed


# -- market-data pushes --------------------------------------------------------------------------------------


class PushEncoder:
    """Encodes one symbol's update per data type, in the configured symbol and kline styles."""

    def __init__(self, symbol_style: str = "dot", kline_style: str = "flat") -> None:
        if symbol_style not in SYMBOL_STYLES:
            raise ValueError(f"symbol_style must be one of {SYMBOL_STYLES}, not {symbol_style!r}")
        if kline_style not in KLINE_STYLES:
            raise ValueError(f"kline_style must be one of {KLINE_STYLES}, not {kline_style!r}")
        self._dotted = symbol_style == "dot"
        self._nested_kline = kline_style == "nested"

    def label(self, symbol: Symbol) -> str:
        """The ``s`` field of a push."""
        return symbol.dotted if self._dotted else symbol.canonical

    def encode(self, data_type: str, market: SymbolMarket, tick: Tick) -> bytes:
        """The push frame of ``data_type`` for ``market`` right after ``tick``."""
        label = self.label(market.symbol)
        if data_type == "quote":
            return self._quote(label, market)
        if data_type == "tick":
            return self._tick(label, market, tick)
        if data_type == "depth":
            return self._depth(label, market.depth())
        period = KLINE_TYPES[data_type]
        return self._kline(label, data_type, period, market.kline(period))

    @staticmethod
    def _quote(label: str, market: SymbolMarket) -> bytes:
        quote = market.quote()
        return encode(
            {
                "code": 1,
                "data": {
                    "s": label,
                    "ld": quote.last,
                    "o": quote.open,
                    "h": quote.high,
                    "l": quote.low,
                    "p": quote.prev_close,
                    "ch": quote.change,
                    "chp": quote.change_pct,
                    "t": quote.time_ms,
                    "v": quote.volume,
                    "tu": quote.turnover,
                    "ts": quote.status,
                    "type": "quote",
                },
            }
        )

    @staticmethod
    def _tick(label: str, market: SymbolMarket, tick: Tick) -> bytes:
        data: dict[str, Any] = {
            "s": label,
            "ld": tick.price,
            "t": tick.time_ms,
            "v": tick.volume,
            "d": tick.direction,
            "te": 0,
        }
        if market.symbol.region == "BA":
            # Crypto ticks also carry the trade's turnover and the trading status.
            data["tu"] = tick.turnover
            data["ts"] = 0
        data["type"] = "tick"
        return encode({"code": 1, "data": data})

    @staticmethod
    def _depth(label: str, book: DepthBook) -> bytes:
        return encode(
            {
                "code": 1,
                "data": {
                    "s": label,
                    "a": [
                        {"po": level.level, "p": level.price, "v": level.volume, "o": level.orders}
                        for level in book.asks
                    ],
                    "b": [
                        {"po": level.level, "p": level.price, "v": level.volume, "o": level.orders}
                        for level in book.bids
                    ],
                    "type": "depth",
                },
            }
        )

    def _kline(self, label: str, data_type: str, period: int, bar: Bar) -> bytes:
        if self._nested_kline:
            # The second push form seen: code 0, the period code in the outer "t", the bar in "k".
            return encode(
                {
                    "code": 0,
                    "msg": None,
                    "data": {
                        "s": label,
                        "t": period,
                        "k": {
                            "tu": bar.turnover,
                            "c": bar.close,
                            "t": bar.open_time_ms,
                            "v": bar.volume,
                            "h": bar.high,
                            "l": bar.low,
                            "o": bar.open,
                        },
                    },
                }
            )
        return encode(
            {
                "code": 1,
                "data": {
                    "s": label,
                    "o": bar.open,
                    "h": bar.high,
                    "l": bar.low,
                    "c": bar.close,
                    "v": bar.volume,
                    "tu": bar.turnover,
                    "t": bar.open_time_ms,
                    "type": data_type,
                },
            }
        )
