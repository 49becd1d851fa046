"""A fair share of the provider's symbol limit: a subscribe that needs symbols new to the
upstream connection past the provider's limit, or past the client's share of it, is refused at
once with ``capacity`` and nothing applied, never ``success`` then ``upstream_rejected``."""

from __future__ import annotations

import asyncio
from typing import Any

from gatewaykit import FAST_UPSTREAM, TOKEN, Client, start_gateway, start_simulator, wait_until
from tickgate.config import GatewayConfig
from tickgate.node.supervisor import Node

LIMITS = dict(upstream_max_symbols=10, upstream_symbols_per_connection=5, max_channels_per_connection=2000)


def junk(n: int, prefix: str = "J") -> list[str]:
    return [f"{prefix}{i}$US" for i in range(n)]


async def sub(c: Client, symbols: list[str]) -> dict[str, Any]:
    return await c.request({"action": "subscribe", "symbols": symbols, "types": ["quote"]})


async def check_fair_share(gw: Any, sim: Any) -> None:
    a, b, c = [await Client.connect(gw) for _ in range(3)]
    # One client asking for more new symbols than its share: refused whole, nothing applied.
    refused = await sub(a, junk(1000))
    assert refused["type"] == "error" and refused["code"] == "capacity", refused
    assert "at most 5" in refused["msg"] and len(refused["channels"]) == 1000
    assert (await a.request({"action": "query_subscribe"}))["channels"] == []
    # Within its share: fine. Another client fills the rest of the provider's limit.
    assert (await sub(a, junk(5, "A")))["type"] == "success"
    assert (await sub(b, junk(5, "B")))["type"] == "success"
    await wait_until(lambda: len(sim.subscriptions()) == 10, what="10 symbols upstream")
    # The provider connection is full: a new symbol is refused at once, whoever asks.
    full = await sub(c, ["MSFT$US"])
    assert full["type"] == "error" and full["code"] == "capacity" and "at its limit of 10" in full["msg"], (
        full
    )
    # A symbol already streamed costs the provider nothing: always admitted.
    assert (await sub(c, ["A0$US"]))["type"] == "success"
    await c.push(lambda m: m["data"]["symbol"] == "A0$US")
    # Room made: the new symbol fits now, and data comes (no upstream_rejected after).
    await a.request({"action": "unsubscribe", "symbols": ["A1$US"], "types": ["quote"]})
    await wait_until(lambda: "A1$US" not in sim.subscriptions(), what="A1 dropped upstream")
    assert (await sub(c, ["MSFT$US"]))["type"] == "success"
    await c.push(lambda m: m["data"]["symbol"] == "MSFT$US")
    await asyncio.gather(a.close(), b.close(), c.close())


async def test_one_process_refuses_past_the_share_and_the_provider_limit_at_once() -> None:
    sim = await start_simulator()
    gw = await start_gateway(sim, **LIMITS)
    try:
        await check_fair_share(gw, sim)
    finally:
        await gw.stop()
        await sim.stop()


async def test_a_node_of_workers_refuses_past_the_limit_across_workers() -> None:
    sim = await start_simulator()
    config = GatewayConfig(port=0, upstream_url=sim.url, upstream_token=TOKEN, **LIMITS, **FAST_UPSTREAM)
    try:
        async with Node(config, 2) as node:
            await check_fair_share(node, sim)
    finally:
        await sim.stop()


async def test_in_a_node_pipelined_requests_are_answered_in_order_and_share_is_kept() -> None:
    """Over the bus a subscribe is answered when the ingest has admitted it: requests sent
    meanwhile wait their turn, so a quick unsubscribe is never overtaken and pipelined
    subscribes cannot each spend the same share."""
    sim = await start_simulator()
    config = GatewayConfig(port=0, upstream_url=sim.url, upstream_token=TOKEN, **LIMITS, **FAST_UPSTREAM)
    try:
        async with Node(config, 2) as node:
            c = await Client.connect(node)  # type: ignore[arg-type]
            for msg in (
                {"action": "subscribe", "symbols": ["X$US"], "types": ["quote"], "id": 1},
                {"action": "unsubscribe", "symbols": ["X$US"], "types": ["quote"], "id": 2},
                {"action": "subscribe", "symbols": junk(5, "P"), "types": ["quote"], "id": 3},
                {"action": "subscribe", "symbols": junk(5, "Q"), "types": ["quote"], "id": 4},
                {"action": "query_subscribe", "id": 5},
            ):
                await c.send(msg)
            replies = [await c.reply() for _ in range(5)]
            assert [r.get("id") for r in replies] == [1, 2, 3, 4, 5]
            assert [r["type"] for r in replies[:3]] == ["success", "success", "success"]
            assert replies[3]["type"] == "error" and replies[3]["code"] == "capacity"
            assert replies[4]["channels"] == [f"P{i}$US:quote" for i in range(5)]
            await c.close()
    finally:
        await sim.stop()


async def test_a_resume_whose_symbols_no_longer_fit_is_refused_plainly_and_kept() -> None:
    sim = await start_simulator()
    gw = await start_gateway(sim, **LIMITS)
    try:
        a = await Client.connect(gw)
        assert (await sub(a, junk(5, "A")))["type"] == "success"
        await a.push()
        a.ws.transport.abort()
        await wait_until(lambda: len(sim.subscriptions()) == 0, what="A's symbols dropped upstream")
        b, c = await Client.connect(gw), await Client.connect(gw)
        assert (await sub(b, junk(5, "B")))["type"] == "success"
        assert (await sub(c, junk(5, "C")))["type"] == "success"
        back = await Client.connect(gw)
        resume = {"action": "resume", "session": a.welcome["session"]}
        reply = await back.request(resume)
        assert reply["recovered"] is False and reply["reason"] == "capacity", reply
        assert (await back.request({"action": "query_subscribe"}))["channels"] == []
        await c.request({"action": "unsubscribe", "symbols": junk(5, "C"), "types": ["quote"]})
        reply = await back.request(resume)  # kept: it fits now
        assert reply["type"] == "success" and reply["reason"] != "unknown_session", reply
        assert len((await back.request({"action": "query_subscribe"}))["channels"]) == 5
        await asyncio.gather(b.close(), c.close(), back.close())
    finally:
        await gw.stop()
        await sim.stop()
