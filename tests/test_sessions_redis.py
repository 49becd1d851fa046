"""Sessions in Redis: a client resumes its subscriptions after the gateway restarted, and a
Redis that goes away and comes back never stops live data nor loses sessions. Each test runs
its own `redis-server` on a free loopback port (the machine's Redis is left alone)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from gatewaykit import TIMEOUT, Client, channel_of, start_gateway, start_simulator, wait_for_seqs, wait_until
from test_sessions import SYMBOLS, TYPES, drop, record, resume, subscribed
from tickgate.sessions.redis import KEY_PREFIX
from tickgate.sessions.store import SessionStoreUnavailable

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")

#: What ``subscribed`` subscribes to.
CHANNELS = {f"{symbol}:{kind}" for symbol in SYMBOLS for kind in TYPES}


def channels_in(messages: list[dict[str, Any]]) -> set[str]:
    """The channels ``messages`` carry pushes for."""
    return {channel_of(m) for m in messages if m.get("type") == "stock_quote"}


def newer_on_every_channel(messages: list[dict[str, Any]], marks: dict[str, int]) -> bool:
    """Whether ``messages`` hold, on every channel of ``marks``, a push numbered past its mark."""
    newest: dict[str, int] = {}
    for m in messages:
        if m.get("type") == "stock_quote":
            ch = channel_of(m)
            newest[ch] = max(newest.get(ch, 0), m["data"]["seq"])
    return all(newest.get(ch, 0) > seq for ch, seq in marks.items())


def session_key(c: Client) -> bytes:
    return (KEY_PREFIX + c.welcome["session"]).encode()


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
            # redis-server is not under test: it keeps the real clock when the tests run under a
            # moved one (with libfaketime preloaded it exits at once).
            env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD" and not k.startswith("FAKETIME")},
        )
        # Each ping tried once: redis-py's retries back off with time.sleep, which fails with
        # EINVAL under a moved clock (libfaketime); this loop waits instead.
        client = redis.Redis(port=self.port, retry=Retry(NoBackoff(), 0))
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                assert self.proc.poll() is None, "redis-server exited"
                assert time.monotonic() < deadline, "redis-server did not start"
                # Not time.sleep either (EINVAL under libfaketime).
                threading.Event().wait(0.05)

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
        record(seen, await c.collect_until(lambda ms: channels_in(ms) >= CHANNELS, what="every channel"))
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
        back = await fresh.collect_until(
            lambda ms: channels_in(ms) >= set(seen), what="data on every channel"
        )
        assert channels_in(back) == set(seen)
        # Taken from Redis (GETDEL), then written again by the connection that holds it now.
        await wait_until(
            lambda: session_key(c) in redis_server.session_keys(), what="the resumed session written back"
        )
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
        # Both sessions reach Redis while it is there (written while connected).
        await wait_until(
            lambda: {session_key(keeper), session_key(c)} <= set(redis_server.session_keys()),
            what="both connected sessions in Redis",
        )
        redis_server.stop()
        # Live data keeps flowing while Redis is down: updates numbered after it went away arrive.
        marks = {ch: gw.processor.last_seq(ch) for ch in CHANNELS}
        await keeper.collect_until(
            lambda ms: newer_on_every_channel(ms, marks), what="updates on every channel with Redis down"
        )
        seen: dict[str, list[int]] = defaultdict(list)
        record(seen, await c.collect_until(lambda ms: channels_in(ms) >= CHANNELS, what="every channel"))
        await drop(c)  # its session can only be kept in memory for now
        await wait_until(
            lambda: not gw.hub.sessions.up and gw.health()["sessions"]["detached"] == 1,  # type: ignore[union-attr]
            what="the dropped client's session detached and its write failing",
        )
        assert gw.hub.sessions.up is False  # type: ignore[union-attr]
        assert gw.stats()["redis_up"] == 0
        health = gw.health()
        assert health["status"] == "ok"  # data flows: Redis down only shows under sessions
        assert health["sessions"] == {"store": "redis", "detached": 1, "redis": "down"}
        # Updates go on while the client is away: its resume has something to replay.
        await wait_for_seqs(gw, sorted(seen), more=1)
        redis_server.start()  # back, empty: the queued session is written again
        await wait_until(
            lambda: session_key(c) in redis_server.session_keys(),
            what="the queued session written when Redis came back",
        )
        # The keys can be in Redis a moment before the writer has read Redis's answer.
        await wait_until(lambda: gw.hub.sessions.up is True, what="Redis seen up again")  # type: ignore[union-attr]
        assert gw.stats()["redis_up"] == 1
        assert gw.health()["sessions"]["redis"] == "up"
        # And the client resumes without a gap (from this process's memory).
        fresh, reply = await resume(gw, c, seen)
        assert reply["recovered"] is True and reply["replayed"] > 0, reply
        # Live data after the replay, on every channel, carries on from it.
        record(seen, await fresh.collect_until(lambda ms: channels_in(ms) >= CHANNELS, what="live data"))
        for ch, seqs in seen.items():
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{ch}: {seqs}"
        await asyncio.gather(keeper.close(), fresh.close())
    finally:
        await gw.stop()


async def test_a_gateway_killed_without_a_goodbye_leaves_its_clients_sessions(
    sim: Any, redis_server: RedisServer
) -> None:
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
        # "tickgate serving on ...": a process starts in seconds, even on a loaded machine.
        await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)

        class At:
            url = f"ws://127.0.0.1:{port}/"

        c = await Client.connect(At)  # type: ignore[arg-type]
        assert (await c.request({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]}))[
            "type"
        ] == "success"
        await wait_until(  # written while connected, behind the data path
            lambda: session_key(c) in redis_server.session_keys(),
            what="a connected client's session in Redis",
        )
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
            record(s, await c.collect_until(lambda ms: channels_in(ms) >= CHANNELS, what="every channel"))
        await asyncio.gather(*(drop(c) for c in clients))
        # Updates go on meanwhile (the keeper sees every channel move past what any client saw),
        # so each resume has something to replay.
        tops = {ch: max(s[ch][-1] for s in seen) for ch in CHANNELS}
        await keeper.collect_until(
            lambda ms: newer_on_every_channel(ms, tops), what="updates after the drops"
        )
        # Back at once: an edge may not have written a session to Redis yet when another edge
        # claims it (it writes it then, and the claim asks again).
        back = [await resume(node, c, s) for c, s in zip(clients, seen, strict=True)]  # type: ignore[arg-type]
        for (fresh, reply), s in zip(back, seen, strict=True):
            assert reply["recovered"] is True and reply["replayed"] > 0, reply
            # Live data after the replay, on every channel, carries on from it.
            record(s, await fresh.collect_until(lambda ms: channels_in(ms) >= CHANNELS, what="live data"))
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
            record(
                seen, await old.collect_until(lambda ms: channels_in(ms) >= CHANNELS, what="every channel")
            )
            key = session_key(old)
            await wait_until(  # its session is in Redis (written while connected)
                lambda key=key: key in redis_server.session_keys(),
                what="the connected session in Redis",
            )
            fresh, reply = await resume(node, old, seen)  # type: ignore[arg-type]
            assert reply["recovered"] is True, reply
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await old.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
            await fresh.push()
            await fresh.close()
        await keeper.close()


async def test_a_storm_of_claims_shares_a_few_redis_connections_and_loses_no_session(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every client of a dead worker resumes at once elsewhere: their claims go to Redis
    together (one pipeline per round trip), not one connection each, and all are found."""
    from tickgate.sessions import redis as redis_sessions
    from tickgate.sessions.memory import MemorySessions
    from tickgate.sessions.record import SessionRecord
    from tickgate.sessions.redis import RedisSessions

    # A thousand writes must be out before stop gives up on them (2 s), and a thousand claims
    # answered before a lookup gives up (1 s): about a quarter of a second each here, so a
    # stalled machine could pass those timers. They are not under test: made generous.
    monkeypatch.setattr(redis_sessions, "STOP_FLUSH_S", TIMEOUT)
    monkeypatch.setattr(redis_sessions, "LOOKUP_TIMEOUT_S", TIMEOUT)
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
