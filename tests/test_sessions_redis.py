"""Sessions in Redis: a client resumes its subscriptions after the gateway restarted, and a
Redis that goes away and comes back never stops live data nor loses sessions. Each test runs
its own `redis-server` on a free loopback port (the machine's Redis is left alone)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from gatewaykit import Client, channel_of, start_gateway, start_simulator
from test_sessions import drop, record, resume, subscribed
from tickgate.sessions.redis import KEY_PREFIX
from tickgate.sessions.store import SessionStoreUnavailable

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


class RedisServer:
    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def session_keys(self) -> list[bytes]:
        return redis.Redis(port=self.port).keys(KEY_PREFIX + "*")


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def sim() -> Any:
    s = await start_simulator(rate=20.0)
    yield s
    await s.stop()


async def test_subscriptions_come_back_after_a_restart(sim: Any, redis_server: RedisServer) -> None:
    first = await start_gateway(sim, redis_url=redis_server.url)
    try:
        c = await subscribed(first)
        seen: dict[str, list[int]] = defaultdict(list)
        record(seen, await c.collect(0.3))
    finally:
        await first.stop()  # clients closed with 1001; their sessions are written out
    assert redis_server.session_keys(), "no session written to Redis at shutdown"
    second = await start_gateway(sim, redis_url=redis_server.url)
    try:
        fresh, reply = await resume(second, c, seen)
        # A new process numbers afresh: nothing to replay against, said plainly...
        assert reply["recovered"] is False and reply["reason"] == "epoch_changed", reply
        assert reply["epoch"] == second.processor.epoch != c.welcome["epoch"]
        # ...but the subscriptions are back, each with a snapshot, then live data.
        query = await fresh.request({"action": "query_subscribe"})
        assert sorted(query["channels"]) == sorted(seen)
        pushes = [m for m in await fresh.collect(0.5) if m.get("type") == "stock_quote"]
        assert {channel_of(m) for m in pushes} == set(seen)
        # Taken from Redis (GETDEL), then written again by the connection that holds it now.
        key = (KEY_PREFIX + c.welcome["session"]).encode()
        deadline = time.monotonic() + 5
        while key not in redis_server.session_keys():
            assert time.monotonic() < deadline, "the resumed session was not written back"
            await asyncio.sleep(0.05)
        await fresh.close()
    finally:
        await second.stop()


async def test_redis_going_away_stops_no_data_and_loses_no_session(
    sim: Any, redis_server: RedisServer
) -> None:
    gw = await start_gateway(sim, redis_url=redis_server.url)
    try:
        keeper = await subscribed(gw)
        c = await subscribed(gw)
        await asyncio.sleep(0.3)
        redis_server.stop()
        # Live data keeps flowing while Redis is down.
        before = len([m for m in await keeper.collect(0.5) if m.get("type") == "stock_quote"])
        assert before > 0
        seen: dict[str, list[int]] = defaultdict(list)
        record(seen, await c.collect(0.2))
        await drop(c)  # its session can only be kept in memory for now
        with contextlib.suppress(AssertionError):
            for _ in range(50):
                if not gw.hub.sessions.up:  # type: ignore[union-attr]
                    break
                await asyncio.sleep(0.05)
        assert gw.hub.sessions.up is False  # type: ignore[union-attr]
        assert gw.stats()["redis_up"] == 0
        health = gw.health()
        assert health["status"] == "ok"  # data flows: Redis down only shows under sessions
        assert health["sessions"] == {"store": "redis", "detached": 1, "redis": "down"}
        redis_server.start()  # back, empty: the queued session is written again
        deadline = time.monotonic() + 10
        while not redis_server.session_keys():
            assert time.monotonic() < deadline, "the session was not written when Redis came back"
            await asyncio.sleep(0.1)
        assert gw.hub.sessions.up is True  # type: ignore[union-attr]
        assert gw.health()["sessions"]["redis"] == "up"
        # And the client resumes without a gap (from this process's memory).
        fresh, reply = await resume(gw, c, seen)
        assert reply["recovered"] is True and reply["replayed"] > 0, reply
        record(seen, await fresh.collect(0.3))
        for ch, seqs in seen.items():
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{ch}: {seqs}"
        await asyncio.gather(keeper.close(), fresh.close())
    finally:
        await gw.stop()


async def test_a_gateway_killed_without_a_goodbye_leaves_its_clients_sessions(
    sim: Any, redis_server: RedisServer
) -> None:
    import os
    import signal
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickgate", "serve", "--port", str(port), "--redis-url", redis_server.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TICKGATE_UPSTREAM_URL": sim.url, "TICKGATE_UPSTREAM_TOKEN": "test-token"},
    )
    try:
        assert proc.stdout is not None
        await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)

        class At:
            url = f"ws://127.0.0.1:{port}/"

        c = await Client.connect(At)  # type: ignore[arg-type]
        assert (await c.request({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]}))[
            "type"
        ] == "success"
        deadline = time.monotonic() + 5
        while not redis_server.session_keys():  # written while connected, behind the data path
            assert time.monotonic() < deadline, "a connected client's session never reached Redis"
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # no shutdown, no detach
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    gw = await start_gateway(sim, redis_url=redis_server.url)
    try:
        fresh = await Client.connect(gw)
        reply = await fresh.request(
            {"action": "resume", "session": c.welcome["session"], "epoch": c.welcome["epoch"], "last_seq": {}}
        )
        assert reply["recovered"] is False and reply["reason"] == "epoch_changed", reply
        query = await fresh.request({"action": "query_subscribe"})
        assert query["channels"] == ["AAPL$US:quote"]
        await fresh.close()
    finally:
        await gw.stop()


async def test_a_node_of_three_workers_resumes_clients_on_any_worker_without_a_gap(
    sim: Any, redis_server: RedisServer
) -> None:
    from gatewaykit import FAST_UPSTREAM
    from tickgate.config import GatewayConfig
    from tickgate.node.supervisor import Node

    config = GatewayConfig(
        port=0,
        upstream_url=sim.url,
        upstream_token="test-token",
        redis_url=redis_server.url,
        node_view_interval=0.2,
        **FAST_UPSTREAM,
    )
    async with Node(config, 3) as node:
        keeper = await subscribed(node)  # type: ignore[arg-type]  # keeps the channels streaming
        clients = [await subscribed(node) for _ in range(9)]  # type: ignore[arg-type]
        seen = [defaultdict(list) for _ in clients]
        for c, s in zip(clients, seen, strict=True):
            record(s, await c.collect(0.3))
        await asyncio.gather(*(drop(c) for c in clients))
        # Back at once: an edge may not have written a session to Redis yet when another edge
        # claims it (it writes it then, and the claim asks again).
        back = [await resume(node, c, s) for c, s in zip(clients, seen, strict=True)]  # type: ignore[arg-type]
        for (fresh, reply), s in zip(back, seen, strict=True):
            assert reply["recovered"] is True and reply["replayed"] > 0, reply
            record(s, await fresh.collect(0.5))
            for ch, seqs in s.items():
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), (
                    f"{ch}: a gap or duplicate in {seqs}"
                )
        await asyncio.gather(keeper.close(), *(f.close() for f, _ in back))


async def test_in_a_node_resuming_closes_the_old_connection_on_whichever_worker_it_is(
    sim: Any, redis_server: RedisServer
) -> None:
    from websockets.exceptions import ConnectionClosed

    from gatewaykit import FAST_UPSTREAM
    from tickgate.config import GatewayConfig
    from tickgate.node.supervisor import Node

    config = GatewayConfig(
        port=0, upstream_url=sim.url, upstream_token="test-token", redis_url=redis_server.url, **FAST_UPSTREAM
    )
    async with Node(config, 3) as node:
        keeper = await subscribed(node)  # type: ignore[arg-type]  # keeps the channels streamed
        for _ in range(3):  # the new connection lands on the old one's worker or another: both close it
            old = await subscribed(node)  # type: ignore[arg-type]
            seen: dict[str, list[int]] = defaultdict(list)
            record(seen, await old.collect(0.3))
            await asyncio.sleep(0.3)  # its session is in Redis (written while connected)
            fresh, reply = await resume(node, old, seen)  # type: ignore[arg-type]
            assert reply["recovered"] is True, reply
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await old.recv(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
            await fresh.push()
            await fresh.close()
        await keeper.close()


async def test_a_storm_of_claims_shares_a_few_redis_connections_and_loses_no_session(
    redis_server: RedisServer,
) -> None:
    """Every client of a dead worker resumes at once elsewhere: their claims go to Redis
    together (one pipeline per round trip), not one connection each, and all are found."""
    from tickgate.sessions.memory import MemorySessions
    from tickgate.sessions.record import SessionRecord
    from tickgate.sessions.redis import RedisSessions

    writer = RedisSessions(redis_server.url, MemorySessions(60, 10_000))
    writer.start()
    sessions = [f"{i:x}.storm" for i in range(1000)]
    for i, s in enumerate(sessions):
        writer.put(s, SessionRecord([f"S{i}$US:quote"], "immediate", 0, "e", connected_ms=1, seen_ms=2))
    await writer.stop()
    assert len(redis_server.session_keys()) == 1000

    claimer = RedisSessions(redis_server.url, MemorySessions(60, 10_000))
    claimer.start()
    try:
        records = await asyncio.gather(*(claimer.claim(s) for s in sessions), claimer.claim("nobody"))
        assert [r.channels for r in records[:-1] if r is not None] == [
            [f"S{i}$US:quote"] for i in range(1000)
        ]
        assert records[-1] is None
        clients = redis.Redis(port=redis_server.port).client_list()
        assert len(clients) <= 4, f"{len(clients)} connections to Redis for one store"
        assert redis_server.session_keys() == []  # each taken once
    finally:
        await claimer.stop()
    # Redis gone: a claim says so rather than pretending the session is unknown.
    redis_server.stop()
    down = RedisSessions(redis_server.url, MemorySessions(60, 10))
    down.start()
    try:
        with pytest.raises(SessionStoreUnavailable):
            await down.claim(sessions[0])
    finally:
        await down.stop()
