"""Item status: the state of a client's channels apart from its socket's. With the upstream
made to fail for real (simulator stopped, frozen, never answering the auth), every subscriber
is told ``stale`` with the reason at once, gets a ``refresh`` of each channel when data is back,
then ``ok``; a new subscriber to a stale channel is told right after its snapshot."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gatewaykit import FAST_DETECTION, TIMEOUT, Client, start_gateway, start_simulator, wait_until
from tickgate.upstream.base import UpstreamState

SUBSCRIBE = {"action": "subscribe", "symbols": ["AAPL$US", "MSFT$US"], "types": ["quote"]}
CHANNELS = ["AAPL$US:quote", "MSFT$US:quote"]


async def next_status(c: Client, timeout: float = TIMEOUT) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The next status message, and the pushes before it."""
    before: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        m = await c.recv(max(0.01, deadline - time.monotonic()))
        if m.get("type") == "status":
            return m, before
        before.append(m)


async def test_a_stopped_provider_is_stale_at_once_then_refresh_and_ok_when_it_is_back() -> None:
    sim = await start_simulator()
    port = sim.port
    gw = await start_gateway(sim)
    try:
        c = await Client.connect(gw)
        assert (await c.request(SUBSCRIBE))["type"] == "success"
        warm = await c.collect_until(  # both channels' updates (20/s each)
            lambda ms: {m["data"]["symbol"] for m in ms if "data" in m} == {"AAPL$US", "MSFT$US"},
            what="both channels' updates",
        )
        await sim.stop()
        status, before_stale = await next_status(c)
        last = {m["data"]["symbol"]: m["data"]["seq"] for m in [*warm, *before_stale] if "data" in m}
        assert set(last) == {"AAPL$US", "MSFT$US"}
        # "At once": told for the loss itself (upstream_down), not later by a liveness rule
        # finding the silence (that would be provider_silent). How fast is not a test's to time.
        assert status == {"type": "status", "state": "stale", "reason": "upstream_down", "channels": CHANNELS}
        assert gw.health()["status"] == "degraded"
        assert gw.health()["stale"] == {"channels": 2, "reason": "upstream_down"}
        # A new subscriber to a stale channel: the reply, its snapshot, then the status.
        late = await Client.connect(gw)
        await late.send({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]})
        reply = await late.recv()
        assert reply["type"] == "success"
        snapshot = await late.recv()
        assert snapshot["snapshot"] is True and snapshot["data"]["symbol"] == "AAPL$US"
        told = await late.recv()
        assert told == {
            "type": "status",
            "state": "stale",
            "reason": "upstream_down",
            "channels": ["AAPL$US:quote"],
        }
        sim = await start_simulator(port=port)
        status, before = await next_status(c)
        assert status == {"type": "status", "state": "ok", "reason": "", "channels": CHANNELS}
        refreshed = {m["data"]["symbol"] for m in before if m.get("refresh")}
        assert refreshed == {"AAPL$US", "MSFT$US"}, before
        assert all(m["snapshot"] is True for m in before if m.get("refresh"))
        live = await c.push(lambda m: "snapshot" not in m)
        # The hole shows in seq too: at least one skipped across the outage.
        assert live["data"]["seq"] >= last[live["data"]["symbol"]] + 2, (live, last)
        assert gw.health()["status"] == "ok"
        assert gw.health()["stale"] == {"channels": 0, "reason": ""}
        await asyncio.gather(c.close(), late.close())
    finally:
        await gw.stop()
        await sim.stop()


async def test_a_frozen_provider_is_found_and_its_channels_go_stale_then_come_back() -> None:
    sim = await start_simulator()
    gw = await start_gateway(sim, **FAST_DETECTION)
    try:
        c = await Client.connect(gw)
        await c.request(SUBSCRIBE)
        await c.push()
        sim.freeze()
        status, _ = await next_status(c)
        assert status["state"] == "stale" and status["reason"] == "provider_silent", status
        # Found by a liveness rule (the missed pong, or nothing received), not by the 300 s
        # data timeout; how fast is benches/upstream_faults.py's to measure, not a test's.
        assert (
            "pong" in gw.upstream.status()["last_error"] or "received" in gw.upstream.status()["last_error"]
        )
        sim.thaw()
        status, before = await next_status(c)
        assert status["state"] == "ok"
        assert {m["data"]["symbol"] for m in before if m.get("refresh")} == {"AAPL$US", "MSFT$US"}
        await c.push()
        await c.close()
    finally:
        await gw.stop()
        await sim.stop()


async def test_a_provider_that_never_answers_the_auth_is_retried_and_clients_are_told() -> None:
    sim = await start_simulator()
    sim.answer_auth = False
    gw = await start_gateway(sim, upstream_auth_timeout=0.5)
    try:
        c = await Client.connect(gw)
        await c.send(SUBSCRIBE)
        assert (await c.recv())["type"] == "success"
        told = await c.recv()  # no snapshot: nothing was ever received
        assert told == {"type": "status", "state": "stale", "reason": "upstream_down", "channels": CHANNELS}
        await wait_until(lambda: gw.upstream.reconnects >= 2, what="auth retried")
        assert "not authenticated within 0.5s" in gw.upstream.status()["last_error"]
        sim.answer_auth = True
        await wait_until(lambda: gw.upstream.state is UpstreamState.READY, what="ready")
        status, _ = await next_status(c)
        assert status == {"type": "status", "state": "ok", "reason": "", "channels": CHANNELS}
        await c.push()
        await c.close()
    finally:
        await gw.stop()
        await sim.stop()
