"""A quote printer: one line per quote update (symbol, last, change %, volume, seq).

python examples/quotes.py --url ws://127.0.0.1:8080/ --symbols AAPL$US,700$HK [--count 20] [--batch-ms 500]
"""

from __future__ import annotations

import argparse
import asyncio

import tickgate.client as tc


async def main(url: str, symbols: list[str], count: int, batch_ms: int, token: str | None) -> None:
    mode = {"mode": "batch", "interval_ms": batch_ms} if batch_ms else {}
    async with tc.connect(url, token=token, **mode) as client:
        await client.subscribe(symbols, types=["quote"])
        printed = 0
        async for update in client:
            if isinstance(update, tc.Quote):
                change = f"{update.change_percent:+.2f}%" if update.change_percent is not None else "-"
                volume = f"{update.volume:,.0f}" if update.volume is not None else "-"
                mark = " (snapshot)" if update.snapshot else ""
                last = f"{update.last:>10.3f}"
                print(f"{update.symbol:<10} {last} {change:>8} {volume:>14} seq={update.seq}{mark}")
                printed += 1
                if count and printed >= count:
                    return


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="ws://127.0.0.1:8080/")
    p.add_argument("--symbols", default="AAPL$US,700$HK")
    p.add_argument("--count", type=int, default=0, help="stop after this many quotes (0: never)")
    p.add_argument("--batch-ms", type=int, default=0, help="batch mode at this interval (0: immediate)")
    p.add_argument("--token", help="a JWT, when the gateway runs with --auth jwt")
    a = p.parse_args()
    asyncio.run(main(a.url, [s.strip() for s in a.symbols.split(",")], a.count, a.batch_ms, a.token))
