"""Sessions in a node of workers without Redis: the ingest holds them, so a client resumes on
any worker, also after its own worker died; and what a session records for itself (the last
seq handed out per channel) carries a client that sends no ``last_seq``."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import defaultdict
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from gatewaykit import FAST_UPSTREAM, TOKEN, Client, start_gateway, start_simulator, wait_for_seqs, wait_until
from test_node import per_worker, wait_metrics
from test_sessions import CHANNELS, drop, record, resume, stream_more, stream_until, streaming, subscribed
from tickgate.config import GatewayConfig
from tickgate.node.supervisor import Node
from tickgate.sessions.node import SessionHost
from tickgate.sessions.record import SessionRecord
from tickgate.simulate import ItickSimulator


@pytest.fixture
async def sim() -> Any:
    s = await start_simulator(rate=20.0)
    yield s
    await s.stop()


def node_config(sim: ItickSimulator) -> GatewayConfig:
    return GatewayConfig(
        port=0, upstream_url=sim.url, upstream_token=TOKEN, node_view_interval=0.2, **FAST_UPSTREAM
    )


def assert_contiguous(seen: dict[str, list[int]]) -> None:
    for ch, seqs in seen.items():
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{ch}: a gap or duplicate in {seqs}"


async def test_without_redis_a_node_resumes_clients_on_any_worker_without_a_gap(sim: ItickSimulator) -> None:
    async with Node(node_config(sim), 3) as node:
        keeper = await subscribed(node)  # type: ignore[arg-type]  # keeps the channels streaming
        clients = [await subscribed(node) for _ in range(9)]  # type: ignore[arg-type]
        seen = [defaultdict(list) for _ in clients]
        await asyncio.gather(*(streaming(c, s) for c, s in zip(clients, seen, strict=True)))
        await wait_metrics(node.url, lambda m: m.get("tickgate_connections") == 10, "10 connections")
        await asyncio.gather(*(drop(c) for c in clients))
        # The edges notice (best effort: the node's view may lag a worker's, and a resume
        # takes over a connection its edge still holds just the same) ...
        await wait_metrics(node.url, lambda m: m.get("tickgate_connections") == 1, "the drops noticed")
        # ... and updates go on meanwhile: the keeper gets some newer than any client saw.
        ahead = {ch: max(s[ch][-1] for s in seen) for ch in CHANNELS}
        await stream_until(
            keeper,
            defaultdict(list),
            lambda k: all(k.get(ch) and k[ch][-1] > ahead[ch] for ch in CHANNELS),
            "updates after the drops",
        )
        back = [await resume(node, c, s) for c, s in zip(clients, seen, strict=True)]  # type: ignore[arg-type]
        for (fresh, reply), s in zip(back, seen, strict=True):
            assert reply["recovered"] is True and reply["replayed"] > 0, reply
            await stream_more(fresh, s)
            assert_contiguous(s)
        # Resumed sessions are connected clients' again: none is left detached (the ingest's
        # figure is relayed, so it may trail the edges' resume counts by a view interval).
        m = await wait_metrics(
            node.url,
            lambda m: (
                m.get("tickgate_resumes_recovered_total") == 9 and m.get("tickgate_sessions_detached") == 0
            ),
            "9 resumes and no session left detached",
        )
        assert m["tickgate_redis_up"] == -1
        await asyncio.gather(keeper.close(), *(f.close() for f, _ in back))


async def test_without_redis_resuming_closes_the_old_connection_on_its_worker_and_keeps_the_newer_state(
    sim: ItickSimulator,
) -> None:
    async with Node(node_config(sim), 3) as node:
        keeper = await subscribed(node)  # type: ignore[arg-type]  # keeps the channels streamed
        for i in range(3):  # the new connection lands on the old one's worker or another
            old = await subscribed(node)  # type: ignore[arg-type]
            seen: dict[str, list[int]] = defaultdict(list)
            await streaming(old, seen)
            fresh, reply = await resume(node, old, seen)  # type: ignore[arg-type]
            assert reply["recovered"] is True, reply
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await old.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
            # The session is the new connection's now: what it changes is what comes back, not
            # what the old connection held as it was closed.
            assert (await fresh.request({"action": "unsubscribe", "symbols": ["700$HK"], "types": ["tick"]}))[
                "type"
            ] == "success"
            # The old connection's worker let it go (its later view reports say so, and come
            # to the ingest after anything it wrote of the session): a stale write would be in.
            await wait_metrics(
                node.url, lambda m: m.get("tickgate_connections") == 2, "the old connection gone"
            )
            await drop(fresh)
            # Its edge noticed: the ingest holds the session as the new connection left it (one
            # more detached session than the earlier rounds' closed ones).
            await wait_metrics(
                node.url,
                lambda m, kept=i + 1: m.get("tickgate_sessions_detached") == kept,
                "the dropped session kept",
            )
            again, reply = await resume(node, fresh, seen, session=reply["session"])  # type: ignore[arg-type]
            assert reply["recovered"] is True, reply
            query = await again.request({"action": "query_subscribe"})
            assert "700$HK:tick" not in query["channels"] and "700$HK:quote" in query["channels"]
            await again.close()
        await keeper.close()


async def test_clients_of_a_killed_worker_resume_on_the_others_without_a_gap(sim: ItickSimulator) -> None:
    async with Node(node_config(sim), 3) as node:
        keeper = await subscribed(node)  # type: ignore[arg-type]
        clients = [await subscribed(node) for _ in range(9)]  # type: ignore[arg-type]
        seen = {id(c): defaultdict(list) for c in clients}
        await asyncio.gather(*(streaming(c, seen[id(c)]) for c in clients))
        m = await wait_metrics(node.url, lambda m: m.get("tickgate_connections") == 10, "connections")
        victim = max(per_worker(m).items(), key=lambda kv: kv[1])[0]
        pid = node.pids()[victim]
        os.kill(pid, signal.SIGKILL)
        # Dead (its sockets closed by the kernel), not merely signalled; the supervisor may
        # have started its successor already.
        await wait_until(lambda: node.pids().get(victim) != pid, what="the killed worker gone")

        async def cut_off(c: Client) -> bool:
            """Whether ``c`` was the victim's: a live worker answers a ping, while the dead
            one's connection ends instead (what it had received by then is kept)."""
            try:
                await c.send({"action": "ping"})
                while (m := await c.recv()).get("type") != "pong":
                    record(seen[id(c)], [m])
            except ConnectionClosed:
                return True
            return False

        gone = await asyncio.gather(*(cut_off(c) for c in clients))
        lost = [c for c, cut in zip(clients, gone, strict=True) if cut]
        assert lost, "the killed worker held some of the clients"
        back = [await resume(node, c, seen[id(c)]) for c in lost]  # type: ignore[arg-type]
        for (fresh, reply), c in zip(back, lost, strict=True):
            # The ingest kept their sessions when their worker's link dropped.
            assert reply["recovered"] is True, reply
            await stream_more(fresh, seen[id(c)])
            assert_contiguous(seen[id(c)])
        await asyncio.gather(keeper.close(), *(f.close() for f, _ in back), *(c.close() for c in clients))


async def test_a_resume_without_last_seq_carries_on_from_what_the_session_recorded(
    sim: ItickSimulator,
) -> None:
    gw = await start_gateway(sim)
    try:
        keeper = await subscribed(gw)
        # No flow control on the client: with frames queued past its max_queue it would stop
        # reading, miss the server's close frame and cut the connection after close_timeout,
        # losing what was still on its way.
        c = await subscribed(gw, max_queue=None)
        seen: dict[str, list[int]] = defaultdict(list)
        await streaming(c, seen)
        # A clean close: everything handed out reaches the client (read here to the close
        # frame, also what was still on its way), so the server's record is exact.
        record(seen, await c.close_and_drain())
        await wait_until(lambda: gw.hub.stats()["sessions_detached"] == 1, what="the session kept")
        await wait_for_seqs(gw, sorted(CHANNELS), more=2)  # updates go on meanwhile
        fresh = await Client.connect(gw)
        await fresh.send({"action": "resume", "session": c.welcome["session"]})
        while True:
            m = await fresh.recv()
            if m.get("action") == "resume":
                break
            assert not m.get("snapshot"), "replayed, not snapshots"
            record(seen, [m])
        assert m["recovered"] is True and m["replayed"] > 0, m
        await stream_more(fresh, seen)
        assert_contiguous(seen)
        await asyncio.gather(keeper.close(), fresh.close())
    finally:
        await gw.stop()


# -- the ingest's side, unit by unit ---------------------------------------------------------


def _record(*channels: str) -> SessionRecord:
    return SessionRecord(list(channels), "immediate", 0, "e", connected_ms=1, seen_ms=2)


def test_a_claim_hands_the_session_to_the_claiming_edge_and_stale_words_are_ignored() -> None:
    host = SessionHost(ttl_s=60, max_detached=10)
    host.save("A", "s1", _record("X:quote"), live=True)
    claimed = host.claim("B", "s1")
    assert claimed is not None and claimed.channels == ["X:quote"]
    # A had sent its client's state before it heard: it must not bring the old state back.
    host.save("A", "s1", _record("X:quote", "Y:quote"), live=False)
    host.save("A", "s1", None, live=True)
    assert len(host.detached) == 0 and host.figures()["sessions_live"] == 1
    host.save("B", "s1", _record("Z:quote"), live=False)
    again = host.claim("C", "s1")
    assert again is not None and again.channels == ["Z:quote"]
    assert host.claim("C", "nobody") is None
    assert host.figures()["sessions_live"] == 1  # an unknown claim leaves nothing behind


def test_an_edge_lost_leaves_its_clients_sessions_for_the_ttl() -> None:
    host = SessionHost(ttl_s=60, max_detached=10)
    host.save("A", "s1", _record("X:quote"), live=True)
    host.save("A", "s2", _record("Y:quote"), live=True)
    host.save("B", "s3", _record("Z:quote"), live=True)
    host.save("A", "s2", None, live=True)  # its client unsubscribed from everything
    host.edge_lost("A")
    assert host.figures() == {"sessions_live": 1, "sessions_detached": 1, "sessions_expired": 0}
    kept = host.claim("B", "s1")
    assert kept is not None and kept.channels == ["X:quote"] and kept.seen_ms > 2
    assert host.claim("B", "s2") is None


def test_detached_sessions_are_bounded() -> None:
    host = SessionHost(ttl_s=60, max_detached=3)
    for i in range(10):
        host.save("A", f"s{i}", _record("X:quote"), live=False)
    assert host.figures()["sessions_detached"] == 3
    assert host.claim("A", "s0") is None and host.claim("A", "s9") is not None


async def test_node_metrics_count_the_ingests_sessions(sim: ItickSimulator) -> None:
    async with Node(node_config(sim), 2) as node:
        c = await subscribed(node)  # type: ignore[arg-type]
        await c.push()  # subscribed once the ingest's history answered (snapshots, then data)
        await c.close()
        m = await wait_metrics(
            node.url, lambda m: m.get("tickgate_sessions_detached") == 1, "a detached session"
        )
        assert m["tickgate_redis_up"] == -1


async def test_sessions_survive_an_ingest_restart_without_redis(sim: ItickSimulator) -> None:
    """The ingest holds the node's sessions; a new one learns the connected clients' sessions
    from the edges as they re-join, so a client resuming afterwards gets its subscriptions back
    (not recovered: the new ingest numbers afresh)."""
    async with Node(node_config(sim), 2) as node:
        c = await subscribed(node)  # type: ignore[arg-type]
        # What the resume below is about: a client holding the first ingest's epoch. (Every
        # welcome names it, says the protocol; an edge that has not joined the ingest yet
        # sends "", and a resume with no epoch is then read against the new one's.)
        assert c.welcome["epoch"], "welcomed without an epoch, by an edge not joined to the ingest yet"
        await c.push()
        os.kill(node.pids()["ingest"], signal.SIGKILL)
        status = await c.reply()
        assert status["state"] == "stale" and status["reason"] == "ingest_down"
        status = await c.reply(timeout=30)
        assert status["state"] == "ok"
        await drop(c)
        # Its edge noticed: the new ingest holds the session as detached.
        await wait_metrics(
            node.url, lambda m: m.get("tickgate_sessions_detached") == 1, "the dropped session kept"
        )
        fresh, reply = await resume(node, c, defaultdict(list))  # type: ignore[arg-type]
        assert reply["recovered"] is False and reply["reason"] == "epoch_changed", reply
        query = await fresh.request({"action": "query_subscribe"})
        assert len(query["channels"]) == 6
        await fresh.close()


async def test_a_claim_answered_after_it_gave_up_goes_back_to_the_ingest(monkeypatch: Any) -> None:
    import tickgate.sessions.node as node_sessions
    from tickgate.sessions.node import NodeSessions
    from tickgate.sessions.store import SessionStoreUnavailable

    monkeypatch.setattr(node_sessions, "CLAIM_TIMEOUT_S", 0.05)
    saved: list[tuple[str, SessionRecord | None, bool]] = []

    class SlowLink:
        def save_session(self, session: str, record: SessionRecord | None, live: bool) -> None:
            saved.append((session, record, live))

        def claim_session(self, session: str, done: Any) -> bool:
            asyncio.get_running_loop().call_later(0.2, done, _record("X:quote"), True)
            return True

    store = NodeSessions(SlowLink(), ttl_s=60)
    with pytest.raises(SessionStoreUnavailable):
        await store.claim("s1")
    await wait_until(lambda: saved, what="the late answer handed back")
    assert saved == [("s1", _record("X:quote"), False)]  # kept for the TTL, at the ingest


async def test_a_claim_answered_in_the_turn_it_gives_up_keeps_the_record(monkeypatch: Any) -> None:
    """After a stall, the claim's timeout and the ingest's later answer are both due in one loop
    turn: the timeout runs first, the answer right after it, before the claim has given up. The
    answer is there, so the record is used, not dropped between the two (the ingest handed it
    to this edge and keeps no other copy)."""
    import time

    import tickgate.sessions.node as node_sessions
    from tickgate.sessions.node import NodeSessions

    monkeypatch.setattr(node_sessions, "CLAIM_TIMEOUT_S", 0.05)
    saved: list[tuple[str, SessionRecord | None, bool]] = []

    class SlowLink:
        def save_session(self, session: str, record: SessionRecord | None, live: bool) -> None:
            saved.append((session, record, live))

        def claim_session(self, session: str, done: Any) -> bool:
            asyncio.get_running_loop().call_later(0.2, done, _record("X:quote"), True)
            return True

    def stall() -> None:  # the loop busy past both timers (no sleep: a busy wait, as CPU work)
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            pass

    store = NodeSessions(SlowLink(), ttl_s=60)
    asyncio.get_running_loop().call_soon(stall)
    assert await store.claim("s1") == _record("X:quote")
    assert saved == []  # nothing handed back: the claiming edge holds it
