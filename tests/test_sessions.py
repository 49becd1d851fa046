"""Sessions, snapshots and resume on a real gateway with the real simulator and real clients:
a client that drops abruptly and comes back gets every update it missed, in order, once, or is
told plainly that it could not."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from gatewaykit import Client, channel_of, start_gateway, start_simulator, wait_until
from tickgate.gateway import Gateway
from tickgate.simulate import ItickSimulator

SYMBOLS = ["AAPL$US", "MSFT$US", "700$HK"]
TYPES = ["quote", "tick"]


@pytest.fixture
async def sim() -> Any:
    s = await start_simulator(rate=20.0)
    yield s
    await s.stop()


async def subscribed(gw: Gateway, path: str = "/") -> Client:
    c = await Client.connect(gw, path)
    reply = await c.request({"action": "subscribe", "symbols": SYMBOLS, "types": TYPES})
    assert reply["type"] == "success"
    return c


def record(seen: dict[str, list[int]], messages: list[dict[str, Any]]) -> None:
    for m in messages:
        if m.get("type") == "stock_quote":
            seen[channel_of(m)].append(m["data"]["seq"])
        elif m.get("type") == "batch":
            for u in m["updates"]:
                kind = u["klineCycle"] if u["type"] == "kline" else u["type"]
                seen[f"{u['symbol']}:{kind}"].append(u["seq"])


def last_seqs(seen: dict[str, list[int]]) -> dict[str, int]:
    return {ch: seqs[-1] for ch, seqs in seen.items() if seqs}


async def drop(c: Client) -> None:
    """The client vanishes mid-stream: its socket is reset, no close handshake."""
    c.ws.transport.abort()
    await asyncio.sleep(0)


async def resume(
    gw: Gateway, c: Client, seen: dict[str, list[int]], path: str = "/", session: str | None = None
) -> tuple[Client, dict[str, Any]]:
    """Resumes ``c``'s session (or ``session``: the one a client took over earlier)."""
    fresh = await Client.connect(gw, path)
    await fresh.send(
        {
            "action": "resume",
            "session": session or c.welcome["session"],
            "epoch": c.welcome["epoch"],
            "last_seq": last_seqs(seen),
        }
    )
    while True:  # the replay comes first, then the reply
        m = await fresh.recv()
        if m.get("type") == "success" and m.get("action") == "resume":
            return fresh, m
        record(seen, [m])


async def test_welcome_and_snapshot_on_subscribe(sim: ItickSimulator) -> None:
    gw = await start_gateway(sim)
    try:
        first = await subscribed(gw)
        assert first.welcome["epoch"] == gw.processor.epoch and first.welcome["session"]
        await first.push(lambda m: m["data"]["symbol"] == "AAPL$US" and m["data"]["type"] == "quote")
        later = await Client.connect(gw)
        assert later.welcome["session"] != first.welcome["session"]
        reply = await later.request({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]})
        assert reply["type"] == "success"
        snap = await later.recv()  # right after the reply, before any live update
        assert snap["type"] == "stock_quote" and snap.get("snapshot") is True, snap
        assert snap["data"]["symbol"] == "AAPL$US"
        assert snap["data"]["seq"] == gw.processor.last_seq("AAPL$US:quote") or snap["data"]["seq"] >= 1
        live = await later.push()
        assert "snapshot" not in live and live["data"]["seq"] == snap["data"]["seq"] + 1
        await first.close()
        await later.close()
    finally:
        await gw.stop()


@pytest.mark.parametrize("path", ["/", "/?mode=batch&interval_ms=100"])
async def test_many_clients_dropped_mid_stream_resume_without_gap_or_duplicate(
    sim: ItickSimulator, path: str
) -> None:
    gw = await start_gateway(sim)
    # One client stays: the channels keep streaming upstream while the others are away.
    keeper = await subscribed(gw)
    clients = [await subscribed(gw, path) for _ in range(12)]
    seen = [defaultdict(list) for _ in clients]
    try:
        for c, s in zip(clients, seen, strict=True):
            record(s, await c.collect(0.3))
        # Everyone drops at once, mid-stream, and stays away while updates keep coming.
        await asyncio.gather(*(drop(c) for c in clients))
        await asyncio.sleep(0.5)
        back = await asyncio.gather(*(resume(gw, c, s, path) for c, s in zip(clients, seen, strict=True)))
        for (fresh, reply), s in zip(back, seen, strict=True):
            assert reply["recovered"] is True, reply
            assert reply["replayed"] > 0, reply  # updates did come while it was away
            assert reply["session"] and reply["epoch"] == gw.processor.epoch
            record(s, await fresh.collect(0.6))
        batch = "batch" in path
        for s in seen:
            for ch, seqs in s.items():
                assert len(seqs) == len(set(seqs)), f"{ch}: a duplicate in {seqs}"
                if ch.endswith(":tick") or not batch:
                    # Every update, in order (batch mode conflates quotes: in order, no repeat).
                    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{ch}: a gap in {seqs}"
                else:
                    assert seqs == sorted(seqs), f"{ch}: out of order {seqs}"
            assert set(s) == {f"{sym}:{t}" for sym in SYMBOLS for t in TYPES}
        assert gw.hub.counters.resumes_recovered == len(clients)
        await asyncio.gather(keeper.close(), *(f.close() for f, _ in back))
    finally:
        await gw.stop()


async def test_history_gone_epoch_changed_and_expired_sessions_are_said_plainly(sim: ItickSimulator) -> None:
    gw = await start_gateway(sim, replay_window=0.3, session_ttl=1.5)
    try:
        keeper = await subscribed(gw)
        c = await subscribed(gw)
        seen: dict[str, list[int]] = defaultdict(list)
        record(seen, await c.collect(0.3))
        await drop(c)
        await asyncio.sleep(0.8)  # the ring (0.3 s) has moved past what the client saw
        fresh, reply = await resume(gw, c, seen)
        assert reply["recovered"] is False and reply["reason"] == "history_gone", (
            reply,
            dict(seen),
            gw.ingest.history.ring.stats(),
        )
        # Subscriptions are back anyway, with a snapshot of each channel first.
        snaps = [m for m in await fresh.collect(0.3) if m.get("snapshot")]
        assert {channel_of(m) for m in snaps} == set(seen)
        query = await fresh.request({"action": "query_subscribe"})
        assert sorted(query["channels"]) == sorted(seen)

        # A client holding an epoch from before a restart: nothing to replay against.
        other = await subscribed(gw)
        await other.collect(0.2)
        await drop(other)
        await asyncio.sleep(0.1)
        again = await Client.connect(gw)
        await again.send(
            {"action": "resume", "session": other.welcome["session"], "epoch": "gone", "last_seq": {}}
        )
        reply = await again.reply()
        assert reply["recovered"] is False and reply["reason"] == "epoch_changed"

        # Past session_ttl the session itself is gone.
        await fresh.close()
        await asyncio.sleep(1.7)
        late = await Client.connect(gw)
        reply = await late.request(
            {"action": "resume", "session": c.welcome["session"], "epoch": c.welcome["epoch"], "last_seq": {}}
        )
        assert reply["recovered"] is False and reply["reason"] == "unknown_session"
        bogus = await late.request({"action": "resume", "session": "1.00", "last_seq": {}})
        assert bogus["reason"] == "unknown_session"
        await asyncio.gather(again.close(), late.close(), keeper.close())
    finally:
        await gw.stop()


async def test_resuming_on_a_second_connection_closes_the_first(sim: ItickSimulator) -> None:
    gw = await start_gateway(sim)
    try:
        keeper = await subscribed(gw)  # keeps the channels streamed while the client is away
        first = await subscribed(gw)
        seen: dict[str, list[int]] = defaultdict(list)
        record(seen, await first.collect(0.3))
        second, reply = await resume(gw, first, seen)  # the first is still connected
        assert reply["recovered"] is True
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await first.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
        await second.push()
        # The session moved with the client: it can be resumed again from the second connection.
        record(seen, await second.collect(0.2))
        await drop(second)
        await asyncio.sleep(0.2)
        third, reply = await resume(gw, second, seen, session=first.welcome["session"])
        assert reply["recovered"] is True and reply["session"] == first.welcome["session"], reply.get(
            "reason"
        )
        await asyncio.gather(third.close(), keeper.close())
    finally:
        await gw.stop()


async def test_a_session_resumed_on_another_worker_is_not_kept_by_its_old_one(sim: ItickSimulator) -> None:
    """What an edge does when the bus says another edge's client took a session over: the old
    connection goes (4000) and leaves nothing behind, so it can never overwrite, or be resumed
    instead of, the session as the new connection holds it."""
    gw = await start_gateway(sim)
    try:
        old = await subscribed(gw)
        await old.push()
        gone = await subscribed(gw)
        await gone.push()
        await gone.close()
        await wait_until(lambda: len(gw.hub.connections) == 1, what="the second client detached")
        assert gw.hub.stats()["sessions_detached"] == 1
        gw.hub.on_taken_elsewhere(old.welcome["session"])
        gw.hub.on_taken_elsewhere(gone.welcome["session"])
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await old.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
        await wait_until(lambda: not gw.hub.connections, what="the old connection detached")
        assert gw.hub.stats()["sessions_detached"] == 0
        for client in (old, gone):
            fresh = await Client.connect(gw)
            reply = await fresh.request({"action": "resume", "session": client.welcome["session"]})
            assert reply["recovered"] is False and reply["reason"] == "unknown_session"
            await fresh.close()
    finally:
        await gw.stop()


async def test_a_resume_across_a_time_nobody_held_the_channel_is_not_recovered(sim: ItickSimulator) -> None:
    """Its only holder gone, a channel stops being streamed upstream: updates the provider sent
    meanwhile never reached the gateway. A resume across that hole must not say recovered, and
    the live stream shows it too (seq skips one)."""
    gw = await start_gateway(sim)
    try:
        c = await subscribed(gw)
        seen: dict[str, list[int]] = defaultdict(list)
        record(seen, await c.collect(0.3))
        await drop(c)
        await wait_until(lambda: not gw.pool.channels(), what="the channels dropped upstream")
        await asyncio.sleep(0.3)  # the provider's updates of these channels go nowhere now
        fresh, reply = await resume(gw, c, seen)
        assert reply["recovered"] is False and reply["reason"] == "history_gone", reply
        snapshots = [m for m in await fresh.collect(0.5) if m.get("type") == "stock_quote"]
        assert snapshots and snapshots[0]["snapshot"] is True
        live = [m for m in snapshots if "snapshot" not in m]
        first = {channel_of(m): m["data"]["seq"] for m in reversed(live)}
        for ch, seq in first.items():
            # At least one skipped (updates already on the way as it was dropped come after it).
            assert seq >= last_seqs(seen)[ch] + 2, f"{ch}: no skip after the hole ({seq})"
        await fresh.close()
    finally:
        await gw.stop()
