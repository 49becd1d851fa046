"""The Alpaca-style protocol (a backup provider): its simulator checked with a real client and
the core's decoder, and the gateway fed by it, alone and as the backup of a failover."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect

from gatewaykit import Client, channel_of, start_gateway, start_simulator
from tickgate import FeedProcessor
from tickgate.simulate.alpaca_server import AlpacaConfig, AlpacaSimulator

CREDS = frozenset({("key", "secret")})


@pytest.fixture
async def sim() -> Any:
    s = AlpacaSimulator(AlpacaConfig(rate=20.0, credentials=CREDS, bar_interval=0.2, max_symbols=3))
    await s.start()
    yield s
    await s.stop()


async def recv_all(ws: Any, seconds: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            out.extend(json.loads(await asyncio.wait_for(ws.recv(), left)))
        except TimeoutError:
            break
    return out


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
        messages = await recv_all(ws, 0.6)
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
        seen = {channel_of(await c.push(lambda m: "snapshot" not in m)) for _ in range(6)}
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
        while not ((m := await c.recv(timeout=10)).get("type") == "status" and m["state"] == "ok"):
            pass  # what the primary sent before it went, then stale, failing_over, refreshes
        assert gw.upstream.active is gw.upstream.backup  # type: ignore[union-attr]
        assert m["channels"] == ["AAPL$US:depth", "AAPL$US:tick"]
        got = {channel_of(await c.push(lambda m: "snapshot" not in m)) for _ in range(8)}
        assert got == {"AAPL$US:tick", "AAPL$US:depth"}
        assert gw.health()["stale"]["channels"] == 1  # the quote channel: failing_over
        await c.close()
    finally:
        await gw.stop()
        await primary.stop()
