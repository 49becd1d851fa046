"""Core memory under symbol churn: 30 rounds of 1,000 symbols never seen before, each quoted a
few times, then let go, with and without releasing their state (side by side, same process
kind, each in a fresh subprocess).

    .venv/bin/python benches/symbol_churn.py [--rounds 30] [--symbols 1000]

Drives the core directly (``FeedProcessor`` + ``ReplayRing``, as the ingest does) so the
figure is the core's alone: RSS growth from after the first round to the end, and the
symbols the processor still holds. Writes .benchmarks/symbol-churn.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(rounds: int, symbols: int, release: bool) -> dict[str, float]:
    from tickgate._core import FeedProcessor, ReplayRing

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    p = FeedProcessor("itick")
    # A short window, as after 5 minutes: what stays is the per-symbol state, not the ring's.
    ring = ReplayRing(window_ms=1, max_bytes=256 << 20)
    base = 0
    for r in range(rounds):
        now = int(time.time() * 1000)
        names = [f"R{r}N{i}$US" for i in range(symbols)]
        for name in names:
            for k in range(3):
                frame = json.dumps(
                    {"code": 1, "data": {"s": name, "ld": 10.0 + k, "t": now, "v": 100, "type": "quote"}}
                )
                updates, _ = p.ingest(frame)
                ring.append(updates)
        ring.evict()
        if release:
            p.release(names)
            ring.forget_symbols(names)
        if r == 0:
            base = rss()
    return {"rss_growth_mb": round((rss() - base) / 1e6, 2), "symbols_held": p.stats()["symbols"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--child", choices=["keep", "release"])
    a = ap.parse_args()
    if a.child:
        print(json.dumps(run(a.rounds, a.symbols, a.child == "release")))
        return
    report = {}
    for mode in ("keep", "release"):
        cmd = [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--rounds",
            str(a.rounds),
            "--symbols",
            str(a.symbols),
        ]
        report[mode] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    print(json.dumps(report, indent=2))
    out = ROOT / ".benchmarks"
    out.mkdir(exist_ok=True)
    (out / "symbol-churn.json").write_text(json.dumps({"argv": sys.argv, "report": report}, indent=2))


if __name__ == "__main__":
    main()
