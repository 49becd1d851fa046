"""Failover to a backup provider and back, timed from a client's side.

    .venv/bin/python benches/failover_timing.py [--failover-after 5] [--failback-after 5]

The iTick simulator as the primary and the Finnhub-style simulator as the backup (this process,
real sockets), an in-process gateway with ``--backup-provider finnhub`` and one client on
``AAPL$US`` ticks and quotes. The primary is stopped; later a new one starts on its port. Reports
when the client was told ``stale``, ``failing_over``, and ``ok`` with the backup's data, then
when the channels were back on the primary, all from the moment of each fault or repair.
Loopback only; bounded; stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from gatewaykit import Client, start_gateway, start_simulator
from tickgate.simulate.finnhub_server import FinnhubConfig, FinnhubSimulator


async def next_status(c: Client, t0: float, timeout: float = 120.0) -> tuple[str, str, float]:
    deadline = time.monotonic() + timeout
    while True:
        m = await c.recv(max(0.01, deadline - time.monotonic()))
        if m.get("type") == "status":
            return m["state"], m["reason"], round(time.monotonic() - t0, 3)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    primary = await start_simulator(rate=10.0)
    port = primary.port
    backup = FinnhubSimulator(FinnhubConfig(rate=10.0, tokens=frozenset({"bk"})))
    await backup.start()
    gw = await start_gateway(
        primary,
        upstream_ping_interval=5.0,
        upstream_pong_timeout=4.0,
        upstream_idle_timeout=60.0,
        backup_provider="finnhub",
        backup_url=backup.url,
        backup_token="bk",
        failover_after=args.failover_after,
        failback_after=args.failback_after,
    )
    report: dict[str, Any] = {
        "failover_after_s": args.failover_after,
        "failback_after_s": args.failback_after,
    }
    try:
        c = await Client.connect(gw)
        await c.request({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["tick", "quote"]})
        await c.push()
        t0 = time.monotonic()
        await primary.stop()
        report["primary_stopped"] = [await next_status(c, t0) for _ in range(3)]
        await asyncio.sleep(2)
        t1 = time.monotonic()
        primary = await start_simulator(rate=10.0, port=port)
        report["primary_restarted"] = [await next_status(c, t1) for _ in range(2)]
        await c.close()
    finally:
        await gw.stop()
        await primary.stop()
        await backup.stop()
    return report


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--failover-after", type=float, default=5.0)
    ap.add_argument("--failback-after", type=float, default=5.0)
    print(json.dumps(asyncio.run(main(ap.parse_args())), indent=2))
