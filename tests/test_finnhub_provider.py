"""A Finnhub-style trades feed as the gateway's provider, against the real Finnhub-style
simulator: ticks flow with the same numbering and status behaviour as iTick; kinds it cannot
serve are refused plainly."""

from __future__ import annotations

import time
from typing import Any

from gatewaykit import FAST_DETECTION, TIMEOUT, Client, start_gateway, wait_until
from tickgate.simulate.finnhub_server import FinnhubConfig, FinnhubSimulator
from tickgate.upstream import UpstreamState


async def finnhub_gateway(**overrides: Any) -> tuple[Any, FinnhubSimulator]:
    sim = FinnhubSimulator(FinnhubConfig(rate=20.0, tokens=frozenset({"key"}), ping_interval=0.3))
    await sim.start()
    gw = await start_gateway(
        None, upstream_provider="finnhub", upstream_url=sim.url, upstream_token="key", **overrides
    )
    return gw, sim


async def test_ticks_flow_from_a_finnhub_style_provider() -> None:
    gw, sim = await finnhub_gateway()
    try:
        c = await Client.connect(gw)
        reply = await c.request({"action": "subscribe", "symbols": ["AAPL$US", "700$HK"], "types": ["tick"]})
        assert reply["type"] == "success"
        await wait_until(lambda: sim.subscriptions() == {"AAPL", "700.HK"}, what="subscribed upstream")

        # Ten pushes, both symbols among them (however long a loaded machine takes).
        def pushes_of(ms: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [m for m in ms if m.get("type") == "stock_quote"]

        got = await c.collect_until(
            lambda ms: len(pushes_of(ms)) >= 10 and len({p["data"]["symbol"] for p in pushes_of(ms)}) == 2,
            what="ten pushes of both symbols",
        )
        pushes = pushes_of(got)
        assert {p["data"]["symbol"] for p in pushes} == {"AAPL$US", "700$HK"}
        assert all(
            p["type"] == "stock_quote" and p["data"]["price"] > 0 for p in pushes if "price" in p["data"]
        )
        seqs: dict[str, list[int]] = {}
        for p in pushes:
            if "snapshot" not in p:
                seqs.setdefault(p["data"]["symbol"], []).append(p["data"]["seq"])
        assert all(s == list(range(s[0], s[0] + len(s))) for s in seqs.values())
        assert gw.upstream is not None and gw.upstream.status()["provider"] == "finnhub"
        # A kind it cannot serve: refused plainly, the ticks go on.
        await c.send({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]})
        deadline = time.monotonic() + TIMEOUT
        while True:
            m = await c.reply(timeout=max(0.1, deadline - time.monotonic()))
            if m.get("type") == "error":
                break
        assert m["code"] == "upstream_rejected" and m["channels"] == ["AAPL$US:quote"], m
        await c.push(lambda m: m["data"]["symbol"] == "AAPL$US")
        await c.close()
    finally:
        await gw.stop()
        await sim.stop()


async def test_a_frozen_finnhub_style_provider_is_found_and_recovered() -> None:
    gw, sim = await finnhub_gateway(**FAST_DETECTION)
    try:
        c = await Client.connect(gw)
        await c.request({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["tick"]})
        await c.push()
        sim.freeze()
        status = await c.reply()
        assert status["type"] == "status" and status["state"] == "stale", status
        sim.thaw()
        status = await c.reply()
        assert status["type"] == "status" and status["state"] == "ok", status
        await wait_until(
            lambda: gw.upstream is not None and gw.upstream.state is UpstreamState.READY, what="ready"
        )
        await c.push(lambda m: "snapshot" not in m)
        await c.close()
    finally:
        await gw.stop()
        await sim.stop()


async def test_the_embedded_default_can_be_the_finnhub_style_simulator() -> None:
    gw = await start_gateway(None, upstream_provider="finnhub", simulator_rate=20.0)
    try:
        c = await Client.connect(gw)
        await c.request({"action": "subscribe", "symbols": ["MSFT$US"], "types": ["tick"]})
        push = await c.push(lambda m: "snapshot" not in m)
        assert push["data"]["symbol"] == "MSFT$US"
        await c.close()
    finally:
        await gw.stop()


async def test_symbols_the_provider_spells_its_own_way_are_mapped_both_ways() -> None:
    gw, sim = await finnhub_gateway(upstream_symbols="700$HK=0700.HK")
    try:
        c = await Client.connect(gw)
        await c.request({"action": "subscribe", "symbols": ["700$HK"], "types": ["tick"]})
        await wait_until(lambda: sim.subscriptions() == {"0700.HK"}, what="subscribed in its spelling")
        push = await c.push(lambda m: "snapshot" not in m)
        assert push["data"]["symbol"] == "700$HK"
        await c.close()
    finally:
        await gw.stop()
        await sim.stop()
