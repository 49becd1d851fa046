"""Side-by-side fan-out load test: tickgate against the peer gateways in ../shared/peers,
same feed, same workload, same load generator, one run.

    .venv/bin/python benches/load_fanout.py --clients 1000 --duration 10

Starts the iTick simulator (a separate process), then for each gateway in turn: starts it
against the simulator, connects N WebSocket clients (picows, one process), each subscribing
to K symbols x (quote, tick) from a shared pool, waits a warm-up, then counts for D seconds:
messages delivered, the gateway process's CPU time, and end-to-end latency (client receive
time minus the simulator's event time, sampled). Everything runs on loopback and stops by
itself. Prints a table with ratios to tickgate and writes .benchmarks/load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT.parent / "shared" / "peers"
TOKEN = "load-token"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


class LoadClient(WSListener):
    def __init__(self, stats: dict[str, Any], symbols: list[str], sample_every: int) -> None:
        self.stats = stats
        self.symbols = symbols
        self.sample_every = sample_every
        self.count = 0

    def on_ws_connected(self, transport: WSTransport) -> None:
        msg = {"action": "subscribe", "symbols": self.symbols, "types": ["quote", "tick"]}
        transport.send(WSMsgType.TEXT, json.dumps(msg).encode())

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not WSMsgType.TEXT:
            return
        self.count += 1
        stats = self.stats
        if stats["measuring"]:
            stats["messages"] += 1
            if self.count % self.sample_every == 0:
                payload = frame.get_payload_as_bytes()
                if b'"stock_quote"' in payload:
                    data = json.loads(payload)["data"]
                    sent = data.get("tradeTime") or data.get("time")
                    if sent:
                        stats["latency_ms"].append(time.time() * 1000 - sent)


async def drive(port: int, pid: int, args: argparse.Namespace, pool: list[str]) -> dict[str, Any]:
    stats: dict[str, Any] = {"measuring": False, "messages": 0, "latency_ms": []}
    transports = []
    failed = 0
    for i in range(args.clients):
        symbols = [pool[(i + k * 7) % len(pool)] for k in range(args.symbols_per_client)]
        try:
            t, _ = await ws_connect(
                lambda s=symbols: LoadClient(stats, s, args.sample_every),
                f"ws://127.0.0.1:{port}/",
                enable_auto_ping=False,
                websocket_handshake_timeout=30,
            )
        except (OSError, TimeoutError) as e:
            # A gateway that cannot accept more clients under load is a result, not a crash.
            failed += 1
            print(f"  client {i} could not connect: {type(e).__name__}: {e}", file=sys.stderr)
            if failed >= 3:
                break
            continue
        transports.append(t)
    await asyncio.sleep(args.warmup)
    cpu0 = cpu_seconds(pid)
    stats["measuring"] = True
    start = time.monotonic()
    await asyncio.sleep(args.duration)
    stats["measuring"] = False
    elapsed = time.monotonic() - start
    cpu = cpu_seconds(pid) - cpu0
    for t in transports:
        t.disconnect()
    await asyncio.sleep(0.2)
    return {
        "messages": stats["messages"],
        "elapsed": elapsed,
        "latency_ms": stats["latency_ms"],
        "connected": len(transports),
        "cpu_s": cpu,
    }


def node_seed_dir() -> Path | None:
    if not (shutil.which("node") and shutil.which("npm") and (PEERS / "node-seed").is_dir()):
        return None
    work = Path(tempfile.gettempdir()) / "tickgate-peer-node-seed"
    if not (work / "node_modules" / "ws").is_dir():
        shutil.copytree(PEERS / "node-seed", work, dirs_exist_ok=True)
        for f in work.iterdir():
            f.chmod(0o644)
        r = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if r.returncode != 0:
            print(f"node-seed: npm install failed, skipped:\n{r.stderr[-500:]}", file=sys.stderr)
            return None
    return work


def gateway_command(name: str, port: int, upstream: str) -> tuple[list[str], dict[str, str]] | None:
    env = {**os.environ, "ITICK_URL": upstream, "ITICK_TOKEN": TOKEN, "PORT": str(port)}
    if name == "tickgate":
        return [
            sys.executable,
            "-m",
            "tickgate",
            "serve",
            "--port",
            str(port),
            "--upstream-url",
            upstream,
            "--upstream-token",
            TOKEN,
            "--log-level",
            "WARNING",
        ], env
    if name == "py-websockets":
        return [sys.executable, str(PEERS / "py-websockets" / "server.py")], env
    if name == "node-seed":
        work = node_seed_dir()
        return None if work is None else (["node", str(work / "server.js")], env)
    raise ValueError(name)


async def run_one(
    name: str, args: argparse.Namespace, upstream: str, pool: list[str]
) -> dict[str, Any] | None:
    port = free_port()
    cmd = gateway_command(name, port, upstream)
    if cmd is None:
        return None
    proc = subprocess.Popen(cmd[0], env=cmd[1], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    print(f"{name}: {args.clients} clients ...", file=sys.stderr, flush=True)
    try:
        await wait_port(port)
        await asyncio.sleep(1.0)  # upstream connect + auth
        return await drive(port, proc.pid, args, pool)
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def summarize(name: str, r: dict[str, Any], expected_rate: float) -> dict[str, Any]:
    lat = sorted(r["latency_ms"])
    pct = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]) if lat else (lambda q: float("nan"))
    rate = r["messages"] / r["elapsed"]
    return {
        "gateway": name,
        "msgs_per_s": rate,
        "delivered_pct": 100 * rate / expected_rate if expected_rate else float("nan"),
        "cpu_s": r["cpu_s"],
        "cpu_us_per_msg": 1e6 * r["cpu_s"] / max(1, r["messages"]),
        "latency_p50_ms": pct(0.50),
        "latency_p99_ms": pct(0.99),
        "latency_mean_ms": statistics.fmean(lat) if lat else float("nan"),
        "samples": len(lat),
        "connected": r["connected"],
    }


async def main(args: argparse.Namespace) -> None:
    sim_port = free_port()
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tickgate",
            "simulate",
            "--port",
            str(sim_port),
            "--rate",
            str(args.rate),
            "--seed",
            "1",
            "--log-level",
            "WARNING",
            # The peers match symbols as sent, without normalizing: give them `$` form.
            "--symbol-style",
            "dollar",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pool = [f"SYM{i}$US" for i in range(args.symbol_pool)]
    # Each symbol streams quote and tick at `rate`; a client receives its symbols' share.
    per_client = args.symbols_per_client * 2 * args.rate
    expected = per_client * args.clients
    rows = []
    try:
        await wait_port(sim_port)
        upstream = f"ws://127.0.0.1:{sim_port}/stock"
        for name in args.gateways:
            r = await run_one(name, args, upstream, pool)
            if r is None:
                print(f"{name}: not available, skipped", file=sys.stderr)
                continue
            rows.append(summarize(name, r, expected))
            await asyncio.sleep(0.5)
    finally:
        sim.terminate()
        sim.wait(10)
    base = next((r for r in rows if r["gateway"] == "tickgate"), None)
    print(
        f"\n{args.clients} clients x {args.symbols_per_client} symbols x (quote, tick) "
        f"from {args.symbol_pool}, rate {args.rate}/s per symbol and type, {args.duration}s; "
        f"expected {expected:,.0f} msgs/s"
    )
    print(
        f"{'gateway':<15}{'clients':>8}{'msgs/s':>10}{'deliv%':>8}{'cpu s':>8}{'cpu us/msg':>12}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'cpu/msg vs tickgate':>21}"
    )
    for r in rows:
        ratio = f"{r['cpu_us_per_msg'] / base['cpu_us_per_msg']:.2f}x" if base else ""
        print(
            f"{r['gateway']:<15}{r['connected']:>8}{r['msgs_per_s']:>10,.0f}{r['delivered_pct']:>8.1f}{r['cpu_s']:>8.2f}"
            f"{r['cpu_us_per_msg']:>12.2f}{r['latency_p50_ms']:>9.1f}{r['latency_p99_ms']:>9.1f}{ratio:>21}"
        )
    out = ROOT / ".benchmarks"
    out.mkdir(exist_ok=True)
    (out / "load.json").write_text(
        json.dumps({"args": vars(args), "expected_msgs_per_s": expected, "results": rows}, indent=2)
    )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--symbols-per-client", type=int, default=5)
    p.add_argument("--symbol-pool", type=int, default=20)
    p.add_argument("--rate", type=float, default=5.0, help="simulator updates/s per symbol and type")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--sample-every", type=int, default=50, help="parse every Nth message for latency")
    p.add_argument("--gateways", nargs="+", default=["tickgate", "py-websockets", "node-seed"])
    a = p.parse_args()
    if a.clients > 15000:
        p.error("--clients is bounded at 15000 (file descriptor limit on this machine)")
    try:
        import uvloop

        uvloop.run(main(a))
    except ImportError:
        asyncio.run(main(a))
