"""What client authentication costs a connection storm: WebSocket handshakes per second to a
gateway with ``auth = none`` beside the same gateway verifying a JWT per connection, for each
algorithm, in the same run; and the verification alone, per token, in this process.

    .venv/bin/python benches/auth_handshake.py [--connections 2000] [--concurrency 50]

Each case starts ``tickgate serve`` in its own process (embedded simulator, no data: the cost
is the handshake's), opens ``--connections`` connections ``--concurrency`` at a time from
loopback, each waiting for its welcome and closing. Writes .benchmarks/auth-handshake.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
ALGS = ("HS256", "ES256", "EdDSA", "RS256")


def verify_cost(alg: str, rounds: int = 2000) -> float:
    """Microseconds per ``Verifier.verify`` of one token."""
    from tickgate.auth import KeyRing, Verifier, issue, rotate

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "keys.json"
        rotate(path, alg)
        keys = KeyRing.from_file(path)
    verifier, token = Verifier(keys), issue(keys, "bench", 3600)
    started = time.perf_counter()
    for _ in range(rounds):
        verifier.verify(token)
    return (time.perf_counter() - started) / rounds * 1e6


async def storm(url: str, headers: dict[str, str] | None, connections: int, concurrency: int) -> float:
    """Handshakes (with the welcome) per second."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate, connect(url, additional_headers=headers, ping_interval=None, close_timeout=1) as ws:
            assert json.loads(await ws.recv())["type"] == "welcome"

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(connections)))
    return connections / (time.perf_counter() - started)


def case(alg: str | None, connections: int, concurrency: int, directory: Path) -> float:
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
        return asyncio.run(storm(url, headers, connections, concurrency))
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
        floor = case(None, a.connections, a.concurrency, Path(d))
        results["none"] = {"handshakes_per_s": floor, "verify_us": 0.0}
        for alg in ALGS:
            rate = case(alg, a.connections, a.concurrency, Path(d))
            results[alg] = {"handshakes_per_s": rate, "verify_us": verify_cost(alg)}
    print(f"\n{a.connections} handshakes, {a.concurrency} at a time, loopback, one process\n")
    print("| auth | handshakes/s | ratio to none | verify alone (us) |")
    print("| --- | --- | --- | --- |")
    for name, r in results.items():
        ratio = r["handshakes_per_s"] / floor
        print(f"| {name} | {r['handshakes_per_s']:,.0f} | {ratio:.2f} | {r['verify_us']:.0f} |")
    out = ROOT / ".benchmarks" / "auth-handshake.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": vars(a), "results": results}, indent=1))


if __name__ == "__main__":
    main()
