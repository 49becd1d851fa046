"""The Alpaca-style protocol (a backup provider): its simulator checked with a real client and
the core's decoder, and the gateway fed by it, alone and as the backup of a failover."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect

from gatewaykit import TIMEOUT, Client, channel_of, start_gateway, start_simulator
from tickgate import FeedProcessor
from tickgate.simulate.alpaca_server import AlpacaConfig, AlpacaSimulator

CREDS = frozenset({("key", "secret")})


@pytest.fixture
async def sim() -> Any:
    s = AlpacaSimulator(AlpacaConfig(rate=20.0, credentials=CREDS, bar_interval=0.2, max_symbols=3))
    await s.start()
    yield s
    await s.stop()


async def recv_until(
    ws: Any, done: Callable[[list[dict[str, Any]]], object], what: str
) -> list[dict[str, Any]]:
    """Every message (of every frame's array) until ``done(messages so far)`` holds."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + TIMEOUT
    while not done(out):
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            out.extend(json.loads(await asyncio.wait_for(ws.recv(), left)))
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}; got {out[-5:]}") from None
    return out


def decoded_channels(messages: list[dict[str, Any]]) -> set[str]:
    if not messages:
        return set()
    return {u.channel for u in FeedProcessor("itick").ingest(json.dumps(messages), provider="alpaca")[0]}


async def live_channels(c: Client, want: set[str], at_least: int) -> set[str]:
    """The channels of live pushes (not snapshots), read until all of ``want`` and ``at_least``
    pushes in all have come: any other channel would show among them."""

    def live(ms: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [m for m in ms if m.get("type") == "stock_quote" and "snapshot" not in m]

    got = await c.collect_until(
        lambda ms: len(live(ms)) >= at_least and {channel_of(m) for m in live(ms)} >= want,
        what=f"pushes of {sorted(want)}",
    )
    return {channel_of(m) for m in live(got)}


async def test_the_simulator_speaks_the_protocol_and_the_core_decodes_it(sim: AlpacaSimulator) -> None:
    async with connect(sim.url) as ws:
        assert json.loads(await ws.recv()) == [{"T": "success", "msg": "connected"}]
        await ws.send(json.dumps({"action": "subscribe", "trades": ["AAPL"]}))
        assert json.loads(await ws.recv())[0]["code"] == 401  # not authenticated yet
        await ws.send(json.dumps({"action": "auth", "key": "key", "secret": "secret"}))
        assert json.loads(await ws.recv()) == [{"T": "success", "msg": "authenticated"}]
        await ws.send(
            json.dumps({"action": "subscribe", "trades": ["AAPL"], "quotes": ["AMD"], "bars": ["SPY"]})
        )
        reply = json.loads(await ws.recv())
        assert reply == [{"T": "subscription", "trades": ["AAPL"], "quotes": ["AMD"], "bars": ["SPY"]}]
        want = {"AAPL$US:tick", "AMD$US:depth", "SPY$US:kline@1"}
        messages = await recv_until(ws, lambda ms: decoded_channels(ms) >= want, "trades, quotes and bars")
        core = FeedProcessor("itick")
        updates = core.ingest(json.dumps(messages), provider="alpaca")[0]
        assert {u.channel for u in updates} == {"AAPL$US:tick", "AMD$US:depth", "SPY$US:kline@1"}
        assert all(u.provider == "alpaca" for u in updates)
        await ws.send(json.dumps({"action": "subscribe", "trades": ["X1", "X2"]}))
        assert json.loads(await ws.recv())[0] == {"T": "error", "code": 405, "msg": "symbol limit exceeded"}
    async with connect(sim.url) as ws:
        await ws.recv()
        await ws.send(json.dumps({"action": "auth", "key": "key", "secret": "wrong"}))
        assert json.loads(await ws.recv())[0]["code"] == 402


async def test_a_gateway_fed_by_an_alpaca_style_provider(sim: AlpacaSimulator) -> None:
    gw = await start_gateway(
        None, upstream_provider="alpaca", upstream_url=sim.url, upstream_token="key:secret"
    )
    try:
        c = await Client.connect(gw)
        reply = await c.request({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["tick", "depth"]})
        assert reply["type"] == "success"
        seen = await live_channels(c, {"AAPL$US:tick", "AAPL$US:depth"}, 6)
        assert seen == {"AAPL$US:tick", "AAPL$US:depth"}
        # No last-price quote in this protocol: refused plainly.
        await c.send({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]})
        while (m := await c.reply())["type"] != "error":
            pass
        assert m["code"] == "upstream_rejected" and m["channels"] == ["AAPL$US:quote"]
        await c.close()
    finally:
        await gw.stop()


async def test_an_alpaca_style_backup_serves_ticks_and_depth_while_the_primary_is_down(
    sim: AlpacaSimulator,
) -> None:
    primary = await start_simulator(rate=20.0)
    gw = await start_gateway(
        primary,
        backup_provider="alpaca",
        backup_url=sim.url,
        backup_token="key:secret",
        failover_after=0.3,
        failback_after=60.0,
    )
    try:
        c = await Client.connect(gw)
        await c.request({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["tick", "depth", "quote"]})
        await c.push()
        await primary.stop()
        while not ((m := await c.recv()).get("type") == "status" and m["state"] == "ok"):
            pass  # what the primary sent before it went, then stale, failing_over, refreshes
        assert gw.upstream.active is gw.upstream.backup  # type: ignore[union-attr]
        assert m["channels"] == ["AAPL$US:depth", "AAPL$US:tick"]
        got = await live_channels(c, {"AAPL$US:tick", "AAPL$US:depth"}, 8)
        assert got == {"AAPL$US:tick", "AAPL$US:depth"}
        assert gw.health()["stale"]["channels"] == 1  # the quote channel: failing_over
        await c.close()
    finally:
        await gw.stop()
        await primary.stop()
