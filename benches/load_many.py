"""Many clients on one host: a load generator spread over processes and loopback source addresses.

    .venv/bin/python benches/load_many.py --clients 18000 [--procs 4] [--symbols 1000]
        [--interval-ms 500] [--duration 10] [--gateway-args ...]

One process may hold 20,000 descriptors here and one source address reaches one server port
from about 28,000 ephemeral ports, so the clients are spread over ``--procs`` processes, each
connecting from its own 127.0.0.x address. Each client subscribes to one quote channel out of
``--symbols`` in batch mode (``?mode=batch&interval_ms=N``). Starts its own simulator and
``tickgate serve`` (extra flags via ``--gateway-args``), connects with bounded concurrency,
then counts for ``--duration`` seconds and reports: connect rate, connected and failed clients,
batches and deliveries per second, batch cycle latency (receive time minus the batch's
``timestamp``) p50/p99/max, the gateway's CPU and RSS summed over its processes, RSS per
connection, and the kernel's growth in socket memory (slab and TCP buffers). Loopback only; everything
stops by itself. Writes .benchmarks/load-many.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benches.load_fanout import (
    ROOT,
    free_port,
    serve_command,
    simulator_command,
    start,
    stop,
    stop_children,
    wait_port,
)
from benches.procstat import kernel_socket_bytes, tree_cpu_and_rss

CONCURRENCY = 200  # handshakes in flight per load process
SAMPLE_EVERY = 20  # parse one batch frame in this many for latency


# -- load processes ----------------------------------------------------------------------------


def load_process(
    index: int, first: int, count: int, args: argparse.Namespace, url: str, out: Any, go: Any
) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    import uvloop

    out.put(("result", uvloop.run(_load(index, first, count, args, url, out, go))))


async def _load(
    index: int, first: int, count: int, args: argparse.Namespace, url: str, out: Any, go: Any
) -> dict[str, Any]:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    state = {"measuring": False, "frames": 0, "deliveries": 0, "latency": [], "seen": 0}
    source = f"127.0.0.{2 + index}"

    class Client(WSListener):
        __slots__ = ("symbol",)

        def __init__(self, symbol: str) -> None:
            self.symbol = symbol

        def on_ws_connected(self, transport: WSTransport) -> None:
            msg = {"action": "subscribe", "symbols": [self.symbol], "types": ["quote"]}
            transport.send(WSMsgType.TEXT, json.dumps(msg).encode())

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if not state["measuring"] or frame.msg_type is not WSMsgType.TEXT:
                return
            payload = frame.get_payload_as_bytes()
            if b'"batch"' not in payload:
                return
            state["frames"] += 1
            state["deliveries"] += payload.count(b'"seq"')
            state["seen"] += 1
            if state["seen"] % SAMPLE_EVERY == 0:
                state["latency"].append(time.time() * 1000 - json.loads(payload)["timestamp"])

    sem = asyncio.Semaphore(CONCURRENCY)
    transports: list[Any] = []
    failures: list[str] = []

    async def one(i: int) -> None:
        async with sem:
            try:
                t, _ = await ws_connect(
                    lambda: Client(f"SYM{i % args.symbols}$US"),
                    url,
                    local_addr=(source, 0),
                    enable_auto_ping=False,
                    websocket_handshake_timeout=60,
                )
                transports.append(t)
            except Exception as e:  # a refused client is a result, not a crash
                failures.append(f"{type(e).__name__}: {e}")

    t0 = time.monotonic()
    connecting = asyncio.gather(*(one(i) for i in range(first, first + count)))
    try:
        # Past the budget, measure with the clients that made it (and say how many did not).
        await asyncio.wait_for(connecting, args.connect_budget)
    except TimeoutError:
        failures.append(f"connect budget of {args.connect_budget:g} s spent")
    connect_s = time.monotonic() - t0
    out.put(("connected", index))
    # Every load process measures the same window: the parent says go once all are connected.
    await asyncio.to_thread(go.wait, args.connect_budget)
    await asyncio.sleep(args.warmup)
    state["measuring"] = True
    await asyncio.sleep(args.duration)
    state["measuring"] = False
    for t in transports:
        t.disconnect()
    return {
        "connected": len(transports),
        "failed": count - len(transports),
        "failures": failures[:3],
        "connect_s": connect_s,
        "frames": state["frames"],
        "deliveries": state["deliveries"],
        "latency": state["latency"],
    }


# -- driver ------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) >= 2 else float("nan")


async def main(args: argparse.Namespace) -> dict[str, Any]:
    sim_port, gw_port = free_port(), free_port()
    sim = start(
        simulator_command(sim_port),
        None,
        subprocess.DEVNULL,
    )
    await wait_port(sim_port, sim)
    gw = start(serve_command(gw_port, f"ws://127.0.0.1:{sim_port}/stock", *args.gateway_args), None, None)
    try:
        await wait_port(gw_port, gw)
        await asyncio.sleep(1)
        _, rss0 = tree_cpu_and_rss(gw.pid)
        tcp0 = kernel_socket_bytes()
        url = f"ws://127.0.0.1:{gw_port}/?mode=batch&interval_ms={args.interval_ms}"
        ctx = mp.get_context("spawn")
        queue: Any = ctx.Queue()
        go = ctx.Event()
        per = -(-args.clients // args.procs)
        procs = []
        for i in range(args.procs):
            first = i * per
            count = max(0, min(per, args.clients - first))
            p = mp.get_context("spawn").Process(
                target=load_process, args=(i, first, count, args, url, queue, go)
            )
            p.start()
            procs.append(p)
        # Sample the gateway when every load process is connected and has warmed up, and again
        # when their measuring window ends.
        deadline = time.monotonic() + args.connect_budget + 60
        for _ in procs:
            kind, _ = await asyncio.to_thread(queue.get, True, max(1.0, deadline - time.monotonic()))
            assert kind == "connected"
        go.set()
        await asyncio.sleep(args.warmup)
        cpu1, rss1 = tree_cpu_and_rss(gw.pid)
        tcp1 = kernel_socket_bytes()
        t1 = time.monotonic()
        await asyncio.sleep(args.duration)
        cpu2, _ = tree_cpu_and_rss(gw.pid)
        span = time.monotonic() - t1
        results = []
        for _ in procs:
            kind, result = await asyncio.to_thread(queue.get, True, 120)
            assert kind == "result"
            results.append(result)
        for p in procs:
            p.join(10)
    finally:
        stop(gw)
        stop(sim)
        stop_children()
    connected = sum(r["connected"] for r in results)
    latency = [x for r in results for x in r["latency"]]
    report = {
        "clients": args.clients,
        "procs": args.procs,
        "connected": connected,
        "failed": sum(r["failed"] for r in results),
        "failures": [f for r in results for f in r["failures"]][:3],
        "connect_per_s": connected / max(r["connect_s"] for r in results),
        "batches_per_s": sum(r["frames"] for r in results) / args.duration,
        "deliveries_per_s": sum(r["deliveries"] for r in results) / args.duration,
        "cycle_latency_ms": {
            "p50": pct(latency, 50),
            "p99": pct(latency, 99),
            "max": max(latency, default=0),
        },
        "gateway_cpu_per_s": (cpu2 - cpu1) / span,
        "gateway_rss_mb": rss1 / 2**20,
        "gateway_rss_per_conn_kb": (rss1 - rss0) / max(1, connected) / 1024,
        "kernel_socket_mb": (tcp1 - tcp0) / 2**20,
        "gateway_args": args.gateway_args,
    }
    return report


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=18000)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--interval-ms", type=int, default=500)
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds after connecting, before counting")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--connect-budget", type=float, default=60.0, help="seconds allowed for connecting")
    ap.add_argument(
        "--gateway-args", nargs=argparse.REMAINDER, default=[], help="extra `tickgate serve` flags"
    )
    a = ap.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    report = asyncio.run(main(a))
    print(json.dumps(report, indent=2))
    out = ROOT / ".benchmarks"
    out.mkdir(exist_ok=True)
    (out / "load-many.json").write_text(json.dumps({"argv": sys.argv, "report": report}, indent=2))
