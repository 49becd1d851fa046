"""A quant-style consumer: rolling VWAP over the last N seconds of ticks, per symbol, printed
every second, with the connection's events (a reconnect shows as one line; the VWAP does not
skip a trade across it: the SDK resumes without a gap).

    python examples/vwap.py --url ws://127.0.0.1:8080/ --symbols AAPL$US,TSLA$US [--window 60] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections import deque

import tickgate.client as tc


class RollingVwap:
    """Sum of price x volume over sum of volume for the trades of the last ``window`` seconds."""

    def __init__(self, window_s: float) -> None:
        self.window_ms = window_s * 1000
        self.trades: deque[tuple[int, float, float]] = deque()
        self.notional = 0.0
        self.volume = 0.0

    def add(self, time_ms: int, price: float, volume: float) -> None:
        self.trades.append((time_ms, price, volume))
        self.notional += price * volume
        self.volume += volume
        while self.trades and self.trades[0][0] < time_ms - self.window_ms:
            _, p, v = self.trades.popleft()
            self.notional -= p * v
            self.volume -= v

    @property
    def value(self) -> float | None:
        return self.notional / self.volume if self.volume > 0 else None


async def main(url: str, symbols: list[str], window: float, seconds: float, token: str | None) -> None:
    vwaps = {s: RollingVwap(window) for s in symbols}
    trades = dict.fromkeys(symbols, 0)

    def on_event(event: tc.ConnectionEvent) -> None:
        print(f"[connection] {event.kind} {event.reason} {' '.join(event.channels)}".rstrip(), flush=True)

    async with tc.connect(url, token=token, protocol="proto", on_event=on_event) as client:
        await client.subscribe(symbols, types=["tick"])
        deadline = time.monotonic() + seconds
        next_print = time.monotonic() + 1

        async def consume() -> None:
            nonlocal next_print
            async for update in client:
                if isinstance(update, tc.Tick) and not update.snapshot:
                    vwaps[update.symbol].add(update.time_ms, update.price, update.volume)
                    trades[update.symbol] += 1
                if time.monotonic() >= next_print:
                    next_print += 1
                    line = "  ".join(
                        f"{s} vwap={v.value:.3f} trades={trades[s]}" if v.value else f"{s} -"
                        for s, v in vwaps.items()
                    )
                    print(line, flush=True)

        with contextlib.suppress(TimeoutError):  # the run's time is up
            await asyncio.wait_for(consume(), max(0.0, deadline - time.monotonic()))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="ws://127.0.0.1:8080/")
    p.add_argument("--symbols", default="AAPL$US,TSLA$US")
    p.add_argument("--window", type=float, default=60.0, help="seconds of trades the VWAP covers")
    p.add_argument("--seconds", type=float, default=30.0, help="how long to run")
    p.add_argument("--token", help="a JWT, when the gateway runs with --auth jwt")
    a = p.parse_args()
    asyncio.run(main(a.url, [s.strip() for s in a.symbols.split(",")], a.window, a.seconds, a.token))
