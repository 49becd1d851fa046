"""The Finnhub-style simulator (a backup provider's protocol), checked with a real WebSocket
client and decoded by the core's own Finnhub decoder into the common model."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tickgate import FeedProcessor
from tickgate.simulate.finnhub_server import FinnhubConfig, FinnhubSimulator


@pytest.fixture
async def sim() -> Any:
    s = FinnhubSimulator(
        FinnhubConfig(rate=20.0, tokens=frozenset({"key"}), ping_interval=0.2, max_symbols=3)
    )
    await s.start()
    yield s
    await s.stop()


async def frames_for(ws: Any, seconds: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            out.append(json.loads(await asyncio.wait_for(ws.recv(), left)))
        except TimeoutError:
            break
    return out


async def test_trades_for_what_is_subscribed_decoded_by_the_core(sim: FinnhubSimulator) -> None:
    async with connect(sim.url + "?token=key") as ws:
        for symbol in ("AAPL", "700.HK"):
            await ws.send(json.dumps({"type": "subscribe", "symbol": symbol}))
        got = await frames_for(ws, 0.5)
        trades = [m for m in got if m["type"] == "trade"]
        assert trades and {t["s"] for m in trades for t in m["data"]} == {"AAPL", "700.HK"}
        core = FeedProcessor("itick")
        updates = [u for m in trades for u in core.ingest(json.dumps(m), provider="finnhub")[0]]
        by_channel: dict[str, list[int]] = {}
        for u in updates:
            assert u.provider == "finnhub" and u.kind == "tick" and u.to_dict()["price"] > 0
            by_channel.setdefault(u.channel, []).append(u.seq)
        assert set(by_channel) == {"AAPL$US:tick", "700$HK:tick"}
        assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in by_channel.values())
        # Unsubscribed: its trades stop; the other's go on.
        await ws.send(json.dumps({"type": "unsubscribe", "symbol": "AAPL"}))
        await asyncio.sleep(0.1)
        later = await frames_for(ws, 0.3)
        assert {t["s"] for m in later if m["type"] == "trade" for t in m["data"]} == {"700.HK"}


async def test_tokens_limits_errors_and_heartbeats(sim: FinnhubSimulator) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(sim.url + "?token=wrong"):
            pass
    assert refused.value.response.status_code == 401
    async with connect(sim.url + "?token=key") as ws:
        assert [m["type"] for m in await frames_for(ws, 0.5)][:1] == ["ping"]  # idle: heartbeats
        await ws.send("{nope")
        assert (await frames_for(ws, 0.1))[0] == {"type": "error", "msg": "Invalid message"}
        for symbol in ("A", "B", "C", "D"):
            await ws.send(json.dumps({"type": "subscribe", "symbol": symbol}))
        errors = [m for m in await frames_for(ws, 0.2) if m["type"] == "error"]
        assert errors == [{"type": "error", "msg": "Subscribing to too many symbols"}]
        assert sim.subscriptions() == {"A", "B", "C"}
        sim.freeze()
        await frames_for(ws, 0.2)  # what was already on its way
        assert await frames_for(ws, 0.4) == []  # frozen: nothing at all
        sim.thaw()
        assert any(m["type"] == "trade" for m in await frames_for(ws, 0.3))
