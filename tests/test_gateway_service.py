"""The gateway as a service: HTTP endpoints on the WebSocket port, and the CLI process
(embedded default, signals, config errors)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gatewaykit import TIMEOUT, Client, http_get, start_gateway, start_simulator, wait_until

#: How long a CLI process may take to start (import, bind) or to fail: only a failing test
#: waits this long, and a loaded machine can take seconds to start an interpreter.
STARTUP = 30.0


async def test_healthz_and_metrics() -> None:
    sim = await start_simulator()
    gw = await start_gateway(sim)
    try:
        await wait_until(lambda: gw.upstream.state.value == "ready", what="ready")
        c = await Client.connect(gw)
        await c.request({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote", "tick"]})
        await c.push()
        base = f"http://127.0.0.1:{gw.port}"
        status, ctype, body = await asyncio.to_thread(http_get, base + "/healthz")
        health = json.loads(body)
        assert (status, ctype) == (200, "application/json")
        assert health["status"] == "ok"
        assert health["upstream"]["state"] == "ready"
        assert health["connections"] == 1
        assert health["subscriptions"] == {"channels": 2, "pairs": 2}

        status, ctype, body = await asyncio.to_thread(http_get, base + "/metrics")
        assert status == 200 and ctype.startswith("text/plain")
        metrics = {
            line.split()[0]: float(line.split()[1])
            for line in body.decode().splitlines()
            if line and line[0] != "#"
        }
        assert metrics["tickgate_connections"] == 1
        assert metrics["tickgate_subscriptions"] == 2
        assert metrics["tickgate_updates_in_total"] >= 1
        assert metrics["tickgate_deliveries_total"] >= 1
        assert metrics['tickgate_upstream_ready{provider="itick"}'] == 1

        assert (await asyncio.to_thread(http_get, base + "/nope"))[0] == 404
        assert (await asyncio.to_thread(http_get, base + "/ws"))[0] == 426
        await c.close()
        await sim.stop()
        await wait_until(lambda: gw.upstream.state.value != "ready", what="upstream down")
        status, _, body = await asyncio.to_thread(http_get, base + "/healthz")
        assert status == 503 and json.loads(body)["status"] == "degraded"
    finally:
        await gw.stop()
        await sim.stop()


async def test_stop_closes_clients_with_going_away() -> None:
    gw = await start_gateway(None)
    c = await Client.connect(gw)
    await c.request({"action": "subscribe", "symbols": ["AAPL$US"]})
    await gw.stop()
    with pytest.raises(ConnectionClosed) as info:
        for _ in range(1000):
            await c.recv(timeout=TIMEOUT)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1001


async def test_failed_start_leaves_nothing_running() -> None:
    gw1 = await start_gateway(None, simulator_rate=0.0)
    try:
        with pytest.raises(OSError):
            await start_gateway(None, simulator_rate=0.0, port=gw1.port)
        # No wait: a failed start awaits its own clean-up (the upstream task is done) before it
        # raises.
        leftovers = [t for t in asyncio.all_tasks() if t.get_name() == "tickgate-upstream-itick"]
        assert len(leftovers) == 1  # only gw1's
    finally:
        await gw1.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tickgate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


async def test_cli_serve_embedded_default_and_sigterm() -> None:
    port = free_port()
    proc = run_cli("serve", "--port", str(port), "--log-level", "warning")
    try:
        assert proc.stdout is not None
        line = ""
        while "serving on" not in line:  # after the warning that auth is off
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), STARTUP)
            assert line, "the gateway exited"
        assert f"tickgate serving on ws://127.0.0.1:{port}/" in line
        async with connect(f"ws://127.0.0.1:{port}/", close_timeout=1, ping_interval=None) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["type"] == "welcome"
            await ws.send(json.dumps({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]}))
            assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["type"] == "success"
            assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["type"] == "stock_quote"
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        assert await asyncio.wait_for(asyncio.to_thread(proc.wait), TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def output_of(proc: subprocess.Popen[str]) -> str:
    """What a CLI process printed, once it has exited. (Bounded here, not by a timeout inside
    ``communicate``: for one, subprocess polls with short sleeps, which a faked clock breaks.)"""
    try:
        out, _ = await asyncio.wait_for(asyncio.to_thread(proc.communicate), STARTUP)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out


async def test_cli_env_config_and_unknown_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("colour = 'blue'\n")
    proc = run_cli("serve", "--config", str(bad))
    out = await output_of(proc)
    assert proc.returncode == 2
    assert "unknown key 'colour'" in out

    proc = run_cli("serve", env={"TICKGATE_PORT": "not-a-port"})
    out = await output_of(proc)
    assert proc.returncode == 2 and "TICKGATE_PORT" in out


def test_cli_bad_log_level_is_a_config_error() -> None:
    # No timeout here (the test's own bounds it): subprocess polls with short sleeps for one,
    # which a faked clock breaks.
    r = subprocess.run(
        [sys.executable, "-m", "tickgate", "serve", "--log-level", "verbose"],
        capture_output=True,
        text=True,
        env={**os.environ},
    )
    assert r.returncode == 2
    assert "log_level must be one of" in r.stderr


async def test_cli_simulate_serves_the_itick_protocol() -> None:
    port = free_port()
    proc = run_cli("simulate", "--port", str(port), "--rate", "20", "--log-level", "warning")
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), STARTUP)
        assert f"127.0.0.1:{port}" in line
        url = f"ws://127.0.0.1:{port}/stock"
        async with connect(
            url, additional_headers={"token": "any"}, close_timeout=1, ping_interval=None
        ) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["msg"] == "Connected Successfully"
            assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["resAc"] == "auth"
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(asyncio.to_thread(proc.wait), TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
