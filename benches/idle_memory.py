"""Memory per idle client connection, side by side: tickgate, the seed's Node server, a plain picows server.

    .venv/bin/python benches/idle_memory.py [--clients 15000] [--gateways tickgate node-seed picows-broadcast]

For each gateway in turn (all fed by one `tickgate simulate`, so each holds a live upstream):
start it, let it settle, read its RSS; connect N WebSocket clients (picows, this process, bounded
concurrency) that complete the handshake and then stay idle (no subscription); wait, read RSS
again. Reports gateway RSS per connection ((after - before) / N) and, apart, the kernel's
memory per socket (slab from ``/proc/meminfo`` plus ``/proc/net/sockstat`` TCP buffer pages; both
ends of each loopback connection are in it, so it is halved; anything else the machine does at
the same time is in it too). Everything stays on loopback and stops by itself.
Writes .benchmarks/idle-memory.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from picows import WSListener, ws_connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benches.load_fanout import (
    ROOT,
    free_port,
    gateway_command,
    raise_fd_limit,
    start,
    stop,
    stop_children,
    wait_port,
)
from benches.procstat import kernel_socket_bytes, rss_bytes

SETTLE_S = 2.0
CONCURRENCY = 100


async def connect_idle(url: str, n: int) -> list[Any]:
    sem = asyncio.Semaphore(CONCURRENCY)
    out: list[Any] = []

    async def one() -> None:
        async with sem:
            transport, _ = await ws_connect(WSListener, url, websocket_handshake_timeout=30)
            out.append(transport)

    await asyncio.gather(*(one() for _ in range(n)))
    return out


async def measure(name: str, args: argparse.Namespace, upstream: str, logs: Path) -> dict[str, Any] | None:
    port = free_port()
    command = gateway_command(name, port, upstream)
    if command is None:
        return None
    cmd, env = command
    with (logs / f"{name}.log").open("wb") as log:
        proc = start(cmd, env, log)
        try:
            await wait_port(port, proc)
            await asyncio.sleep(SETTLE_S)
            rss0, tcp0 = rss_bytes(proc.pid), kernel_socket_bytes()
            t0 = time.monotonic()
            clients = await connect_idle(f"ws://127.0.0.1:{port}/", args.clients)
            connect_s = time.monotonic() - t0
            await asyncio.sleep(SETTLE_S)
            rss1, tcp1 = rss_bytes(proc.pid), kernel_socket_bytes()
            for t in clients:
                t.disconnect()
            await asyncio.sleep(0.5)
        finally:
            stop(proc)
    n = args.clients
    return {
        "gateway": name,
        "clients": n,
        "connect_per_s": n / connect_s,
        "rss_before_mb": rss0 / 2**20,
        "rss_after_mb": rss1 / 2**20,
        "rss_per_conn_kb": (rss1 - rss0) / n / 1024,
        "kernel_per_end_kb": (tcp1 - tcp0) / n / 2 / 1024,
    }


async def main(args: argparse.Namespace) -> None:
    raise_fd_limit(args.clients + 200)
    logs = Path(tempfile.mkdtemp(prefix="tickgate-idle-"))
    sim_port = free_port()
    sim = start(
        [sys.executable, "-m", "tickgate", "simulate", "--port", str(sim_port), "--symbol-style", "dollar"],
        None,
        subprocess.DEVNULL,
    )
    rows = []
    try:
        await wait_port(sim_port, sim)
        for name in args.gateways:
            r = await asyncio.wait_for(measure(name, args, f"ws://127.0.0.1:{sim_port}/stock", logs), 600)
            if r is None:
                print(f"{name}: not available, skipped", file=sys.stderr)
                continue
            rows.append(r)
    finally:
        stop(sim)
        stop_children()
    print(f"{args.clients} idle clients (handshake done, no subscription); logs in {logs}")
    print(
        f"{'gateway':<18}{'RSS before':>11}{'RSS after':>11}{'KB/conn':>9}{'kernel KB/end':>16}{'conn/s':>9}"
    )
    for r in rows:
        print(
            f"{r['gateway']:<18}{r['rss_before_mb']:>9.1f}MB{r['rss_after_mb']:>9.1f}MB"
            f"{r['rss_per_conn_kb']:>9.1f}{r['kernel_per_end_kb']:>16.1f}{r['connect_per_s']:>9.0f}"
        )
    out = ROOT / ".benchmarks"
    out.mkdir(exist_ok=True)
    (out / "idle-memory.json").write_text(json.dumps({"argv": sys.argv, "results": rows}, indent=2))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=15000)
    ap.add_argument(
        "--gateways",
        nargs="+",
        default=["tickgate", "node-seed", "picows-broadcast"],
        choices=["tickgate", "node-seed", "picows-broadcast", "raw-send", "py-websockets"],
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(ap.parse_args()))
