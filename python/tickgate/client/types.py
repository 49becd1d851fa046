"""What the client SDK hands its caller: one typed update per market-data event, the same
whatever the wire format (JSON, Protobuf, Protobuf + zstd), and the connection's events.

Names are the normalized model's (``docs/protocol.md``), in Python spelling: a JSON push's
``lastDealPrice`` and a Protobuf ``Quote.last`` are both ``Quote.last``.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "ConnectionEvent",
    "Depth",
    "DepthLevel",
    "Kline",
    "Quote",
    "Tick",
    "Update",
    "from_json",
    "from_proto",
]


# The structs decode straight from a JSON push's ``data`` (``msgspec.field(name=...)`` is the
# wire's spelling, ``type`` the tag): no dict in between, the fast path of the SDK.


class _Update(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    symbol: str
    #: Per channel, increasing by 1; a skip means updates the gateway never had (see the protocol).
    seq: int
    #: The provider's event time (a kline's bar open time), epoch ms.
    time_ms: int = msgspec.field(default=0, name="tradeTime")
    #: The latest value sent right after a subscribe (or a resume that could not replay).
    snapshot: bool = False

    @property
    def channel(self) -> str:
        return f"{self.symbol}:{self.kind}"

    @property
    def kind(self) -> str:
        """The channel's type: the struct's tag (``quote``, ``tick``, ``depth``), a kline's cycle."""
        return str(self.__struct_config__.tag)


class Quote(_Update, frozen=True, kw_only=True, tag="quote"):
    last: float = msgspec.field(name="lastDealPrice")
    open: float | None = msgspec.field(default=None, name="openPrice")
    high: float | None = msgspec.field(default=None, name="highPrice")
    low: float | None = msgspec.field(default=None, name="lowPrice")
    prev_close: float | None = msgspec.field(default=None, name="prevClose")
    change: float | None = None
    change_percent: float | None = msgspec.field(default=None, name="changePercent")
    volume: float | None = None
    turnover: float | None = None
    status: int = 0


class Tick(_Update, frozen=True, kw_only=True, tag="tick"):
    price: float = msgspec.field(name="lastDealPrice")
    volume: float = 0.0
    #: 0 neutral, 1 sell, 2 buy.
    direction: int = 0
    #: 0 regular, 1 pre-market, 2 after hours.
    session: int = 0
    turnover: float | None = None
    status: int | None = None
    cumulative_volume: float | None = msgspec.field(default=None, name="cumulativeVolume")
    change: float | None = None
    change_percent: float | None = msgspec.field(default=None, name="changePercent")


class DepthLevel(msgspec.Struct, frozen=True):
    position: int = msgspec.field(name="po")
    price: float = msgspec.field(name="p")
    volume: float = msgspec.field(name="v")
    orders: float | None = msgspec.field(default=None, name="o")


class Depth(_Update, frozen=True, kw_only=True, tag="depth"):
    asks: list[DepthLevel] = msgspec.field(default_factory=list, name="ask")
    bids: list[DepthLevel] = msgspec.field(default_factory=list, name="bid")


class Kline(_Update, frozen=True, kw_only=True, tag="kline"):
    # The bar's open time (the wire's ``time``; ``tradeTime`` elsewhere).
    time_ms: int = msgspec.field(default=0, name="time")
    #: The channel's type, ``kline@<minutes>``.
    cycle: str = msgspec.field(default="kline@1", name="klineCycle")
    open: float = msgspec.field(name="openPrice")
    high: float = msgspec.field(name="highPrice")
    low: float = msgspec.field(name="lowPrice")
    close: float = msgspec.field(name="closePrice")
    volume: float | None = None
    turnover: float | None = None

    @property
    def period(self) -> int:
        """Bar length in minutes."""
        return int(self.cycle.partition("@")[2] or 1)

    @property
    def kind(self) -> str:
        return self.cycle


Update = Quote | Tick | Depth | Kline


class ConnectionEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A change the caller may want to see (the stream itself goes on by itself):

    - ``live``: connected (first time);
    - ``reconnecting``: the connection dropped; ``reason`` says why;
    - ``recovered``: back, and every update missed meanwhile was delivered in order;
    - ``not_recovered``: back, but the gap could not be filled (``reason``: ``history_gone``,
      ``epoch_changed``, ``unknown_session``...): snapshots follow, and seqs may skip;
    - ``stale`` / ``ok``: the gateway says ``channels`` stopped / restarted (``reason``:
      ``upstream_down``...);
    - ``token_expired``: the gateway asked for a fresh token (sent if ``token`` is a callable);
    - ``closed``: the client stopped for good (``reason``).
    """

    kind: str
    reason: str = ""
    channels: list[str] = msgspec.field(default_factory=list)


class _Push(msgspec.Struct, frozen=True):
    """A JSON ``stock_quote`` push: ``data`` straight into its typed update."""

    data: Update
    snapshot: bool = False
    refresh: bool = False


class _Batch(msgspec.Struct, frozen=True):
    updates: list[Update]


#: Raise ``msgspec.ValidationError`` for a kind this SDK does not know (then read as a dict).
decode_push = msgspec.json.Decoder(_Push).decode
decode_batch = msgspec.json.Decoder(_Batch).decode


def from_json(data: dict[str, Any], snapshot: bool = False) -> Update | None:
    """An update from a JSON push's ``data`` already decoded to a dict (or a batch entry); None
    for a kind this SDK does not know (a newer gateway)."""
    try:
        update = msgspec.convert(data, Update)
    except msgspec.ValidationError:
        return None
    return msgspec.structs.replace(update, snapshot=True) if snapshot else update


def from_proto(u: Any, snapshot: bool = False) -> Update | None:
    """An update from a ``tickgate.v1.Update``. The schema's field names are the SDK's (but for
    a kline's ``period`` and ``open_time_ms``), so the fields set are taken as they are."""
    which = u.WhichOneof("data")
    if which is None:
        return None
    body = getattr(u, which)
    fields = {f.name: v for f, v in body.ListFields()}
    common = {"symbol": u.symbol, "seq": u.seq, "time_ms": u.event_time_ms, "snapshot": snapshot}
    # proto3 leaves out fields at their zero value (a price of 0): the required ones are read
    # directly, the optional ones are what is set.
    if which == "quote":
        fields.update(last=body.last, status=body.status)
        return Quote(**common, **fields)
    if which == "tick":
        fields.update(
            price=body.price,
            volume=body.volume,
            direction=body.direction,
            session=body.session,
            cumulative_volume=body.cumulative_volume,
        )
        return Tick(**common, **fields)
    if which == "depth":

        def levels(raw: Any) -> list[DepthLevel]:
            return [
                DepthLevel(lv.position, lv.price, lv.volume, lv.orders if lv.HasField("orders") else None)
                for lv in raw
            ]

        return Depth(**common, asks=levels(body.asks), bids=levels(body.bids))
    if which == "kline":
        common["time_ms"] = body.open_time_ms
        fields = {k: v for k, v in fields.items() if k in ("volume", "turnover")}
        return Kline(
            **common,
            cycle=f"kline@{body.period or 1}",
            open=body.open,
            high=body.high,
            low=body.low,
            close=body.close,
            **fields,
        )
    return None
