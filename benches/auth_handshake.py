"""What client authentication costs a connection storm: the gateway's CPU per WebSocket
handshake with ``auth = none`` beside the same gateway verifying a JWT per connection, for each
algorithm, in the same run; and the verification alone, per token, in this process.

The gateway's own CPU time (from /proc) per handshake is the figure: on 2 cores the Python
clients share the machine, so handshakes per second say more about the clients than about the
gateway (they are shown too).

    .venv/bin/python -m benches.auth_handshake [--connections 2000] [--concurrency 50]

Each case starts ``tickgate serve`` in its own process (embedded simulator, no data: the cost
is the handshake's), opens ``--connections`` connections ``--concurrency`` at a time from
loopback, each waiting for its welcome and closing. Writes .benchmarks/auth-handshake.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect

from benches.procstat import cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
ALGS = ("HS256", "ES256", "EdDSA", "RS256")
REPEATS = 3


def verify_cost(alg: str, rounds: int = 2000) -> float:
    """Microseconds per ``Verifier.verify`` of one token."""
    from tickgate.auth import KeyRing, Verifier, issue, rotate

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "keys.json"
        rotate(path, alg)
        keys = KeyRing.from_file(path)
    verifier, token = Verifier(keys), issue(keys, "bench", 3600)
    runs = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        for _ in range(rounds):
            verifier.verify(token)
        runs.append((time.perf_counter() - started) / rounds * 1e6)
    return statistics.median(runs)


async def storm(url: str, headers: dict[str, str] | None, connections: int, concurrency: int) -> float:
    """Handshakes (with the welcome) per second."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate, connect(url, additional_headers=headers, ping_interval=None, close_timeout=1) as ws:
            assert json.loads(await ws.recv())["type"] == "welcome"

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(connections)))
    return connections / (time.perf_counter() - started)


def case(alg: str | None, connections: int, concurrency: int, directory: Path) -> tuple[float, float]:
    """(handshakes per second, gateway CPU microseconds per handshake)."""
    from tickgate.auth import KeyRing, issue, rotate

    args = ["serve", "--port", "0", "--log-level", "ERROR"]
    headers = None
    if alg is not None:
        path = directory / f"{alg}.json"
        rotate(path, alg)
        args += ["--auth", "jwt", "--jwt-keys", str(path)]
        headers = {"Authorization": f"Bearer {issue(KeyRing.from_file(path), 'bench', 3600)}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickgate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "python")},
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[-1]
        asyncio.run(storm(url, headers, 200, concurrency))  # warm-up
        rates, costs = [], []
        for _ in range(REPEATS):  # the median of a few: a 2-core machine is noisy
            time.sleep(0.5)  # the previous round's connections gone
            before = cpu_seconds(proc.pid)
            rates.append(asyncio.run(storm(url, headers, connections, concurrency)))
            time.sleep(0.5)
            costs.append((cpu_seconds(proc.pid) - before) / connections * 1e6)
        return statistics.median(rates), statistics.median(costs)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=50)
    a = p.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as d:
        rate, cpu = case(None, a.connections, a.concurrency, Path(d))
        results["none"] = {"handshakes_per_s": rate, "gateway_cpu_us": cpu, "verify_us": 0.0}
        for alg in ALGS:
            rate, cpu = case(alg, a.connections, a.concurrency, Path(d))
            results[alg] = {"handshakes_per_s": rate, "gateway_cpu_us": cpu, "verify_us": verify_cost(alg)}
    floor = results["none"]["gateway_cpu_us"]
    print(f"\n{a.connections} handshakes, {a.concurrency} at a time, loopback, one gateway process\n")
    print("| auth | gateway CPU per handshake (us) | ratio to none | verify alone (us) | handshakes/s |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in results.items():
        print(
            f"| {name} | {r['gateway_cpu_us']:.0f} | {r['gateway_cpu_us'] / floor:.2f} | "
            f"{r['verify_us']:.0f} | {r['handshakes_per_s']:,.0f} |"
        )
    out = ROOT / ".benchmarks" / "auth-handshake.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": vars(a), "results": results}, indent=1))


if __name__ == "__main__":
    main()
