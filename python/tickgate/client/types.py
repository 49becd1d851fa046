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


class _Update(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    #: Per channel, increasing by 1; a skip means updates the gateway never had (see the protocol).
    seq: int
    #: The provider's event time (a kline's bar open time), epoch ms.
    time_ms: int
    #: The latest value sent right after a subscribe (or a resume that could not replay).
    snapshot: bool = False

    @property
    def channel(self) -> str:
        return f"{self.symbol}:{self.kind}"

    @property
    def kind(self) -> str:
        raise NotImplementedError


class Quote(_Update, frozen=True, kw_only=True):
    last: float
    open: float | None = None
    high: float | None = None
    low: float | None = None
    prev_close: float | None = None
    change: float | None = None
    change_percent: float | None = None
    volume: float | None = None
    turnover: float | None = None
    status: int = 0

    @property
    def kind(self) -> str:
        return "quote"


class Tick(_Update, frozen=True, kw_only=True):
    price: float
    volume: float
    #: 0 neutral, 1 sell, 2 buy.
    direction: int = 0
    #: 0 regular, 1 pre-market, 2 after hours.
    session: int = 0
    turnover: float | None = None
    status: int | None = None
    cumulative_volume: float | None = None
    change: float | None = None
    change_percent: float | None = None

    @property
    def kind(self) -> str:
        return "tick"


class DepthLevel(msgspec.Struct, frozen=True, array_like=True):
    position: int
    price: float
    volume: float
    orders: float | None = None


class Depth(_Update, frozen=True, kw_only=True):
    asks: list[DepthLevel]
    bids: list[DepthLevel]

    @property
    def kind(self) -> str:
        return "depth"


class Kline(_Update, frozen=True, kw_only=True):
    #: Bar length in minutes (the channel is ``kline@<period>``).
    period: int
    open: float
    high: float
    low: float
    close: float
    volume: float | None = None
    turnover: float | None = None

    @property
    def kind(self) -> str:
        return f"kline@{self.period}"


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


def _levels(raw: Any) -> list[DepthLevel]:
    return [DepthLevel(lv.get("po", i + 1), lv["p"], lv["v"], lv.get("o")) for i, lv in enumerate(raw or ())]


def from_json(data: dict[str, Any], snapshot: bool = False) -> Update | None:
    """An update from a JSON push's ``data`` (or a batch entry); None for a kind this SDK
    does not know (a newer gateway)."""
    kind = data.get("type")
    common = {"symbol": data["symbol"], "seq": data["seq"], "snapshot": snapshot}
    if kind == "quote":
        return Quote(
            **common,
            time_ms=data.get("tradeTime", 0),
            last=data["lastDealPrice"],
            open=data.get("openPrice"),
            high=data.get("highPrice"),
            low=data.get("lowPrice"),
            prev_close=data.get("prevClose"),
            change=data.get("change"),
            change_percent=data.get("changePercent"),
            volume=data.get("volume"),
            turnover=data.get("turnover"),
            status=data.get("status", 0),
        )
    if kind == "tick":
        return Tick(
            **common,
            time_ms=data.get("tradeTime", 0),
            price=data["lastDealPrice"],
            volume=data.get("volume", 0.0),
            direction=data.get("direction", 0),
            session=data.get("session", 0),
            turnover=data.get("turnover"),
            status=data.get("status"),
            cumulative_volume=data.get("cumulativeVolume"),
            change=data.get("change"),
            change_percent=data.get("changePercent"),
        )
    if kind == "depth":
        return Depth(
            **common,
            time_ms=data.get("tradeTime", 0),
            asks=_levels(data.get("ask")),
            bids=_levels(data.get("bid")),
        )
    if kind == "kline":
        cycle = str(data.get("klineCycle", "kline@1"))
        return Kline(
            **common,
            time_ms=data.get("time", 0),
            period=int(cycle.partition("@")[2] or 1),
            open=data["openPrice"],
            high=data["highPrice"],
            low=data["lowPrice"],
            close=data["closePrice"],
            volume=data.get("volume"),
            turnover=data.get("turnover"),
        )
    return None


def _opt(message: Any, name: str) -> Any:
    return getattr(message, name) if message.HasField(name) else None


def from_proto(u: Any, snapshot: bool = False) -> Update | None:
    """An update from a ``tickgate.v1.Update``."""
    common = {"symbol": u.symbol, "seq": u.seq, "time_ms": u.event_time_ms, "snapshot": snapshot}
    which = u.WhichOneof("data")
    if which == "quote":
        q = u.quote
        return Quote(
            **common,
            last=q.last,
            open=_opt(q, "open"),
            high=_opt(q, "high"),
            low=_opt(q, "low"),
            prev_close=_opt(q, "prev_close"),
            change=_opt(q, "change"),
            change_percent=_opt(q, "change_percent"),
            volume=_opt(q, "volume"),
            turnover=_opt(q, "turnover"),
            status=q.status,
        )
    if which == "tick":
        t = u.tick
        return Tick(
            **common,
            price=t.price,
            volume=t.volume,
            direction=t.direction,
            session=t.session,
            turnover=_opt(t, "turnover"),
            status=_opt(t, "status"),
            cumulative_volume=t.cumulative_volume,
            change=_opt(t, "change"),
            change_percent=_opt(t, "change_percent"),
        )
    if which == "depth":

        def levels(raw: Any) -> list[DepthLevel]:
            return [DepthLevel(lv.position, lv.price, lv.volume, _opt(lv, "orders")) for lv in raw]

        return Depth(**common, asks=levels(u.depth.asks), bids=levels(u.depth.bids))
    if which == "kline":
        k = u.kline
        return Kline(
            **{**common, "time_ms": k.open_time_ms},
            period=k.period,
            open=k.open,
            high=k.high,
            low=k.low,
            close=k.close,
            volume=_opt(k, "volume"),
            turnover=_opt(k, "turnover"),
        )
    return None
