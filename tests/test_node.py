"""A node of worker processes (`tickgate serve --workers N`), started for real: one ingest
process, edge processes sharing the port with SO_REUSEPORT, the real simulator upstream and
real WebSocket clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from gatewaykit import FAST_UPSTREAM, TIMEOUT, TOKEN, Client, http_get, start_simulator, wait_until
from tickgate.config import GatewayConfig
from tickgate.node.supervisor import STOP_GRACE_S, Node
from tickgate.simulate import ItickSimulator

CLIENTS = 12
SUBSCRIBE = {"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]}
#: Worker processes start in about a second each on a loaded 2-core runner.
START_S = 30.0


@pytest.fixture
async def sim() -> AsyncIterator[ItickSimulator]:
    s = await start_simulator()
    yield s
    await s.stop()


@contextlib.asynccontextmanager
async def running_node(sim: ItickSimulator, workers: int = 3) -> AsyncIterator[Node]:
    config = GatewayConfig(
        port=0, upstream_url=sim.url, upstream_token=TOKEN, node_view_interval=0.2, **FAST_UPSTREAM
    )
    node = Node(config, workers)
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


async def metrics(url: str) -> dict[str, float]:
    base = url.replace("ws://", "http://").rstrip("/")
    text = (await asyncio.to_thread(http_get, base + "/metrics"))[2].decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(tickgate_\S+) (\S+)$", text, re.MULTILINE)}


async def wait_metrics(url: str, check: Any, what: str, timeout: float = TIMEOUT) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        m = await metrics(url)
        if check(m):
            return m
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {m}")
        await asyncio.sleep(0.1)


async def wait_health(url: str, check: Any, what: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    base = url.replace("ws://", "http://").rstrip("/")
    deadline = time.monotonic() + timeout
    while True:
        health = json.loads((await asyncio.to_thread(http_get, base + "/healthz"))[2])
        if check(health):
            return health
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {health}")
        await asyncio.sleep(0.1)


def per_worker(m: dict[str, float], name: str = "connections") -> dict[str, float]:
    prefix = f'tickgate_worker_{name}{{worker="'
    return {k[len(prefix) : -2]: v for k, v in m.items() if k.startswith(prefix)}


async def subscribed_clients(node: Node, count: int = CLIENTS) -> list[Client]:
    clients = [await Client.connect(node) for _ in range(count)]  # type: ignore[arg-type]
    for c in clients:
        assert (await c.request(SUBSCRIBE))["type"] == "success"
    return clients


async def test_workers_share_one_port_and_one_upstream_and_deliver_the_same_seqs(sim: ItickSimulator) -> None:
    async with running_node(sim) as node:
        clients = await subscribed_clients(node)
        try:
            # /metrics on any worker counts the whole node, with per-worker figures.
            m = await wait_metrics(
                node.url, lambda m: m.get("tickgate_connections") == CLIENTS, "node-wide connections"
            )
            spread = per_worker(m)
            assert set(spread) == {"edge-1", "edge-2", "edge-3"}
            assert sum(spread.values()) == CLIENTS
            # SO_REUSEPORT spreads by address hash: all 12 on one worker has odds of 1 in 177,147.
            assert sum(1 for v in spread.values() if v) >= 2, spread
            assert sim.connection_count == 1
            # /healthz on any worker: its view of the others is relayed (at most node_view_interval
            # old), so it is waited for like the metrics above.
            await wait_health(
                node.url,
                lambda h: h["status"] == "ok" and set(h.get("workers", ())) == set(spread),
                f"/healthz ok, workers {sorted(spread)}",
            )
            # Every client, whatever its worker, gets the same update under the same seq: each
            # reads until it has a push at least 5 past the latest any client started from.
            first = [await c.push() for c in clients]
            target = max(m["data"]["seq"] for m in first) + 5
            seen = await asyncio.gather(
                *(
                    c.collect_until(
                        lambda msgs: any(
                            m.get("type") == "stock_quote" and m["data"]["seq"] >= target for m in msgs
                        ),
                        what=f"seq {target}",
                    )
                    for c in clients
                )
            )
            by_client = [
                {m["data"]["seq"]: m["data"] for m in [f, *msgs] if m.get("type") == "stock_quote"}
                for f, msgs in zip(first, seen, strict=True)
            ]
            common = set.intersection(*(set(d) for d in by_client))
            assert len(common) >= 5, [sorted(d) for d in by_client]
            for seq in common:
                assert len({json.dumps(d[seq], sort_keys=True) for d in by_client}) == 1
        finally:
            await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def _still_open(clients: list[Client], lost: int) -> list[Client]:
    """Clients that still get data after ``lost`` of them lost their connection: every client is
    read (what was already buffered first) until ``lost`` connections have ended, then until
    each other one has a push numbered past the last any ended one got, so sent after their
    edge died. Conditions, not a time: a stalled machine only makes this slower."""
    newest = {id(c): 0 for c in clients}
    ended: list[Client] = []

    async def read(c: Client) -> None:
        try:
            while True:
                m = await c.recv()
                if m.get("type") == "stock_quote":
                    newest[id(c)] = max(newest[id(c)], m["data"]["seq"])
        except ConnectionClosed:
            ended.append(c)

    readers = [asyncio.create_task(read(c)) for c in clients]
    try:
        await wait_until(lambda: len(ended) >= lost, what=f"{lost} connections ending")
        bar = max(newest[id(c)] for c in ended)
        await wait_until(
            lambda: all(c in ended or newest[id(c)] > bar for c in clients),
            what=f"a push past seq {bar} on every other connection",
        )
    finally:
        for r in readers:
            r.cancel()  # safe: websockets' recv loses nothing when cancelled
        await asyncio.gather(*readers, return_exceptions=True)
    return [c for c in clients if c not in ended]


async def test_a_killed_edge_costs_only_its_clients_and_is_replaced(sim: ItickSimulator) -> None:
    async with running_node(sim) as node:
        clients = await subscribed_clients(node)
        try:
            m = await wait_metrics(
                node.url, lambda m: m.get("tickgate_connections") == CLIENTS, "connections"
            )
            victim = max(per_worker(m).items(), key=lambda kv: kv[1])[0]
            old_pid = node.pids()[victim]
            os.kill(old_pid, signal.SIGKILL)
            lost = int(per_worker(m)[victim])
            alive = await _still_open(clients, lost)
            # The victim's clients lost their socket; every other client kept its data.
            assert len(alive) == CLIENTS - lost
            await wait_until(
                lambda: node.pids().get(victim, old_pid) != old_pid, timeout=START_S, what="a new edge"
            )
            await wait_metrics(
                node.url, lambda m: len(per_worker(m)) == 3, "the new edge in the node view", timeout=START_S
            )
            assert sim.connection_count == 1
            newcomer = await Client.connect(node)  # type: ignore[arg-type]
            assert (await newcomer.request(SUBSCRIBE))["type"] == "success"
            await newcomer.push()
            await newcomer.close()
        finally:
            await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def test_a_killed_ingest_keeps_clients_connected_tells_them_and_data_resumes(
    sim: ItickSimulator,
) -> None:
    async with running_node(sim, workers=2) as node:
        clients = await subscribed_clients(node, 6)
        try:
            first = [await c.push() for c in clients]
            old_epoch = first[0]["data"].get("epoch")
            os.kill(node.pids()["ingest"], signal.SIGKILL)
            for c in clients:
                status = await c.reply()
                assert status == {
                    "type": "status",
                    "state": "stale",
                    "reason": "ingest_down",
                    "channels": ["AAPL$US:quote"],
                }
            for c in clients:  # the supervisor starts a new ingest; the edges re-join it
                status = await c.reply(timeout=START_S)
                assert status["type"] == "status" and status["state"] == "ok"
                push = await c.push()
                assert push["data"]["seq"] >= 1
                if old_epoch is not None:
                    assert push["data"]["epoch"] != old_epoch
            await wait_until(lambda: sim.connection_count == 1, what="one upstream connection")
        finally:
            await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def test_sigterm_closes_every_client_with_1001_and_exits_0(sim: ItickSimulator) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickgate", "serve", "--workers", "2", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TICKGATE_UPSTREAM_URL": sim.url, "TICKGATE_UPSTREAM_TOKEN": TOKEN},
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), START_S)
        url = line.decode().split()[-1]

        class At:
            pass

        at = At()
        at.url = url  # type: ignore[attr-defined]
        clients = [await Client.connect(at) for _ in range(6)]  # type: ignore[arg-type]
        for c in clients:
            assert (await c.request(SUBSCRIBE))["type"] == "success"
        proc.send_signal(signal.SIGTERM)
        for c in clients:
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await c.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        # The supervisor gives each role STOP_GRACE_S to drain before it kills it: a generous
        # bound on a hung stop, not a measure of speed.
        assert await asyncio.wait_for(asyncio.to_thread(proc.wait), 3 * STOP_GRACE_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
