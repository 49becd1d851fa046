"""Side-by-side fan-out load test: gateway CPU time per delivery for tickgate and its peers on one
workload, one simulator feed and one load generator, in one run.

    .venv/bin/python benches/load_fanout.py --workload w1      # 500 clients x 10 of 100 symbols, quote
    .venv/bin/python benches/load_fanout.py --workload dense   # 2000 clients x 5 of 20 symbols, quote+tick

Workloads (any field can be overridden by its flag):
- w1: 100 symbols at 10 quote updates/s each (1,000 upstream updates/s), 500 clients x 10 symbols
  (quote): about 50k deliveries/s.
- dense: 20 symbols at the simulator's default 2 updates/s per type, 2,000 clients x 5 symbols x
  (quote, tick): about 40k deliveries/s.

Gateways (--gateways): tickgate (immediate pushes); tickgate-batch (same server, clients connect with
?mode=batch&interval_ms=500 and get one conflated frame per interval); tickgate-w1 and tickgate-w2
(`tickgate serve --workers 1|2`: one ingest process and one or two edge processes on the local bus;
CPU is summed over the node's processes); raw-send (benches/peer_raw_send.py,
the floor: one pre-built frame per write()); picows-broadcast (benches/peer_picows_broadcast.py, plain
picows); node-seed and py-websockets (../shared/peers).

Starts the iTick simulator (its own process), then for each gateway in turn: starts it against the
simulator, connects the clients (picows, this process), waits for their subscribe replies and a warm-up,
then counts for D seconds: deliveries (a stock_quote frame is 1, a batch frame is its number of
updates), frames, the gateway process's CPU time (/proc, all threads), and end-to-end latency (client
receive time minus the simulator's event time, sampled). Everything runs on loopback, with bounded
counts and durations, and every process is stopped at the end, also on error or Ctrl-C. Prints a table
with ratios to the named baselines and writes .benchmarks/load-<workload>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benches.procstat import TICKS, tree_cpu_and_rss

ROOT = Path(__file__).resolve().parent.parent
BENCHES = Path(__file__).resolve().parent
PEERS = ROOT.parent / "shared" / "peers"
TOKEN = "load-token"

WORKLOADS: dict[str, dict[str, Any]] = {
    "w1": {"clients": 500, "symbols_per_client": 10, "symbol_pool": 100, "rate": 10.0, "types": ["quote"]},
    "dense": {
        "clients": 2000,
        "symbols_per_client": 5,
        "symbol_pool": 20,
        "rate": 2.0,  # the simulator's default
        "types": ["quote", "tick"],
    },
}
GATEWAYS = (
    "tickgate",
    "tickgate-batch",
    "tickgate-w1",
    "tickgate-w2",
    "raw-send",
    "picows-broadcast",
    "node-seed",
    "py-websockets",
)
#: A node of worker processes: one ingest and N edges (tickgate serve --workers N).
WORKER_GATEWAYS = {"tickgate-w1": 1, "tickgate-w2": 2}
BATCH_GATEWAYS = frozenset({"tickgate-batch"})
MAX_CLIENTS = 15000  # file descriptors on this machine (both ends of every connection are local)
CONNECT_CONCURRENCY = 50  # handshakes in flight at once
ACK_TIMEOUT = 20.0  # seconds to wait for every client's subscribe reply
CHILDREN: list[subprocess.Popen[bytes]] = []  # every process started, stopped in stop_children()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_fd_limit(needed: int) -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (children inherit it); the resulting soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < needed:
        sys.exit(f"RLIMIT_NOFILE is {soft} (hard {hard}); {needed} descriptors are needed")
    return soft


def start(cmd: list[str], env: dict[str, str] | None, stderr: Any) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    CHILDREN.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    with contextlib.suppress(ValueError):
        CHILDREN.remove(proc)


def stop_children() -> None:
    for proc in list(CHILDREN):
        stop(proc)


async def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode} before listening")
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


class Stats:
    __slots__ = ("acks", "batch_frames", "deliveries", "frames", "latency_ms", "measuring", "unrequested")

    def __init__(self) -> None:
        self.measuring = False
        self.acks = 0  # clients that got their subscribe reply
        self.deliveries = 0  # updates received: 1 per stock_quote frame, len(updates) per batch frame
        self.frames = 0  # frames carrying updates
        self.batch_frames = 0
        self.unrequested = 0  # stock_quote frames of a type the client did not subscribe to
        self.latency_ms: list[float] = []


class LoadClient(WSListener):
    def __init__(self, stats: Stats, symbols: list[str], types: list[str], sample_every: int) -> None:
        self.stats = stats
        self.symbols = symbols
        self.types = types
        self.sample_every = sample_every
        # A gateway may forward types nobody asked for (py-websockets subscribes quote+tick regardless).
        self.unwanted = None if "tick" in types else b'"tick"'
        self.acked = False
        self.count = 0

    def on_ws_connected(self, transport: WSTransport) -> None:
        msg = {"action": "subscribe", "symbols": self.symbols, "types": self.types}
        transport.send(WSMsgType.TEXT, json.dumps(msg).encode())

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not WSMsgType.TEXT:
            return
        stats = self.stats
        payload = frame.get_payload_as_bytes()
        if b"stock_quote" in payload:
            n = 1
            if not stats.measuring:
                return
            if self.unwanted is not None and self.unwanted in payload:
                stats.unrequested += 1
        elif b'"batch"' in payload:
            if not stats.measuring:
                return
            n = payload.count(b'"seq"')  # one per update; cheaper than parsing every batch
            stats.batch_frames += 1
        else:
            if not self.acked and b'"success"' in payload:
                self.acked = True
                stats.acks += 1
            return
        stats.frames += 1
        stats.deliveries += n
        self.count += 1
        if self.count % self.sample_every == 0:
            msg = json.loads(payload)
            items = msg.get("updates") or [msg.get("data")]
            now = time.time() * 1000
            for data in items:
                if isinstance(data, dict):
                    # tickgate and the seed: tradeTime; raw-send forwards iTick's own "t".
                    sent = data.get("tradeTime") or data.get("time") or data.get("t")
                    if isinstance(sent, int | float) and sent > 0:
                        stats.latency_ms.append(now - sent)


def client_symbols(i: int, pool: list[str], k: int) -> list[str]:
    """k distinct symbols for client i, spread over the pool (stride 7, as before)."""
    out: list[str] = []
    j = 0
    while len(out) < k:
        s = pool[(i + j * 7 + j // len(pool)) % len(pool)]
        if s not in out:
            out.append(s)
        j += 1
    return out


async def connect_clients(url: str, args: argparse.Namespace, pool: list[str], stats: Stats) -> list[Any]:
    transports: list[Any] = []
    failed = 0

    async def one(i: int) -> Any:
        symbols = client_symbols(i, pool, args.symbols_per_client)
        t, _ = await ws_connect(
            lambda: LoadClient(stats, symbols, args.types, args.sample_every),
            url,
            enable_auto_ping=False,
            websocket_handshake_timeout=30,
        )
        return t

    for first in range(0, args.clients, CONNECT_CONCURRENCY):
        batch = range(first, min(args.clients, first + CONNECT_CONCURRENCY))
        results = await asyncio.gather(*(one(i) for i in batch), return_exceptions=True)
        for i, r in zip(batch, results, strict=True):
            if isinstance(r, asyncio.CancelledError):
                raise r
            if isinstance(r, BaseException):
                # A gateway that cannot accept more clients under load is a result, not a crash.
                failed += 1
                if failed <= 3:
                    print(f"  client {i} could not connect: {type(r).__name__}: {r}", file=sys.stderr)
            else:
                transports.append(r)
        if failed >= 3:
            break
    return transports


async def drive(port: int, pid: int, name: str, args: argparse.Namespace, pool: list[str]) -> dict[str, Any]:
    stats = Stats()
    query = f"?mode=batch&interval_ms={args.batch_interval_ms}" if name in BATCH_GATEWAYS else ""
    transports = await connect_clients(f"ws://127.0.0.1:{port}/{query}", args, pool, stats)
    try:
        deadline = time.monotonic() + ACK_TIMEOUT
        while stats.acks < len(transports) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(args.warmup)
        cpu0 = tree_cpu_and_rss(pid)[0]  # a node's workers are its children
        stats.measuring = True
        start_t = time.monotonic()
        await asyncio.sleep(args.duration)
        stats.measuring = False
        elapsed = time.monotonic() - start_t
        cpu = tree_cpu_and_rss(pid)[0] - cpu0
    finally:
        for t in transports:
            if not t.is_disconnected:
                t.send_close(WSCloseCode.OK)  # a clean close: no gateway logs (or spends CPU on) errors
                t.disconnect()
    await asyncio.sleep(0.2)
    return {
        "deliveries": stats.deliveries,
        "frames": stats.frames,
        "batch_frames": stats.batch_frames,
        "unrequested": stats.unrequested,
        "elapsed": elapsed,
        "latency_ms": stats.latency_ms,
        "connected": len(transports),
        "subscribed": stats.acks,
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


def simulator_command(port: int, *flags: str) -> list[str]:
    """`tickgate simulate` on ``port``, symbols in `$` form (peers match symbols as sent)."""
    return [
        sys.executable,
        "-m",
        "tickgate",
        "simulate",
        "--port",
        str(port),
        "--symbol-style",
        "dollar",
        *flags,
    ]


def serve_command(port: int, upstream: str, *flags: str) -> list[str]:
    """`tickgate serve` on ``port`` against the simulator at ``upstream``, quiet."""
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
        *flags,
    ]


def gateway_command(name: str, port: int, upstream: str) -> tuple[list[str], dict[str, str]] | None:
    env = {**os.environ, "ITICK_URL": upstream, "ITICK_TOKEN": TOKEN, "PORT": str(port)}
    if name in ("tickgate", "tickgate-batch", *WORKER_GATEWAYS):
        workers = ["--workers", str(WORKER_GATEWAYS[name])] if name in WORKER_GATEWAYS else []
        return serve_command(port, upstream, *workers), env
    if name == "raw-send":
        return [sys.executable, str(BENCHES / "peer_raw_send.py")], env
    if name == "picows-broadcast":
        return [sys.executable, str(BENCHES / "peer_picows_broadcast.py")], env
    if name == "py-websockets":
        return [sys.executable, str(PEERS / "py-websockets" / "server.py")], env
    if name == "node-seed":
        work = node_seed_dir()
        return None if work is None else (["node", str(work / "server.js")], env)
    raise ValueError(name)


def log_tail(path: Path, n: int = 800) -> str:
    with contextlib.suppress(OSError):
        return path.read_bytes()[-n:].decode(errors="replace").strip()
    return ""


async def run_one(
    name: str, args: argparse.Namespace, upstream: str, pool: list[str], logs: Path
) -> dict[str, Any] | None:
    port = free_port()
    cmd = gateway_command(name, port, upstream)
    if cmd is None:
        return None
    log = logs / f"{name}.stderr"
    with log.open("wb") as err:
        proc = start(cmd[0], cmd[1], err)
    print(f"{name}: {args.clients} clients ...", file=sys.stderr, flush=True)
    try:
        await wait_port(port, proc)
        await asyncio.sleep(1.0)  # upstream connect + auth
        r = await drive(port, proc.pid, name, args, pool)
        if proc.poll() is not None:
            r["note"] = f"exited with status {proc.returncode} during the run; stderr in {log}"
        elif not r["deliveries"]:
            r["note"] = f"delivered nothing; stderr in {log}"
        if r.get("note"):
            print(f"{name}: {r['note']}\n{log_tail(log)}", file=sys.stderr)
        return r
    except (OSError, RuntimeError) as e:
        print(f"{name}: failed: {e}\n{log_tail(log)}", file=sys.stderr)
        return None
    finally:
        stop(proc)


def summarize(name: str, r: dict[str, Any], expected_rate: float) -> dict[str, Any]:
    lat = sorted(r["latency_ms"])
    pct = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]) if lat else (lambda q: float("nan"))
    rate = r["deliveries"] / r["elapsed"]
    batched = r["batch_frames"] > 0
    requested = (r["deliveries"] - r["unrequested"]) / r["elapsed"]
    return {
        "gateway": name,
        "connected": r["connected"],
        "subscribed": r["subscribed"],
        "deliveries_per_s": rate,
        "frames_per_s": r["frames"] / r["elapsed"],
        "batch_frames": r["batch_frames"],
        "unrequested_per_s": r["unrequested"] / r["elapsed"],
        # Conflated batches deliver fewer updates by design: no percentage for them.
        "delivered_pct": None if batched or not expected_rate else 100 * requested / expected_rate,
        "cpu_s": r["cpu_s"],
        "elapsed_s": r["elapsed"],
        "cpu_us_per_delivery": 1e6 * r["cpu_s"] / r["deliveries"] if r["deliveries"] else None,
        "cpu_ms_per_s": 1e3 * r["cpu_s"] / r["elapsed"],
        "latency_p50_ms": pct(0.50),
        "latency_p99_ms": pct(0.99),
        "latency_mean_ms": statistics.fmean(lat) if lat else float("nan"),
        "samples": len(lat),
        "note": r.get("note"),
    }


def ratio(row: dict[str, Any], base: dict[str, Any] | None, key: str) -> float | None:
    if base is None or row[key] is None or not base[key]:
        return None
    return row[key] / base[key]


def add_ratios(rows: list[dict[str, Any]]) -> None:
    by_name = {r["gateway"]: r for r in rows}
    raw, node = by_name.get("raw-send"), by_name.get("node-seed")
    for r in rows:
        r["cpu_per_delivery_vs_raw_send"] = ratio(r, raw, "cpu_us_per_delivery")
        r["cpu_per_delivery_vs_node_seed"] = ratio(r, node, "cpu_us_per_delivery")
        r["cpu_per_s_vs_node_seed"] = ratio(r, node, "cpu_ms_per_s")


def print_table(
    rows: list[dict[str, Any]], args: argparse.Namespace, upstream_rate: float, expected: float
) -> None:
    print(
        f"\nworkload {args.workload}: {args.clients} clients x {args.symbols_per_client} symbols x "
        f"({', '.join(args.types)}) from {args.symbol_pool}, {args.rate:g} updates/s per symbol and type "
        f"({upstream_rate:,.0f}/s upstream); expected {expected:,.0f} deliveries/s (immediate); "
        f"{args.duration:g} s measured; batch interval {args.batch_interval_ms} ms"
    )

    def fmt(v: float | None, spec: str, suffix: str = "") -> str:
        return "" if v is None else f"{v:{spec}}{suffix}"

    header = (
        f"{'gateway':<17}{'clients':>8}{'deliv/s':>10}{'frames/s':>10}{'deliv%':>8}{'cpu s':>7}"
        f"{'us/deliv':>9}{'cpu ms/s':>9}{'p50 ms':>8}{'p99 ms':>9}"
        f"{'us/d vs raw':>12}{'us/d vs node':>13}{'ms/s vs node':>13}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['gateway']:<17}{r['connected']:>8}{r['deliveries_per_s']:>10,.0f}{r['frames_per_s']:>10,.0f}"
            f"{fmt(r['delivered_pct'], '.1f'):>8}{r['cpu_s']:>7.2f}{fmt(r['cpu_us_per_delivery'], '.2f'):>9}"
            f"{r['cpu_ms_per_s']:>9.0f}{r['latency_p50_ms']:>8.1f}{r['latency_p99_ms']:>9.1f}"
            f"{fmt(r['cpu_per_delivery_vs_raw_send'], '.2f', 'x'):>12}"
            f"{fmt(r['cpu_per_delivery_vs_node_seed'], '.2f', 'x'):>13}"
            f"{fmt(r['cpu_per_s_vs_node_seed'], '.2f', 'x'):>13}"
        )
    for r in rows:
        notes = []
        if r["subscribed"] < r["connected"]:
            notes.append(f"only {r['subscribed']} of {r['connected']} clients got a subscribe reply")
        if r["unrequested_per_s"]:
            notes.append(f"{r['unrequested_per_s']:,.0f}/s of the deliveries are of a type not subscribed")
        if r["gateway"] in BATCH_GATEWAYS and not r["batch_frames"]:
            notes.append("no batch frames received: the server ignored mode=batch (immediate pushes)")
        if r["note"]:
            notes.append(r["note"])
        for n in notes:
            print(f"  {r['gateway']}: {n}")
    print(
        "deliveries: 1 per stock_quote frame, len(updates) per batch frame. cpu: the gateway process only"
        f" (all threads, in {1000 // TICKS} ms clock ticks); the simulator and the load generator share"
        " the machine."
    )


async def main(args: argparse.Namespace) -> None:
    logs = Path(tempfile.mkdtemp(prefix="tickgate-load-"))
    sim_port = free_port()
    sim = start(
        simulator_command(sim_port, "--rate", str(args.rate), "--seed", "1", "--log-level", "WARNING"),
        None,
        subprocess.DEVNULL,
    )
    pool = [f"SYM{i}$US" for i in range(args.symbol_pool)]
    used = {s for i in range(args.clients) for s in client_symbols(i, pool, args.symbols_per_client)}
    upstream_rate = len(used) * len(args.types) * args.rate
    expected = args.clients * args.symbols_per_client * len(args.types) * args.rate
    # Nothing may run forever: connecting, acks, warm-up, measuring, stopping, with generous slack.
    limit = 60 + args.clients / 20 + ACK_TIMEOUT + args.warmup + args.duration
    rows = []
    try:
        await wait_port(sim_port, sim)
        upstream = f"ws://127.0.0.1:{sim_port}/stock"
        for name in args.gateways:
            try:
                r = await asyncio.wait_for(run_one(name, args, upstream, pool, logs), limit)
            except TimeoutError:
                print(f"{name}: no result within {limit:.0f} s, skipped", file=sys.stderr)
                continue
            if r is None:
                print(f"{name}: not available, skipped", file=sys.stderr)
                continue
            rows.append(summarize(name, r, expected))
            await asyncio.sleep(0.5)
    finally:
        stop(sim)
    add_ratios(rows)
    print_table(rows, args, upstream_rate, expected)
    out = ROOT / ".benchmarks"
    out.mkdir(exist_ok=True)
    path = out / f"load-{args.workload}.json"
    path.write_text(
        json.dumps(
            {
                "argv": sys.argv,
                "args": vars(args),
                "upstream_updates_per_s": upstream_rate,
                "expected_deliveries_per_s": expected,
                "results": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {path.relative_to(ROOT)}")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", choices=sorted(WORKLOADS), default="dense", help="preset (default dense)")
    p.add_argument("--clients", type=int, help="load clients (preset: w1 500, dense 2000)")
    p.add_argument("--symbols-per-client", type=int)
    p.add_argument("--symbol-pool", type=int, help="symbols SYM0$US.. the clients draw from")
    p.add_argument("--rate", type=float, help="simulator updates/s per symbol and type")
    p.add_argument("--types", nargs="+", choices=["quote", "tick", "depth"], help="subscribed types")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--sample-every", type=int, default=50, help="parse every Nth frame for latency")
    p.add_argument("--batch-interval-ms", type=int, default=500, help="interval_ms for tickgate-batch")
    p.add_argument("--gateways", nargs="+", choices=GATEWAYS, default=list(GATEWAYS))
    a = p.parse_args()
    for key, value in WORKLOADS[a.workload].items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    if not 1 <= a.clients <= MAX_CLIENTS:
        p.error(f"--clients is bounded at {MAX_CLIENTS} (file descriptor limit on this machine)")
    if not 1 <= a.symbol_pool <= 1000:  # the simulator's subscription limit per connection
        p.error("--symbol-pool must be 1..1000")
    if not 1 <= a.symbols_per_client <= a.symbol_pool:
        p.error("--symbols-per-client must be 1..--symbol-pool")
    if not 0 < a.rate <= 100:
        p.error("--rate must be in (0, 100]")
    if not (0 < a.duration <= 600 and 0 <= a.warmup <= 120 and a.sample_every >= 1):
        p.error("--duration must be in (0, 600], --warmup in [0, 120], --sample-every >= 1")
    if not 10 <= a.batch_interval_ms <= 60_000:
        p.error("--batch-interval-ms must be 10..60000")
    return a


def _terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    args = parse_args()
    raise_fd_limit(args.clients + 256)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        import uvloop

        uvloop.run(main(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        stop_children()  # whatever happened above, no gateway or simulator outlives the run
