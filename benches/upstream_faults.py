"""What a client sees when the provider fails, with the gateway's default timers.

    .venv/bin/python benches/upstream_faults.py

Starts the iTick simulator and `tickgate serve` (processes of their own, default settings:
pings every 5 s, pong timeout 4 s, auth timeout 10 s) and one client subscribed to two quote
channels, then makes the provider fail as an operator would see it:

- **killed**: the simulator process gets SIGKILL; 5 s later a new one starts on the same port.
- **frozen**: the simulator gets SIGSTOP (TCP stays open, nothing answers); 5 s after the
  gateway said so, SIGCONT.
- **never authenticating**: a server that greets and never answers the auth, from the start.

For each, the time from the fault to the client's ``stale`` status (and its reason), and from
the repair to its ``ok`` (with how many ``refresh`` messages came before it). Loopback only;
bounded; stops by itself. Writes .benchmarks/upstream-faults.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

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

SUBSCRIBE = {"action": "subscribe", "symbols": ["AAPL$US", "MSFT$US"], "types": ["quote"]}


async def next_status(ws: Any, timeout: float) -> tuple[dict[str, Any], int, float]:
    """The next status message, how many refresh messages came before it, and when it came."""
    refreshes = 0
    deadline = time.monotonic() + timeout
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic())))
        if m.get("type") == "status":
            return m, refreshes, time.monotonic()
        refreshes += bool(m.get("refresh"))


async def subscribed(url: str) -> Any:
    ws = await connect(url, ping_interval=None)
    await ws.recv()  # welcome
    await ws.send(json.dumps(SUBSCRIBE))
    return ws


async def killed_and_frozen() -> dict[str, Any]:
    sim_port, gw_port = free_port(), free_port()
    sim = start(simulator_command(sim_port, "--rate", "5"), None, subprocess.DEVNULL)
    await wait_port(sim_port, sim)
    gw = start(serve_command(gw_port, f"ws://127.0.0.1:{sim_port}/stock"), None, None)
    out: dict[str, Any] = {}
    try:
        await wait_port(gw_port, gw)
        ws = await subscribed(f"ws://127.0.0.1:{gw_port}/")
        for _ in range(5):
            await ws.recv()  # reply, snapshots, live data
        # Killed.
        t0 = time.monotonic()
        os.kill(sim.pid, signal.SIGKILL)
        stale, _, at = await next_status(ws, 30)
        out["killed"] = {"stale_after_s": round(at - t0, 3), "reason": stale["reason"]}
        await asyncio.sleep(5)
        t1 = time.monotonic()
        sim = start(simulator_command(sim_port, "--rate", "5"), None, subprocess.DEVNULL)
        ok, refreshes, at = await next_status(ws, 60)
        out["killed"].update(ok_after_restart_s=round(at - t1, 3), state=ok["state"], refreshes=refreshes)
        # Frozen.
        await asyncio.sleep(1)
        t0 = time.monotonic()
        os.kill(sim.pid, signal.SIGSTOP)
        stale, _, at = await next_status(ws, 30)
        out["frozen"] = {"stale_after_s": round(at - t0, 3), "reason": stale["reason"]}
        await asyncio.sleep(5)
        t1 = time.monotonic()
        os.kill(sim.pid, signal.SIGCONT)
        ok, refreshes, at = await next_status(ws, 60)
        out["frozen"].update(ok_after_resume_s=round(at - t1, 3), state=ok["state"], refreshes=refreshes)
        await ws.close()
    finally:
        with_cont = sim.poll() is None
        if with_cont:
            os.kill(sim.pid, signal.SIGCONT)
        stop(gw)
        stop(sim)
    return out


async def never_authenticating() -> dict[str, Any]:
    async def greet_only(conn: ServerConnection) -> None:
        await conn.send('{"code":1,"msg":"Connected Successfully"}')
        await conn.wait_closed()  # the auth is never answered

    port, gw_port = free_port(), free_port()
    async with serve(greet_only, "127.0.0.1", port):
        gw = start(serve_command(gw_port, f"ws://127.0.0.1:{port}/stock"), None, None)
        try:
            t0 = time.monotonic()
            await wait_port(gw_port, gw)
            ws = await subscribed(f"ws://127.0.0.1:{gw_port}/")
            reply = json.loads(await ws.recv())
            stale, _, at = await next_status(ws, 30)
            out = {
                "subscribe_reply": reply["type"],
                "stale_after_start_s": round(at - t0, 3),
                "reason": stale["reason"],
            }
            await asyncio.sleep(22)  # two auth timeouts of 10 s, with backoff between
            metrics = await asyncio.to_thread(_get, f"http://127.0.0.1:{gw_port}/metrics")
            line = next(x for x in metrics.splitlines() if x.startswith("tickgate_upstream_reconnects_total"))
            out["reconnects_in_24s"] = float(line.split()[-1])
            await ws.close()
        finally:
            stop(gw)
    return out


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


async def main() -> dict[str, Any]:
    try:
        report = await killed_and_frozen()
        report["never_authenticating"] = await never_authenticating()
        return report
    finally:
        stop_children()


if __name__ == "__main__":
    report = asyncio.run(main())
    print(json.dumps(report, indent=2))
    out = ROOT / ".benchmarks"
    out.mkdir(exist_ok=True)
    (out / "upstream-faults.json").write_text(json.dumps({"argv": sys.argv, "report": report}, indent=2))
