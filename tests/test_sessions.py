"""Sessions, snapshots and resume on a real gateway with the real simulator and real clients:
a client that drops abruptly and comes back gets every update it missed, in order, once, or is
told plainly that it could not."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from gatewaykit import Client, channel_of, start_gateway, start_simulator, wait_for_seqs, wait_until
from tickgate.gateway import Gateway
from tickgate.simulate import ItickSimulator

SYMBOLS = ["AAPL$US", "MSFT$US", "700$HK"]
TYPES = ["quote", "tick"]
CHANNELS = {f"{sym}:{t}" for sym in SYMBOLS for t in TYPES}


@pytest.fixture
async def sim() -> Any:
    s = await start_simulator(rate=20.0)
    yield s
    await s.stop()


async def subscribed(gw: Gateway, path: str = "/", **options: Any) -> Client:
    """A client subscribed to ``CHANNELS``; ``options`` go to the WebSocket client."""
    c = await Client.connect(gw, path, **options)
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


async def stream_until(
    c: Client, seen: dict[str, list[int]], done: Callable[[dict[str, list[int]]], bool], what: str
) -> None:
    """Records what ``c`` receives into ``seen`` until ``done(seen)`` holds (fails after
    gatewaykit's TIMEOUT): the stream read for what the test needs, not for a fixed time."""
    read = 0

    def check(messages: list[dict[str, Any]]) -> bool:
        nonlocal read
        record(seen, messages[read:])
        read = len(messages)
        return done(seen)

    await c.collect_until(check, what=what)


async def streaming(c: Client, seen: dict[str, list[int]]) -> None:
    """Records ``c``'s stream until it has had an update on every one of ``CHANNELS``."""
    await stream_until(c, seen, lambda s: {ch for ch, seqs in s.items() if seqs} >= CHANNELS, "every channel")


async def stream_more(c: Client, seen: dict[str, list[int]], more: int = 2) -> None:
    """Records ``c``'s stream until every channel has ``more`` updates beyond what ``seen``
    holds now: the live stream carries on after what was replayed."""
    had = {ch: len(seen.get(ch, ())) for ch in CHANNELS}
    await stream_until(
        c,
        seen,
        lambda s: all(len(s.get(ch, ())) >= had[ch] + more for ch in CHANNELS),
        f"{more} more updates on every channel",
    )


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
        await asyncio.gather(*(streaming(c, s) for c, s in zip(clients, seen, strict=True)))
        # Everyone drops at once, mid-stream, and stays away while updates keep coming (a few
        # more numbered on every channel than any client saw).
        await asyncio.gather(*(drop(c) for c in clients))
        await wait_for_seqs(gw, sorted(CHANNELS), more=3)
        back = await asyncio.gather(*(resume(gw, c, s, path) for c, s in zip(clients, seen, strict=True)))
        for _, reply in back:
            assert reply["recovered"] is True, reply
            assert reply["replayed"] > 0, reply  # updates did come while it was away
            assert reply["session"] and reply["epoch"] == gw.processor.epoch
        # Live updates follow the replay on every channel, with no gap and no repeat.
        await asyncio.gather(*(stream_more(fresh, s) for (fresh, _), s in zip(back, seen, strict=True)))
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
    # The session TTL is the default (minutes): each resume here must come before it passes.
    gw = await start_gateway(sim, replay_window=0.3)
    try:
        keeper = await subscribed(gw)
        c = await subscribed(gw)
        seen: dict[str, list[int]] = defaultdict(list)
        await streaming(c, seen)
        await drop(c)
        saw = last_seqs(seen)
        history = gw.ingest.history
        await wait_until(
            lambda: any(history.since(ch, seq) is None for ch, seq in saw.items()),
            what="the ring (0.3 s) to move past what the client saw",
        )
        fresh, reply = await resume(gw, c, seen)
        assert reply["recovered"] is False and reply["reason"] == "history_gone", (
            reply,
            dict(seen),
            gw.ingest.history.ring.stats(),
        )
        # Subscriptions are back anyway, with a snapshot of each channel first.
        messages = await fresh.collect_until(
            lambda ms: {channel_of(m) for m in ms if m.get("snapshot")} >= set(seen),
            what="a snapshot of every channel",
        )
        snaps = [m for m in messages if m.get("snapshot")]
        assert {channel_of(m) for m in snaps} == set(seen)
        query = await fresh.request({"action": "query_subscribe"})
        assert sorted(query["channels"]) == sorted(seen)

        # A client holding an epoch from before a restart: nothing to replay against.
        other = await subscribed(gw)
        await other.push()
        await drop(other)
        await wait_until(lambda: gw.hub.stats()["sessions_detached"] == 1, what="the dropped session kept")
        again = await Client.connect(gw)
        await again.send(
            {"action": "resume", "session": other.welcome["session"], "epoch": "gone", "last_seq": {}}
        )
        reply = await again.reply()
        assert reply["recovered"] is False and reply["reason"] == "epoch_changed"
        await asyncio.gather(fresh.close(), again.close(), keeper.close())
    finally:
        await gw.stop()

    # Past session_ttl the session itself is gone: on a gateway that keeps sessions briefly
    # (nothing has to happen before this TTL passes; the test waits until it has).
    short = await start_gateway(sim, session_ttl=0.3)
    try:
        gone = await subscribed(short)
        await gone.push()
        await gone.close()

        def expired() -> bool:
            figures = short.hub.stats()
            return figures["sessions_expired"] == 1 and figures["sessions_detached"] == 0

        await wait_until(expired, what="the session kept, then expired")
        late = await Client.connect(short)
        reply = await late.request(
            {
                "action": "resume",
                "session": gone.welcome["session"],
                "epoch": gone.welcome["epoch"],
                "last_seq": {},
            }
        )
        assert reply["recovered"] is False and reply["reason"] == "unknown_session"
        # Well formed, never issued here.
        bogus = await late.request({"action": "resume", "session": "1." + "0" * 24, "last_seq": {}})
        assert bogus["reason"] == "unknown_session"
        await late.close()
    finally:
        await short.stop()


async def test_resuming_on_a_second_connection_closes_the_first(sim: ItickSimulator) -> None:
    gw = await start_gateway(sim)
    try:
        keeper = await subscribed(gw)  # keeps the channels streamed while the client is away
        first = await subscribed(gw)
        seen: dict[str, list[int]] = defaultdict(list)
        await streaming(first, seen)
        second, reply = await resume(gw, first, seen)  # the first is still connected
        assert reply["recovered"] is True
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await first.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
        await stream_more(second, seen)  # the live stream goes to the second connection
        # The session moved with the client: it can be resumed again from the second connection.
        await drop(second)
        session = first.welcome["session"]
        await wait_until(lambda: gw.hub.live_connection(session) is None, what="the second connection gone")
        third, reply = await resume(gw, second, seen, session=session)
        assert reply["recovered"] is True and reply["session"] == session, reply.get("reason")
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
                await old.recv()
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
        await streaming(c, seen)
        await drop(c)
        # Nothing else to wait for: the hole is marked as the channels drop upstream (the
        # ingest's pool.on_dropped -> processor.mark_gap), whatever the provider sends meanwhile.
        await wait_until(lambda: not gw.pool.channels(), what="the channels dropped upstream")
        fresh, reply = await resume(gw, c, seen)
        assert reply["recovered"] is False and reply["reason"] == "history_gone", reply

        def live_on(messages: list[dict[str, Any]]) -> set[str]:
            return {channel_of(m) for m in messages if m.get("type") == "stock_quote" and "snapshot" not in m}

        messages = await fresh.collect_until(
            lambda ms: live_on(ms) >= CHANNELS, what="a live update on every channel"
        )
        snapshots = [m for m in messages if m.get("type") == "stock_quote"]
        assert snapshots and snapshots[0]["snapshot"] is True
        live = [m for m in snapshots if "snapshot" not in m]
        first = {channel_of(m): m["data"]["seq"] for m in reversed(live)}
        assert set(first) == CHANNELS
        for ch, seq in first.items():
            # At least one skipped (updates already on the way as it was dropped come after it).
            assert seq >= last_seqs(seen)[ch] + 2, f"{ch}: no skip after the hole ({seq})"
        await fresh.close()
    finally:
        await gw.stop()


async def test_a_resume_with_bad_fields_is_refused_and_leaves_the_session_intact(sim: ItickSimulator) -> None:
    """Every field of a resume is checked before anything is taken: a bad one answers
    ``invalid_message`` naming it, and the owner's correct resume right after still recovers."""
    gw = await start_gateway(sim)
    try:
        keeper = await subscribed(gw)  # the channels stay streamed while the client is away
        c = await subscribed(gw)
        seen: dict[str, list[int]] = defaultdict(list)
        await streaming(c, seen)
        await drop(c)
        await wait_until(lambda: gw.hub.stats()["sessions_detached"] == 1, what="the session detached")
        session, epoch = c.welcome["session"], c.welcome["epoch"]
        conn_id, _, tag = session.partition(".")
        some = next(iter(last_seqs(seen)))
        bad = [
            ({"last_seq": {some: -1}}, "last_seq"),
            ({"last_seq": {some: 2**64 + 1}}, "last_seq"),
            ({"last_seq": {some: 1e30}}, "last_seq"),
            ({"last_seq": {some: True}}, "last_seq"),
            ({"last_seq": {some: "7"}}, "last_seq"),
            ({"last_seq": [1, 2]}, "last_seq"),
            ({"session": f"-{conn_id}.{tag}"}, "session"),
            ({"session": f"{'f' * 17}.{tag}"}, "session"),
            ({"session": "x" * 64}, "session"),
            ({"session": "1.00"}, "session"),
            ({"session": session + "\n"}, "session"),
            ({"session": 5}, "session"),
            ({"epoch": 5}, "epoch"),
        ]
        probe = await Client.connect(gw)
        for fields, name in bad:
            request = {"action": "resume", "session": session, "epoch": epoch, **fields}
            reply = await probe.request(request)
            assert reply["type"] == "error" and reply["code"] == "invalid_message", (fields, reply)
            assert name in reply["msg"], (fields, reply)
        assert gw.hub.stats()["sessions_detached"] == 1  # nothing was taken
        await wait_for_seqs(gw, sorted(CHANNELS), more=1)
        fresh, reply = await resume(gw, c, seen)
        assert reply["recovered"] is True and reply["replayed"] > 0, reply
        await asyncio.gather(probe.close(), fresh.close(), keeper.close())
    finally:
        await gw.stop()
