"""Train the zstd dictionary that ``tickgate.v1.proto+zstd`` frames are compressed with.

    .venv/bin/python tools/train_zstd_dictionary.py [--check]

Samples are the core's own Protobuf ``ServerMessage`` encodings of updates (tick, quote, depth,
kline@1) for symbols of every simulated region, produced by feeding the simulator's market model
through ``FeedProcessor``. A single update is too small for zstd to gain anything alone (the frame
header costs what compression saves); a dictionary holding the field layout and the common value
prefixes lets each frame refer to it instead.

The dictionary is part of wire protocol v1: its id is fixed (``DICT_ID``) and goes in every frame's
header, the bytes are served at ``GET /v1/zstd-dictionary`` and shipped in the package. Replacing
it means a new id (clients holding the old one must fetch again), so run this only on purpose.
Training is deterministic for the same samples. ``--check`` trains again and fails if the result
differs from the shipped file.

The symbols trained on are not the ones ``benches/wire_sizes.py`` measures with, so the saving it
reports is not measured on training data.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import zstandard

from tickgate._core import FeedProcessor
from tickgate.simulate.itick_protocol import PushEncoder
from tickgate.simulate.market import SymbolMarket, parse_symbol

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "python" / "tickgate" / "data" / "zstd-v1.dict"
# Outside zstd's reserved ranges (below 32768 and from 2**31 on); "tg" and version 1.
DICT_ID = 0x7467_0001
DICT_SIZE = 8192
LEVEL = 3  # the level the core compresses at (rust/encode/format.rs ZSTD_LEVEL)
SYMBOLS = (
    "AAPL$US",
    "MSFT$US",
    "NVDA$US",
    "TSLA$US",
    "AMZN$US",
    "GOOGL$US",
    "META$US",
    "BRK.B$US",
    "JPM$US",
    "V$US",
    "700$HK",
    "9988$HK",
    "3690$HK",
    "1810$HK",
    "5$HK",
    "600519$SH",
    "601318$SH",
    "000001$SZ",
    "300750$SZ",
    "D05$SG",
    "7203$JP",
    "6758$JP",
    "EURUSD$GB",
    "GBPUSD$GB",
    "BTCUSDT$BA",
    "ETHUSDT$BA",
)
TYPES = ("tick", "quote", "depth", "kline@1")
T0_MS = 1_760_000_000_000


def samples(seconds: int = 60, rate: float = 2.0) -> list[bytes]:
    encoder = PushEncoder(symbol_style="dollar")
    processor = FeedProcessor("itick", epoch="19a0c0ffee0-5eed0001")
    markets = []
    for name in SYMBOLS:
        symbol = parse_symbol(name)
        if symbol is None:
            raise SystemExit(f"simulator cannot parse {name}")
        markets.append(SymbolMarket(symbol, 7))
    out = []
    step_ms = int(1000 / rate)
    for t in range(T0_MS, T0_MS + seconds * 1000, step_ms):
        for market in markets:
            tick = market.next_tick(t)
            for kind in TYPES:
                updates, _ = processor.ingest(encoder.encode(kind, market, tick), t + 3)
                out.extend(u.protobuf for u in updates)
    return out


def train() -> bytes:
    d = zstandard.train_dictionary(DICT_SIZE, samples(), dict_id=DICT_ID, level=LEVEL, threads=1)
    return d.as_bytes()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="fail if training again gives other bytes")
    args = ap.parse_args()
    data = train()
    if args.check:
        same = OUTPUT.exists() and OUTPUT.read_bytes() == data
        print(f"{OUTPUT.relative_to(ROOT)}: {'matches' if same else 'DIFFERS from'} a fresh training")
        return 0 if same else 1
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_bytes(data)
    print(f"wrote {OUTPUT.relative_to(ROOT)}: {len(data)} bytes, dictionary id {DICT_ID:#x}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
