"""The pure-Python baseline the core is measured against: the same decode -> normalize ->
derive -> sequence -> seed-JSON encode -> WebSocket frame pipeline, written the way a
careful Python developer would with msgspec (typed Structs for decoding, msgspec's JSON
encoder, memoized symbol normalization). tests/test_baseline_parity.py checks it produces
the same JSON as the core, so the comparison is like for like.
"""

from __future__ import annotations

import struct
import time
from typing import Any

import msgspec

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
FIXED_OFFSETS = {"HK": 8, "SH": 8, "SZ": 8, "SG": 8, "TW": 8, "CN": 8, "JP": 9, "KR": 9}
KLINE_TYPES = {f"kline@{n}": n for n in range(1, 11)}


class Level(msgspec.Struct):
    p: float
    po: int | None = None
    v: float | None = None
    o: float | None = None


class Bar(msgspec.Struct):
    o: float
    h: float
    l: float  # noqa: E741 - iTick's field name
    c: float
    t: int
    v: float | None = None
    tu: float | None = None


class Data(msgspec.Struct):
    s: str | None = None
    type: str | None = None
    ld: float | None = None
    o: float | None = None
    h: float | None = None
    l: float | None = None  # noqa: E741 - iTick's field name
    c: float | None = None
    p: float | None = None
    ch: float | None = None
    chp: float | None = None
    v: float | None = None
    tu: float | None = None
    t: int | None = None
    ts: int | None = None
    d: int | None = None
    te: int | None = None
    a: list[Level] | None = None
    b: list[Level] | None = None
    k: Bar | None = None
    params: str | int | None = None


class Frame(msgspec.Struct):
    code: int | None = None
    resAc: str | None = None
    msg: str | None = None
    data: Data | None = None


class _SymbolState:
    __slots__ = ("cum_volume", "day", "first_open", "prev_close", "region", "seqs")

    def __init__(self, region: str) -> None:
        self.region = region
        self.day: int | None = None
        self.prev_close: float | None = None
        self.first_open: float | None = None
        self.cum_volume = 0.0
        self.seqs: dict[str, int] = {}


def _us_offset_hours(epoch_ms: int) -> int:
    t = time.gmtime(epoch_ms / 1000)
    year = t.tm_year
    # Second Sunday of March 07:00 UTC to first Sunday of November 06:00 UTC.
    march1 = time.struct_time((year, 3, 1, 0, 0, 0, 0, 0, 0))
    nov1 = time.struct_time((year, 11, 1, 0, 0, 0, 0, 0, 0))
    import calendar

    m1 = calendar.timegm(march1)
    n1 = calendar.timegm(nov1)
    start = m1 + ((6 - time.gmtime(m1).tm_wday) % 7 + 7) * 86400 + 7 * 3600
    end = n1 + ((6 - time.gmtime(n1).tm_wday) % 7) * 86400 + 6 * 3600
    return -4 if start <= epoch_ms / 1000 < end else -5


def _r(x: float, decimals: int) -> float:
    return round(x, decimals)


class MsgspecPipeline:
    def __init__(self) -> None:
        self._decoder = msgspec.json.Decoder(Frame)
        self._encoder = msgspec.json.Encoder()
        self._symbols: dict[str, str] = {}
        self._state: dict[str, _SymbolState] = {}
        self._us_offsets: dict[int, int] = {}

    def _canonical(self, raw: str) -> str:
        sym = self._symbols.get(raw)
        if sym is None:
            at = raw.rfind("$")
            if at < 0:
                at = raw.rfind(".")
            code, region = raw[:at], raw[at + 1 :]
            if at <= 0 or not (2 <= len(region) <= 3) or not region.isalpha():
                raise ValueError(f"invalid symbol {raw!r}")
            sym = self._symbols[raw] = f"{code.upper()}${region.upper()}"
        return sym

    def _day(self, region: str, t: int) -> int:
        if region == "US":
            hour = t // HOUR_MS
            off = self._us_offsets.get(hour)
            if off is None:
                off = self._us_offsets[hour] = _us_offset_hours(t)
        else:
            off = FIXED_OFFSETS.get(region, 0)
        return (t + off * HOUR_MS) // DAY_MS

    def _change(self, st: _SymbolState, price: float) -> tuple[float | None, float | None]:
        ref = st.prev_close if st.prev_close is not None else st.first_open
        if not ref:
            return None, None
        ch = price - ref
        return _r(ch, 8), _r(ch / ref * 100, 4)

    def process(self, raw: bytes, recv_ms: int) -> bytes | None:
        """One provider frame to one ready WebSocket frame (None for control frames)."""
        f = self._decoder.decode(raw)
        d = f.data
        if f.resAc is not None or d is None or (d.type is None and d.k is None):
            return None
        symbol = self._canonical(d.s or "")
        st = self._state.get(symbol)
        if st is None:
            st = self._state[symbol] = _SymbolState(symbol.rsplit("$", 1)[1])
        kind = d.type if d.k is None else f"kline@{d.t}"
        t = (d.k.t if d.k is not None else d.t) or recv_ms
        day = self._day(st.region, t)
        if st.day is None or day > st.day:
            st.day, st.prev_close, st.first_open, st.cum_volume = day, None, None, 0.0
        seq = st.seqs[kind] = st.seqs.get(kind, 0) + 1
        out: dict[str, Any] = {"symbol": symbol}
        if kind == "quote":
            if d.p:
                st.prev_close = d.p
            if st.first_open is None:
                st.first_open = d.o or d.ld
            ch, chp = self._change(st, d.ld)  # type: ignore[arg-type]
            out["lastDealPrice"] = d.ld
            for key, val in (
                ("openPrice", d.o),
                ("highPrice", d.h),
                ("lowPrice", d.l),
                ("volume", d.v),
                ("turnover", d.tu),
            ):
                if val is not None:
                    out[key] = val
            out["tradeTime"] = t
            out["type"] = "quote"
            prev = d.p or st.prev_close
            for key, val in (
                ("prevClose", prev),
                ("change", d.ch if d.ch is not None else ch),
                ("changePercent", d.chp if d.chp is not None else chp),
            ):
                if val is not None:
                    out[key] = val
            out["status"] = d.ts or 0
        elif kind == "tick":
            if st.first_open is None:
                st.first_open = d.ld
            st.cum_volume += d.v or 0.0
            ch, chp = self._change(st, d.ld)  # type: ignore[arg-type]
            out.update(
                lastDealPrice=d.ld,
                volume=d.v or 0,
                tradeTime=t,
                type="tick",
                direction=d.d if d.d in (1, 2) else 0,
                session=d.te if d.te in (1, 2) else 0,
            )
            if d.tu is not None:
                out["turnover"] = d.tu
            if d.ts is not None:
                out["status"] = d.ts
            out["cumulativeVolume"] = _r(st.cum_volume, 8)
            if ch is not None:
                out["change"], out["changePercent"] = ch, chp
        elif kind == "depth":
            out["ask"] = [_level(lv, i) for i, lv in enumerate(d.a or ())]
            out["bid"] = [_level(lv, i) for i, lv in enumerate(d.b or ())]
            out["tradeTime"] = t
            out["type"] = "depth"
        elif kind in KLINE_TYPES:
            bar = d.k or d
            out.update(closePrice=bar.c, highPrice=bar.h, lowPrice=bar.l, openPrice=bar.o)
            if bar.v is not None:
                out["volume"] = bar.v
            if bar.tu is not None:
                out["turnover"] = bar.tu
            out.update(time=t, klineCycle=kind, type="kline")
        else:
            raise ValueError(f"unknown type {kind!r}")
        out["seq"] = seq
        payload = self._encoder.encode({"type": "stock_quote", "data": out, "timestamp": recv_ms})
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x81, n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x81, 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 127, n)
        return header + payload


def _level(lv: Level, i: int) -> dict[str, Any]:
    out: dict[str, Any] = {"po": lv.po if lv.po is not None else i + 1, "p": lv.p, "v": lv.v or 0}
    if lv.o is not None:
        out["o"] = lv.o
    return out
