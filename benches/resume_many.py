"""Many clients resuming at once: how long until every one has all it missed.

    .venv/bin/python benches/resume_many.py [--clients 1000] [--away 2.0] [--symbols 20]
        [--gateway-args --workers 2]

Starts the iTick simulator and `tickgate serve` (processes of their own), connects N clients
(websockets, this process) that each subscribe to the quote and tick channels of one symbol of
``--symbols``, plus one keeper client that holds every channel so the stream goes on while the
others are away. After a warm-up every client's socket is reset at once (no close handshake);
``--away`` seconds later all reconnect together and send ``resume`` with their last seqs. Reports
the time from the first reconnect to the last ``recovered`` reply, per-client resume latency
(connect + replay + reply) p50/p99/max, how many recovered, updates replayed, and whether every
client's seqs are contiguous with no duplicate across the gap. Loopback only; stops by itself.
Writes .benchmarks/resume-many.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benches.load_fanout import (
    ROOT,
    free_port,
    raise_fd_limit,
    serve_command,
    simulator_command,
    start,
    stop,
    stop_children,
    wait_port,
)


def channel(data: dict[str, Any]) -> str:
    kind = data["klineCycle"] if data["type"] == "kline" else data["type"]
    return f"{data['symbol']}:{kind}"


class Client:
    def __init__(self, url: str, symbols: list[str]) -> None:
        self.url = url
        self.symbols = symbols
        self.seen: dict[str, list[int]] = defaultdict(list)
        self.welcome: dict[str, Any] = {}
        self.ws: Any = None
        self.reader: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self.ws = await connect(self.url, ping_interval=None, close_timeout=1, open_timeout=60)
        self.welcome = json.loads(await self.ws.recv())
        msg = {"action": "subscribe", "symbols": self.symbols, "types": ["quote", "tick"]}
        await self.ws.send(json.dumps(msg))
        reply = json.loads(await self.ws.recv())
        assert reply["type"] == "success", reply
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self._note(json.loads(raw))
        except Exception:  # the reset below ends it
            pass

    def _note(self, m: dict[str, Any]) -> dict[str, Any]:
        if m.get("type") == "stock_quote":
            self.seen[channel(m["data"])].append(m["data"]["seq"])
        return m

    def reset(self) -> None:
        self.ws.transport.abort()

    async def resume(self) -> tuple[float, dict[str, Any]]:
        t0 = time.monotonic()
        if self.reader is not None:
            self.reader.cancel()
        self.ws = await connect(self.url, ping_interval=None, close_timeout=1, open_timeout=60)
        await self.ws.recv()  # welcome
        last = {ch: seqs[-1] for ch, seqs in self.seen.items() if seqs}
        await self.ws.send(
            json.dumps(
                {
                    "action": "resume",
                    "session": self.welcome["session"],
                    "epoch": self.welcome["epoch"],
                    "last_seq": last,
                }
            )
        )
        while True:
            m = self._note(json.loads(await self.ws.recv()))
            if m.get("action") == "resume":
                elapsed = time.monotonic() - t0
                self.reader = asyncio.create_task(self._read())
                return elapsed, m

    def contiguous(self) -> bool:
        return all(s == list(range(s[0], s[0] + len(s))) for s in self.seen.values() if s)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit(args.clients * 2 + 100)
    sim_port, gw_port = free_port(), free_port()
    sim = start(simulator_command(sim_port, "--rate", str(args.rate)), None, subprocess.DEVNULL)
    gw = start(serve_command(gw_port, f"ws://127.0.0.1:{sim_port}/stock", *args.gateway_args), None, None)
    try:
        await wait_port(sim_port, sim)
        await wait_port(gw_port, gw)
        url = f"ws://127.0.0.1:{gw_port}/"
        symbols = [f"SYM{i}$US" for i in range(args.symbols)]
        keeper = Client(url, symbols)
        await keeper.open()
        clients = [Client(url, [symbols[i % len(symbols)]]) for i in range(args.clients)]
        sem = asyncio.Semaphore(100)

        async def opened(c: Client) -> None:
            async with sem:
                await c.open()

        await asyncio.gather(*(opened(c) for c in clients))
        await asyncio.sleep(args.warmup)
        for c in clients:
            c.reset()
        await asyncio.sleep(args.away)
        t0 = time.monotonic()
        results = await asyncio.gather(*(c.resume() for c in clients))
        total = time.monotonic() - t0
        await asyncio.sleep(1.0)  # live updates after the replay, to check the join
        latencies = sorted(r[0] * 1000 for r in results)
        replies = [r[1] for r in results]
        report = {
            "clients": args.clients,
            "away_s": args.away,
            "gateway_args": args.gateway_args,
            "all_resumed_s": total,
            "recovered": sum(1 for r in replies if r.get("recovered")),
            "replayed_total": sum(r.get("replayed", 0) for r in replies),
            "resume_ms": {
                "p50": statistics.median(latencies),
                "p99": latencies[int(0.99 * (len(latencies) - 1))],
                "max": latencies[-1],
            },
            "contiguous_no_duplicate": all(c.contiguous() for c in clients),
            "reasons": sorted({r.get("reason", "") for r in replies}),
        }
        for c in [keeper, *clients]:
            if c.reader is not None:
                c.reader.cancel()
            await c.ws.close()
        return report
    finally:
        stop(gw)
        stop(sim)
        stop_children()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--rate", type=float, default=10.0, help="simulator updates/s per symbol and type")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--away", type=float, default=2.0)
    ap.add_argument(
        "--gateway-args", nargs=argparse.REMAINDER, default=[], help="extra `tickgate serve` flags"
    )
    a = ap.parse_args()
    report = asyncio.run(main(a))
    print(json.dumps(report, indent=2))
    out = ROOT / ".benchmarks"
    out.mkdir(exist_ok=True)
    (out / "resume-many.json").write_text(json.dumps({"argv": sys.argv, "report": report}, indent=2))
