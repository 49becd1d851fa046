"""A deterministic, seeded market: one random walk per symbol and everything derived from it.

Every symbol owns its own random streams, seeded from ``(seed, symbol)`` with a stable hash, so a symbol's
price path depends only on the seed and on how many ticks it has produced: not on the process, on which other
symbols exist, or on which data types anyone asked for. Quotes, depth and klines are views of the same state,
so two consumers of the same symbol always see the same, mutually consistent numbers.
"""

from __future__ import annotations

import math
import random
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

Price = float | int
"""Prices are floats, except in integer-priced markets (JP) where ints keep them printing as ``1234``."""

MS_PER_MINUTE = 60_000
MS_PER_HOUR = 60 * MS_PER_MINUTE
MS_PER_DAY = 24 * MS_PER_HOUR
MS_PER_WEEK = 7 * MS_PER_DAY
# 1970-01-01 was a Thursday; weekly bars open on Monday 00:00 UTC, four days later in the cycle.
_WEEK_ORIGIN_MS = 4 * MS_PER_DAY
MONTH_PERIOD = 10
"""kline period code whose bars are calendar months (UTC) rather than a fixed duration."""

KLINE_PERIOD_MS: dict[int, int] = {
    1: MS_PER_MINUTE,
    2: 5 * MS_PER_MINUTE,
    3: 10 * MS_PER_MINUTE,
    4: 30 * MS_PER_MINUTE,
    5: MS_PER_HOUR,
    6: 2 * MS_PER_HOUR,
    7: 4 * MS_PER_HOUR,
    8: MS_PER_DAY,
    9: MS_PER_WEEK,
}
"""iTick kline period codes with a fixed duration; code 10 (one month) is calendar-aligned instead."""

KLINE_PERIODS: tuple[int, ...] = (*KLINE_PERIOD_MS, MONTH_PERIOD)

_SYMBOL_PATTERN = re.compile(r"([A-Z0-9][A-Z0-9._-]{0,31})[$.]([A-Z]{2,3})")


@dataclass(frozen=True, slots=True)
class Symbol:
    """An iTick instrument: ``code`` such as ``AAPL`` or ``700`` and ``region`` such as ``US`` or ``HK``."""

    code: str
    region: str

    @property
    def canonical(self) -> str:
        """The iTick subscription form, ``AAPL$US``."""
        return f"{self.code}${self.region}"

    @property
    def dotted(self) -> str:
        """The form older iTick pushes carry in ``s``, ``AAPL.US``."""
        return f"{self.code}.{self.region}"


def parse_symbol(text: str) -> Symbol | None:
    """Parse ``AAPL$US`` or ``aapl.us`` (case-insensitive, surrounding spaces ignored); None when malformed.

    In the dotted form the region is what follows the last dot, so ``BRK.B.US`` is code ``BRK.B`` in ``US``.
    """
    match = _SYMBOL_PATTERN.fullmatch(text.strip().upper())
    if match is None:
        return None
    return Symbol(match.group(1), match.group(2))


def stable_seed(*parts: object) -> int:
    """A seed that is the same in every process (unlike ``hash()``, which is salted per process)."""
    return zlib.crc32(":".join(str(part) for part in parts).encode())


def kline_open_time(period: int, time_ms: int) -> int:
    """Epoch ms at which the bar of ``period`` containing ``time_ms`` opens (UTC-aligned)."""
    if period == MONTH_PERIOD:
        moment = datetime.fromtimestamp(time_ms / 1000, tz=UTC)
        month_start = datetime(moment.year, moment.month, 1, tzinfo=UTC)
        return int(month_start.timestamp()) * 1000
    duration = KLINE_PERIOD_MS[period]
    if period == 9:
        return (time_ms - _WEEK_ORIGIN_MS) // duration * duration + _WEEK_ORIGIN_MS
    return time_ms // duration * duration


def kline_close_time(period: int, open_time_ms: int) -> int:
    """Epoch ms at which the bar of ``period`` opened at ``open_time_ms`` ends (exclusive)."""
    if period == MONTH_PERIOD:
        start = datetime.fromtimestamp(open_time_ms / 1000, tz=UTC)
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        return int(datetime(year, month, 1, tzinfo=UTC).timestamp()) * 1000
    return open_time_ms + KLINE_PERIOD_MS[period]


# -- price grids -------------------------------------------------------------------------------------------


def _hk_tick(price: float) -> float:
    # HKEX spread table, the part that covers prices a simulator produces.
    for upper, tick in (
        (0.25, 0.001),
        (0.5, 0.005),
        (10.0, 0.01),
        (20.0, 0.02),
        (100.0, 0.05),
        (200.0, 0.1),
        (500.0, 0.2),
        (1000.0, 0.5),
        (2000.0, 1.0),
        (5000.0, 2.0),
    ):
        if price < upper:
            return tick
    return 5.0


def _jp_tick(price: float) -> float:
    # TSE standard table (integer yen).
    for upper, tick in ((3000.0, 1.0), (5000.0, 5.0), (30000.0, 10.0), (50000.0, 50.0)):
        if price <= upper:
            return tick
    return 100.0


def _sg_tick(price: float) -> float:
    return 0.001 if price < 0.2 else 0.005 if price < 1.0 else 0.01


def _forex_tick(price: float) -> float:
    # Pipettes: 5 decimals for EURUSD-like pairs, 3 for JPY-like pairs quoted above 20.
    return 0.00001 if price < 20.0 else 0.001


def _crypto_tick(price: float) -> float:
    return 0.01 if price >= 1000.0 else 0.0001 if price >= 1.0 else 0.000001


def _cent_tick(price: float) -> float:
    return 0.01


@dataclass(frozen=True, slots=True)
class RegionProfile:
    """How prices and sizes look in one market."""

    low: float  # anchor range for symbols without a known price level
    high: float
    tick_size: Callable[[float], float]
    decimals: int  # enough decimals for any tick of this market; 0 means integer prices
    volatility: float  # standard deviation of the log return per tick
    lot: int  # shares per board lot; 0 means fractional (notional-sized) volumes
    mean_lots: float  # average trade size in lots (or in quote currency when lot == 0)


_PROFILES: dict[str, RegionProfile] = {
    "US": RegionProfile(20.0, 500.0, _cent_tick, 2, 0.0004, 1, 120.0),
    "HK": RegionProfile(1.0, 600.0, _hk_tick, 3, 0.0005, 100, 12.0),
    "SH": RegionProfile(5.0, 2000.0, _cent_tick, 2, 0.0004, 100, 15.0),
    "SZ": RegionProfile(5.0, 2000.0, _cent_tick, 2, 0.0004, 100, 15.0),
    "SG": RegionProfile(0.2, 50.0, _sg_tick, 3, 0.0004, 100, 20.0),
    "JP": RegionProfile(500.0, 20000.0, _jp_tick, 0, 0.0004, 100, 8.0),
    "GB": RegionProfile(1.0, 1.5, _forex_tick, 5, 0.00005, 1, 5.0),
    "BA": RegionProfile(0.05, 70000.0, _crypto_tick, 6, 0.0008, 0, 2000.0),
}
_DEFAULT_PROFILE = RegionProfile(10.0, 1000.0, _cent_tick, 2, 0.0004, 1, 100.0)

# Recognisable names start near their real level so output looks familiar; everything else draws a level.
_KNOWN_LEVELS: dict[str, float] = {
    "AAPL$US": 225.0,
    "TSLA$US": 250.0,
    "MSFT$US": 420.0,
    "NVDA$US": 140.0,
    "AMZN$US": 200.0,
    "GOOGL$US": 170.0,
    "META$US": 560.0,
    "700$HK": 420.0,
    "9988$HK": 85.0,
    "600519$SH": 1500.0,
    "000001$SZ": 11.5,
    "7203$JP": 2700.0,
    "EURUSD$GB": 1.08,
    "GBPUSD$GB": 1.27,
    "USDJPY$GB": 150.0,
    "BTCUSDT$BA": 65000.0,
    "ETHUSDT$BA": 3000.0,
}

_MEAN_REVERSION = 0.0002  # per tick pull of the log price towards its anchor, keeps long runs in range
_OVERNIGHT_GAP = 0.01  # log-return standard deviation between the previous close and the first trade
_VOLUME_DECIMALS = 4  # fractional (crypto) sizes


def profile_for(region: str) -> RegionProfile:
    return _PROFILES.get(region, _DEFAULT_PROFILE)


# -- snapshots handed to encoders ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tick:
    price: Price
    volume: Price
    direction: int  # 2 up (buyer-initiated), 1 down (seller-initiated), 0 unchanged
    time_ms: int
    turnover: float  # price * volume of this trade


@dataclass(frozen=True, slots=True)
class Quote:
    last: Price
    open: Price
    high: Price
    low: Price
    prev_close: Price
    change: Price
    change_pct: float
    volume: Price  # of the day, the sum of the day's tick volumes
    turnover: float  # of the day
    time_ms: int
    status: int  # 0 normal trading


@dataclass(frozen=True, slots=True)
class DepthLevel:
    level: int
    price: Price
    volume: Price
    orders: int


@dataclass(frozen=True, slots=True)
class DepthBook:
    asks: tuple[DepthLevel, ...]  # ascending from the best ask
    bids: tuple[DepthLevel, ...]  # descending from the best bid


@dataclass(slots=True)
class Bar:
    """One kline bar; mutable because the current bar grows with every tick."""

    open_time_ms: int
    close_time_ms: int
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Price
    turnover: float


class SymbolMarket:
    """The whole market state of one symbol: last trade, the day's statistics and tracked kline bars."""

    __slots__ = (
        "_bars",
        "_book_rng",
        "_day",
        "_log_anchor",
        "_log_fair",
        "_walk_rng",
        "high",
        "last",
        "last_direction",
        "last_volume",
        "low",
        "open",
        "prev_close",
        "profile",
        "symbol",
        "tick_count",
        "time_ms",
        "turnover",
        "volume",
    )

    def __init__(self, symbol: Symbol, seed: int) -> None:
        self.symbol = symbol
        self.profile = profile_for(symbol.region)
        # Separate streams: asking for depth must not change the price path.
        self._walk_rng = random.Random(stable_seed(seed, symbol.canonical, "walk"))
        self._book_rng = random.Random(stable_seed(seed, symbol.canonical, "book"))

        known = _KNOWN_LEVELS.get(symbol.canonical)
        if known is not None:
            level = known * math.exp(self._walk_rng.uniform(-0.05, 0.05))
        else:
            level = math.exp(self._walk_rng.uniform(math.log(self.profile.low), math.log(self.profile.high)))
        self._log_anchor = math.log(level)
        self.prev_close: Price = self.round_price(level)
        self._log_fair = math.log(self.prev_close) + self._walk_rng.gauss(0.0, _OVERNIGHT_GAP)

        # Before the first trade the day's figures all sit at the previous close.
        self.last: Price = self.prev_close
        self.open: Price = self.prev_close
        self.high: Price = self.prev_close
        self.low: Price = self.prev_close
        self.volume: Price = 0
        self.turnover = 0.0
        self.time_ms = 0
        self.last_direction = 0
        self.last_volume: Price = 0
        self.tick_count = 0
        self._day: int | None = None
        self._bars: dict[int, Bar] = {}

    # -- prices ------------------------------------------------------------------------------------------

    def round_price(self, price: float) -> Price:
        """Snap to this market's tick grid so prices print cleanly (``225.21``, ``20.05``, ``2712``)."""
        tick = self.profile.tick_size(price)
        snapped = max(round(price / tick), 1) * tick
        if self.profile.decimals == 0:
            return round(snapped)
        return round(snapped, self.profile.decimals)

    def tick_above(self, price: Price) -> float:
        return self.profile.tick_size(price)

    def tick_below(self, price: Price) -> float:
        # At a grid boundary (HK 10.00) the step down uses the finer tick of the band below.
        return self.profile.tick_size(price * (1.0 - 1e-9))

    def _round_amount(self, value: float, decimals: int) -> Price:
        return round(value) if decimals == 0 else round(value, decimals)

    def _draw_volume(self, price: float) -> Price:
        rng = self._walk_rng
        if self.profile.lot == 0:
            units = rng.expovariate(1.0) * self.profile.mean_lots / price
            return max(round(units, _VOLUME_DECIMALS), 10.0**-_VOLUME_DECIMALS)
        if self.profile.lot == 1 and self.symbol.region == "US" and rng.random() < 0.3:
            return rng.randint(1, 99)  # odd lots are a large share of US prints
        lots = 1 + int(rng.expovariate(1.0 / self.profile.mean_lots))
        return lots * self.profile.lot

    # -- evolution ---------------------------------------------------------------------------------------

    def next_tick(self, now_ms: int) -> Tick:
        """Advance the walk by one trade at ``now_ms`` and fold it into the day's figures and bars."""
        time_ms = max(now_ms, self.time_ms)  # a tick never goes back in time, even if the clock does
        day = time_ms // MS_PER_DAY
        new_day = self._day != day
        if new_day and self._day is not None:
            self.prev_close = self.last
        self._day = day

        rng = self._walk_rng
        self._log_fair += -_MEAN_REVERSION * (
            self._log_fair - self._log_anchor
        ) + self.profile.volatility * rng.gauss(0.0, 1.0)
        price = self.round_price(math.exp(self._log_fair))
        volume = self._draw_volume(float(price))
        direction = 2 if price > self.last else 1 if price < self.last else 0
        trade_turnover = round(price * volume, 3)

        if new_day:
            self.open = self.high = self.low = price
            self.volume = 0
            self.turnover = 0.0
        else:
            self.high = max(self.high, price)
            self.low = min(self.low, price)
        volume_decimals = _VOLUME_DECIMALS if self.profile.lot == 0 else 0
        self.volume = self._round_amount(self.volume + volume, volume_decimals)
        self.turnover = round(self.turnover + price * volume, 3)
        self.last = price
        self.last_direction = direction
        self.last_volume = volume
        self.time_ms = time_ms
        self.tick_count += 1
        self._fold_into_bars(price, volume, volume_decimals, time_ms)
        return Tick(price, volume, direction, time_ms, trade_turnover)

    def _fold_into_bars(self, price: Price, volume: Price, volume_decimals: int, time_ms: int) -> None:
        for period, bar in self._bars.items():
            if time_ms >= bar.close_time_ms:
                self._bars[period] = self._new_bar(period, price, volume, time_ms)
                continue
            bar.high = max(bar.high, price)
            bar.low = min(bar.low, price)
            bar.close = price
            bar.volume = self._round_amount(bar.volume + volume, volume_decimals)
            bar.turnover = round(bar.turnover + price * volume, 3)

    @staticmethod
    def _new_bar(period: int, price: Price, volume: Price, time_ms: int) -> Bar:
        open_time = kline_open_time(period, time_ms)
        return Bar(
            open_time,
            kline_close_time(period, open_time),
            price,
            price,
            price,
            price,
            volume,
            round(price * volume, 3),
        )

    # -- views -------------------------------------------------------------------------------------------

    def quote(self) -> Quote:
        change = self._round_amount(self.last - self.prev_close, self.profile.decimals)
        change_pct = round(change / self.prev_close * 100.0, 2)
        return Quote(
            self.last,
            self.open,
            self.high,
            self.low,
            self.prev_close,
            change,
            change_pct,
            self.volume,
            self.turnover,
            self.time_ms,
            0,
        )

    def kline(self, period: int) -> Bar:
        """The current bar of ``period`` (a KLINE_PERIODS code).

        Bars are tracked from the first time a period is asked for, starting with the latest trade, so an
        unwatched period costs nothing per tick.
        """
        if period not in KLINE_PERIODS:
            raise ValueError(f"unknown kline period {period}; expected one of {KLINE_PERIODS}")
        bar = self._bars.get(period)
        if bar is None:
            bar = self._bars[period] = self._new_bar(period, self.last, self.last_volume, self.time_ms)
        return bar

    def depth(self, levels: int = 5) -> DepthBook:
        """A book around the last trade with a one-tick spread.

        The last trade sits on the side it took liquidity from: an uptick lifted the ask, so the best ask
        is the last price; otherwise the best bid is.
        """
        rng = self._book_rng
        if self.last_direction == 2:
            best_ask: float = self.last
            best_bid: float = self.last - self.tick_below(self.last)
        else:
            best_bid = self.last
            best_ask = self.last + self.tick_above(self.last)
        asks: list[DepthLevel] = []
        price = best_ask
        for level in range(1, levels + 1):
            asks.append(self._depth_level(rng, level, price))
            price += self.tick_above(price)
        bids: list[DepthLevel] = []
        price = best_bid
        for level in range(1, levels + 1):
            if price <= 0:
                break  # a book of a penny stock simply runs out of bids above zero
            bids.append(self._depth_level(rng, level, price))
            price -= self.tick_below(price)
        return DepthBook(tuple(asks), tuple(bids))

    def _depth_level(self, rng: random.Random, level: int, price: float) -> DepthLevel:
        snapped = self.round_price(price)
        orders = rng.randint(1, 4 + 4 * level)
        if self.profile.lot == 0:
            volume: Price = (
                round(
                    orders * rng.expovariate(1.0) * self.profile.mean_lots / float(snapped), _VOLUME_DECIMALS
                )
                or 10.0**-_VOLUME_DECIMALS
            )
        else:
            volume = orders * self.profile.lot * rng.randint(1, max(1, int(self.profile.mean_lots)))
        return DepthLevel(level, snapped, volume, orders)


class MarketModel:
    """All simulated symbols of one seed; states are created on first use and shared by every consumer."""

    def __init__(self, seed: int = 1) -> None:
        self.seed = seed
        self._markets: dict[str, SymbolMarket] = {}

    def market(self, symbol: str | Symbol) -> SymbolMarket:
        """The state of ``symbol`` (``Symbol``, ``"AAPL$US"`` or ``"aapl.us"``); ValueError when malformed."""
        if isinstance(symbol, str):
            known = self._markets.get(symbol)  # canonical names skip parsing on the hot path
            if known is not None:
                return known
            parsed = parse_symbol(symbol)
            if parsed is None:
                raise ValueError(f"malformed symbol {symbol!r}; expected CODE$REGION such as AAPL$US")
            symbol = parsed
        key = symbol.canonical
        market = self._markets.get(key)
        if market is None:
            market = self._markets[key] = SymbolMarket(symbol, self.seed)
        return market

    def next_tick(self, symbol: str | Symbol, now_ms: int) -> Tick:
        return self.market(symbol).next_tick(now_ms)

    def quote(self, symbol: str | Symbol) -> Quote:
        return self.market(symbol).quote()

    def depth(self, symbol: str | Symbol, levels: int = 5) -> DepthBook:
        return self.market(symbol).depth(levels)

    def kline(self, symbol: str | Symbol, period: int) -> Bar:
        return self.market(symbol).kline(period)

    @property
    def symbols(self) -> list[str]:
        """Canonical names (``AAPL$US``) of every symbol that has state, in creation order."""
        return list(self._markets)

    def __len__(self) -> int:
        return len(self._markets)
