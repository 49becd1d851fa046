"""The client protocol over real sockets: simulator -> gateway -> WebSocket clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gatewaykit import TIMEOUT, Client, channel_of, start_gateway, start_simulator
from tickgate.gateway import Gateway


@pytest_asyncio.fixture
async def gw() -> AsyncIterator[Gateway]:
    sim = await start_simulator()
    gateway = await start_gateway(sim)
    yield gateway
    await gateway.stop()
    await sim.stop()


async def test_subscribe_query_unsubscribe_round_trip(gw: Gateway) -> None:
    c = await Client.connect(gw)
    reply = await c.request(
        {"action": "subscribe", "symbols": ["AAPL$US", "700.hk"], "types": ["quote", "tick"], "id": 7}
    )
    assert reply["type"] == "success" and reply["id"] == 7
    assert reply["symbols"] == ["AAPL$US", "700$HK"]
    assert reply["channels"] == ["AAPL$US:quote", "AAPL$US:tick", "700$HK:quote", "700$HK:tick"]
    assert reply["epoch"] == gw.processor.epoch
    assert reply["msg"] == "Subscribed to 700$HK,AAPL$US"

    push = await c.push()
    assert push["data"]["symbol"] in ("AAPL$US", "700$HK")
    assert push["data"]["seq"] >= 1

    q = await c.request({"action": "query_subscribe"})
    assert q["type"] == "subscriptions"
    assert (q["symbols"], q["types"]) == (["700$HK", "AAPL$US"], ["quote", "tick"])

    reply = await c.request({"action": "unsubscribe", "symbols": ["AAPL$US"], "types": ["tick"]})
    assert reply["channels"] == ["AAPL$US:tick"]
    reply = await c.request({"action": "unsubscribe", "symbols": ["700$HK"]})  # all types
    assert reply["channels"] == ["700$HK:quote", "700$HK:tick"]
    q = await c.request({"action": "query_subscribe"})
    assert q["channels"] == ["AAPL$US:quote"]
    # After the reply, only the remaining channel arrives (ten of its updates, the others' in
    # between had they still come: all four channels update at the same rate).
    got = await c.collect_until(
        lambda ms: sum(m["type"] == "stock_quote" for m in ms) >= 10, what="ten more pushes"
    )
    assert {channel_of(p) for p in got if p["type"] == "stock_quote"} == {"AAPL$US:quote"}
    await c.close()


async def test_types_default_to_quote_and_pings_answer(gw: Gateway) -> None:
    c = await Client.connect(gw, "/ws")
    reply = await c.request({"action": "subscribe", "symbols": ["MSFT$US"]})
    assert reply["channels"] == ["MSFT$US:quote"]
    push = await c.push()
    assert push["data"]["type"] == "quote"
    pong = await c.request({"action": "ping", "id": "p1"})
    assert pong["type"] == "pong" and pong["id"] == "p1" and pong["timestamp"] > 0
    await c.close()


async def test_two_clients_receive_only_their_own_channels(gw: Gateway) -> None:
    a, b = await Client.connect(gw), await Client.connect(gw)
    await a.request({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]})
    await b.request({"action": "subscribe", "symbols": ["700$HK"], "types": ["tick", "depth"]})

    # Ten pushes each (had the other's channels leaked, they would be among them: every
    # channel updates at the same rate), and both of b's channels.
    def pushes(ms: list[dict[str, Any]]) -> set[str]:
        return {channel_of(m) for m in ms if m["type"] == "stock_quote"}

    def enough(ms: list[dict[str, Any]], want: int) -> bool:
        return sum(m["type"] == "stock_quote" for m in ms) >= 10 and len(pushes(ms)) >= want

    got_a = pushes(await a.collect_until(lambda ms: enough(ms, 1), what="a's pushes"))
    got_b = pushes(await b.collect_until(lambda ms: enough(ms, 2), what="b's pushes"))
    assert got_a == {"AAPL$US:quote"}
    assert got_b == {"700$HK:tick", "700$HK:depth"}
    await a.close()
    await b.close()


async def test_sequence_numbers_increase_per_channel(gw: Gateway) -> None:
    c = await Client.connect(gw)
    await c.request({"action": "subscribe", "symbols": ["AAPL$US", "TSLA$US"], "types": ["quote"]})
    seqs: dict[str, list[int]] = {}

    def ten_each(ms: list[dict[str, Any]]) -> bool:
        got = [channel_of(m) for m in ms if m["type"] == "stock_quote"]
        return all(got.count(ch) >= 10 for ch in ("AAPL$US:quote", "TSLA$US:quote"))

    for m in await c.collect_until(ten_each, what="ten updates of each channel"):
        if m["type"] == "stock_quote":
            seqs.setdefault(channel_of(m), []).append(m["data"]["seq"])
    assert set(seqs) == {"AAPL$US:quote", "TSLA$US:quote"}
    for values in seqs.values():
        assert values == list(range(values[0], values[0] + len(values)))
    await c.close()


async def test_errors_keep_the_connection_usable(gw: Gateway) -> None:
    c = await Client.connect(gw)
    cases = [
        ("{not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        ("[1,2]", "invalid_message"),
        ({"symbols": ["AAPL$US"]}, "invalid_message"),
        ({"action": "teleport"}, "unknown_action"),
        ({"action": "subscribe"}, "invalid_message"),
        ({"action": "subscribe", "symbols": "AAPL"}, "invalid_symbol"),
        ({"action": "subscribe", "symbols": ["AAPL$US", "NO SUCH"]}, "invalid_symbol"),
        ({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["trades"]}, "invalid_type"),
        ({"action": "subscribe", "symbols": [1, 2]}, "invalid_message"),
    ]
    for message, code in cases:
        reply = await c.request(message)
        assert reply["type"] == "error", message
        assert reply["code"] == code, (message, reply)
        assert reply["msg"]
    assert (await c.request("{oops"))["msg"] == "Invalid JSON format"  # the seed's text
    # A failed request changed nothing, and the connection still works.
    assert (await c.request({"action": "query_subscribe"}))["channels"] == []
    reply = await c.request({"action": "subscribe", "symbols": ["AAPL$US"], "id": 3})
    assert reply["type"] == "success" and reply["id"] == 3
    err = await c.request({"action": "nope", "id": 4})
    assert err["id"] == 4
    await c.push()
    await c.close()


async def test_request_id_null_is_echoed() -> None:
    gw = await start_gateway(None, simulator_rate=0.0)
    try:
        c = await Client.connect(gw)
        assert (await c.request({"action": "ping", "id": None}))["id"] is None
        assert (await c.request({"action": "nope", "id": None}))["id"] is None
        await c.close()
    finally:
        await gw.stop()


async def test_channel_limit_per_connection() -> None:
    sim = await start_simulator()
    gw = await start_gateway(sim, max_channels_per_connection=3)
    try:
        c = await Client.connect(gw)
        ok = await c.request({"action": "subscribe", "symbols": ["A$US", "B$US"], "types": ["quote"]})
        assert ok["type"] == "success"
        err = await c.request({"action": "subscribe", "symbols": ["C$US", "D$US"], "types": ["quote"]})
        assert err["code"] == "too_many_subscriptions"
        assert (await c.request({"action": "query_subscribe"}))["channels"] == ["A$US:quote", "B$US:quote"]
        await c.close()
    finally:
        await gw.stop()
        await sim.stop()


async def test_oversize_message_closes_only_that_client_with_1009() -> None:
    gw = await start_gateway(None, simulator_rate=20.0, max_message_bytes=4096)
    try:
        bystander = await Client.connect(gw)
        await bystander.request({"action": "subscribe", "symbols": ["AAPL$US"]})
        async with connect(gw.url, ping_interval=None, close_timeout=1, max_size=None) as ws:
            assert b'"welcome"' in (await asyncio.wait_for(ws.recv(), TIMEOUT)).encode()
            await ws.send('{"action":"subscribe","symbols":["' + "A" * 10_000 + '"]}')
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        await bystander.push()  # unaffected
        assert (await bystander.request({"action": "ping"}))["type"] == "pong"
        await bystander.close()
    finally:
        await gw.stop()


async def test_seed_client_works_unchanged(gw: Gateway) -> None:
    """Only the seed article's message shapes, as its browser page sends them."""
    c = await Client.connect(gw)
    await c.send({"action": "subscribe", "symbols": ["AAPL$US", "600519.SH"], "types": ["quote"]})
    first = await c.recv()
    assert first["type"] == "success"
    assert first["msg"].startswith("Subscribed to ")
    push = await c.push(lambda m: m["data"]["symbol"] == "600519$SH")
    data = push["data"]
    for key in (
        "symbol",
        "lastDealPrice",
        "openPrice",
        "highPrice",
        "lowPrice",
        "volume",
        "turnover",
        "tradeTime",
    ):
        assert key in data
    assert data["type"] == "quote"
    assert isinstance(push["timestamp"], int)
    await c.send({"action": "unsubscribe", "symbols": ["AAPL$US"], "types": ["quote"]})
    assert (await c.reply())["type"] == "success"
    await c.close()


async def test_fragmented_request_is_reassembled(gw: Gateway) -> None:
    c = await Client.connect(gw)
    await c.ws.send(iter(['{"action":"subscribe",', '"symbols":["AAPL$US"]}']))
    assert (await c.reply())["type"] == "success"
    await c.close()
