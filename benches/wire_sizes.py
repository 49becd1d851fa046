"""Bytes per update on the wire for each format and delivery mode, from the core's own encoders.

    .venv/bin/python benches/wire_sizes.py [--seconds 10] [--symbols 10]

Feeds the seeded iTick simulator's market (the same random walk the embedded feed uses) through
the core for a client holding N symbols x (quote, tick), for S seconds of simulated time at the
simulator's default rate, and measures the WebSocket frames that client would receive in each
mode: JSON immediate, Protobuf immediate, Protobuf+zstd immediate, and 500 ms batches in JSON,
Protobuf and Protobuf+zstd. Counts whole frames (header included) per update the client learned
of (a conflated quote counts once). Prints a table and writes .benchmarks/wire_sizes.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tickgate._core import Dispatcher, FeedProcessor
from tickgate.edge.zstd_dictionary import builtin_dictionary
from tickgate.simulate.itick_protocol import PushEncoder
from tickgate.simulate.market import SymbolMarket, parse_symbol

ROOT = Path(__file__).resolve().parent.parent
# (format, mode, zstd dictionary): proto+zstd uses the shipped dictionary, as the gateway does by
# default; the rows without it show what the dictionary adds.
MODES = [
    ("json", "immediate", False),
    ("proto", "immediate", False),
    ("proto+zstd", "immediate", False),
    ("proto+zstd", "immediate", True),
    ("json", "batch", False),
    ("proto", "batch", False),
    ("proto+zstd", "batch", False),
    ("proto+zstd", "batch", True),
]


def frames_for(args: argparse.Namespace) -> list[tuple[int, bytes]]:
    """(time ms, provider frame) pairs from the simulator's market model, in time order."""
    encoder = PushEncoder(symbol_style="dollar")
    markets = []
    for i in range(args.symbols):
        symbol = parse_symbol(f"SYM{i}$US")
        assert symbol is not None
        markets.append(SymbolMarket(symbol, 1))
    out = []
    step_ms = int(1000 / args.rate)
    t0 = 1_731_689_400_000
    for t in range(t0, t0 + args.seconds * 1000, step_ms):
        for market in markets:
            tick = market.next_tick(t)
            for kind in ("quote", "tick"):
                out.append((t, encoder.encode(kind, market, tick)))
    return out


def dispatcher(min_interval_ms: int = 50, dictionary: bool = False) -> Dispatcher:
    return Dispatcher(
        soft_cap_bytes=1 << 30,
        tick_cap=1 << 20,
        lag_deadline_ms=1 << 40,
        wheel_tick_ms=1,
        min_interval_ms=min_interval_ms,
        max_interval_ms=60_000,
        zstd_dictionary=builtin_dictionary() if dictionary else None,
    )


def channels(args: argparse.Namespace) -> list[str]:
    return [f"SYM{i}$US:{k}" for i in range(args.symbols) for k in ("quote", "tick")]


def measure(args: argparse.Namespace) -> list[dict[str, float | str]]:
    frames = frames_for(args)
    rows = []
    for fmt, mode, dictionary in MODES:
        if mode == "immediate":
            total, updates_out, frames_out = immediate_bytes(fmt, frames, args, dictionary)
        else:
            total, updates_out, frames_out = batch_bytes(fmt, frames, args, dictionary)
        rows.append(
            {
                "format": fmt + (" (dict)" if dictionary else ""),
                "mode": mode,
                "bytes": total,
                "updates": updates_out,
                "frames": frames_out,
                "bytes_per_update": total / max(1, updates_out),
            }
        )
    base = rows[0]["bytes_per_update"]
    for r in rows:
        r["vs_json_immediate"] = r["bytes_per_update"] / base
        r["saving_pct"] = 100 * (1 - r["vs_json_immediate"])
    return rows


def immediate_bytes(
    fmt: str, frames: list[tuple[int, bytes]], args: argparse.Namespace, dictionary: bool
) -> tuple[int, int, int]:
    d = dispatcher(dictionary=dictionary)
    conn = d.connect(object(), fmt, "immediate")
    d.subscribe(conn, channels(args))
    p = FeedProcessor("itick", epoch="19c3a1b2c3d-8f2a9e01")
    total = 0
    for recv_ms, frame in frames:
        updates, _ = p.ingest(frame, recv_ms)
        d.publish(updates)
        for _, data in d.flush():
            total += len(data)
    return total, d.stats()["deliveries"], len(frames)


def batch_bytes(
    fmt: str, frames: list[tuple[int, bytes]], args: argparse.Namespace, dictionary: bool
) -> tuple[int, int, int]:
    """Each 500 ms window of simulated time becomes one batch: the window's updates are
    published to a batch-mode connection with a 1 ms interval, which is then flushed once its
    (wall-clock) deadline has passed."""
    windows: dict[int, list[tuple[int, bytes]]] = {}
    for t, frame in frames:
        windows.setdefault(t // 500, []).append((t, frame))
    d = dispatcher(min_interval_ms=1, dictionary=dictionary)
    conn = d.connect(object(), fmt, "batch", 1)
    d.subscribe(conn, channels(args))
    p = FeedProcessor("itick", epoch="19c3a1b2c3d-8f2a9e01")
    total = batches = 0
    for _, window in sorted(windows.items()):
        for t, frame in window:
            updates, _ = p.ingest(frame, t)
            d.publish(updates)
        out: list[tuple[object, bytes]] = []
        deadline = time.monotonic() + 1
        while not out and time.monotonic() < deadline:
            time.sleep(0.003)
            out = d.flush()
        for _, data in out:
            total += len(data)
            batches += 1
    return total, d.stats()["deliveries"], batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=10, help="simulated seconds")
    ap.add_argument("--symbols", type=int, default=10)
    ap.add_argument("--rate", type=float, default=2.0, help="updates/s per symbol and type")
    args = ap.parse_args()
    rows = measure(args)
    print(f"{args.symbols} symbols x (quote, tick), {args.rate}/s each, {args.seconds} s simulated")
    print(f"{'format':<19}{'mode':<11}{'frames':>8}{'updates':>9}{'bytes':>10}{'B/update':>10}{'saving':>9}")
    for r in rows:
        print(
            f"{r['format']:<19}{r['mode']:<11}{r['frames']:>8}{r['updates']:>9}{r['bytes']:>10}"
            f"{r['bytes_per_update']:>10.1f}{r['saving_pct']:>8.0f}%"
        )
    out = ROOT / ".benchmarks"
    out.mkdir(exist_ok=True)
    (out / "wire_sizes.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
