"""The binary protocol over real sockets (docs/protocol.md, "Binary protocol"): subprotocols
``tickgate.v1.proto`` and ``tickgate.v1.proto+zstd``, every server frame one ``ServerMessage``."""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect

from gatewaykit import TIMEOUT, Client, http_get, start_gateway, start_simulator, wait_until
from tickgate import proto
from tickgate.config import ConfigError, GatewayConfig
from tickgate.edge.zstd_dictionary import builtin_dictionary
from tickgate.gateway import Gateway

zstandard = pytest.importorskip("zstandard")

PROTO = "tickgate.v1.proto"
PROTO_ZSTD = "tickgate.v1.proto+zstd"


@pytest_asyncio.fixture
async def gw() -> AsyncIterator[Gateway]:
    sim = await start_simulator(rate=20.0)
    gateway = await start_gateway(sim)
    yield gateway
    await gateway.stop()
    await sim.stop()


async def open_binary(gw: Gateway, subprotocol: str, query: str = "") -> ClientConnection:
    ws = await connect(
        gw.url + query,
        subprotocols=[subprotocol],  # type: ignore[list-item]
        open_timeout=TIMEOUT,
        close_timeout=1,
        ping_interval=None,
        compression=None,
        max_size=None,
    )
    assert ws.subprotocol == subprotocol
    first = await asyncio.wait_for(ws.recv(), TIMEOUT)
    if subprotocol == PROTO:  # (zstd frames are checked by the tests, dictionary or not)
        welcome = decode(first, subprotocol)
        assert welcome.reply.type == "welcome" and welcome.reply.session, welcome
    return ws


DICTIONARY = zstandard.ZstdCompressionDict(builtin_dictionary())
WITH_DICTIONARY = zstandard.ZstdDecompressor(dict_data=DICTIONARY)


def decode(frame: str | bytes, subprotocol: str) -> Any:
    assert isinstance(frame, bytes), f"a text frame on {subprotocol}: {frame!r}"
    if subprotocol == PROTO_ZSTD:
        params = zstandard.get_frame_parameters(frame)
        assert params.dict_id == DICTIONARY.dict_id()  # the shipped dictionary, named in the header
        payload = WITH_DICTIONARY.decompress(frame)
        assert params.content_size == len(payload)  # the size is in the frame header
        frame = payload
    return proto.ServerMessage.FromString(frame)


async def next_message(
    ws: ClientConnection, subprotocol: str, kinds: set[str], timeout: float = TIMEOUT
) -> Any:
    """The next ServerMessage whose oneof is one of ``kinds`` (others are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
        msg = decode(frame, subprotocol)
        if msg.WhichOneof("message") in kinds:
            return msg


@pytest.mark.parametrize("subprotocol", [PROTO, PROTO_ZSTD])
async def test_subscribe_round_trip_and_updates(gw: Gateway, subprotocol: str) -> None:
    ws = await open_binary(gw, subprotocol)
    await ws.send(
        json.dumps({"action": "subscribe", "symbols": ["aapl.us"], "types": ["quote", "tick"], "id": 7})
    )
    msg = await next_message(ws, subprotocol, {"reply", "error"})
    assert msg.WhichOneof("message") == "reply"
    reply = msg.reply
    assert reply.type == "success" and reply.action == "subscribe"
    assert list(reply.channels) == ["AAPL$US:quote", "AAPL$US:tick"]
    assert list(reply.symbols) == ["AAPL$US"]
    assert reply.epoch == gw.processor.epoch
    assert reply.HasField("id") and reply.id == "7"  # a JSON id echoed as its JSON text

    seen: dict[str, list[int]] = {}
    deadline = time.monotonic() + TIMEOUT
    while len(seen.get("quote", [])) < 3 or len(seen.get("tick", [])) < 3:
        assert time.monotonic() < deadline, seen
        msg = decode(await asyncio.wait_for(ws.recv(), TIMEOUT), subprotocol)
        assert msg.WhichOneof("message") == "update", msg
        u = msg.update
        assert u.symbol == "AAPL$US"
        assert u.epoch == gw.processor.epoch
        assert u.event_time_ms > 0 and u.recv_time_ms > 0
        kind = u.WhichOneof("data")
        assert kind in ("quote", "tick")
        if kind == "quote":
            assert u.quote.last > 0
        else:
            assert u.tick.price > 0 and u.tick.volume > 0
        seen.setdefault(kind, []).append(u.seq)
    for seqs in seen.values():
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seen
    await ws.close()


@pytest.mark.parametrize("subprotocol", [PROTO, PROTO_ZSTD])
async def test_protobuf_commands(gw: Gateway, subprotocol: str) -> None:
    ws = await open_binary(gw, subprotocol)
    await ws.send(proto.ClientMessage(action="ping", id="x").SerializeToString())
    msg = await next_message(ws, subprotocol, {"reply", "error"})
    assert msg.WhichOneof("message") == "reply", msg
    assert msg.reply.type == "pong" and msg.reply.id == "x"
    assert msg.reply.timestamp_ms > 0

    await ws.send(proto.ClientMessage(action="teleport", id="y").SerializeToString())
    msg = await next_message(ws, subprotocol, {"reply", "error"})
    assert msg.WhichOneof("message") == "error", msg
    assert msg.error.code == "unknown_action" and msg.error.id == "y" and msg.error.msg

    await ws.send(b"\x0a\xff\x01")  # a length past the end: not a ClientMessage
    msg = await next_message(ws, subprotocol, {"reply", "error"})
    assert msg.error.code == "invalid_message", msg

    sub = proto.ClientMessage(action="subscribe", symbols=["MSFT$US"], types=["quote"], id="s")
    await ws.send(sub.SerializeToString())
    msg = await next_message(ws, subprotocol, {"reply", "error"})
    assert msg.WhichOneof("message") == "reply", msg
    assert list(msg.reply.channels) == ["MSFT$US:quote"] and msg.reply.id == "s"
    update = (await next_message(ws, subprotocol, {"update"})).update
    assert update.symbol == "MSFT$US" and update.WhichOneof("data") == "quote"

    bad = proto.ClientMessage(action="subscribe", symbols=["MSFT$US", "NO SUCH"], types=["tick"], id="b")
    await ws.send(bad.SerializeToString())
    msg = await next_message(ws, subprotocol, {"reply", "error"})
    assert msg.error.code == "invalid_symbol" and msg.error.id == "b", msg

    await ws.send(proto.ClientMessage(action="query_subscribe").SerializeToString())
    msg = await next_message(ws, subprotocol, {"reply", "error"})
    assert msg.reply.type == "subscriptions" and list(msg.reply.channels) == ["MSFT$US:quote"]
    assert not msg.reply.HasField("id")

    mode = proto.ClientMessage(action="set_mode", mode="batch", interval_ms=10, id="m")
    await ws.send(mode.SerializeToString())
    msg = await next_message(ws, subprotocol, {"reply", "error"})
    assert msg.error.code == "invalid_mode" and msg.error.id == "m", msg
    await ws.close()


@pytest.mark.parametrize("subprotocol", [PROTO, PROTO_ZSTD])
async def test_batch_mode_over_binary(gw: Gateway, subprotocol: str) -> None:
    ws = await open_binary(gw, subprotocol, "?mode=batch&interval_ms=200")
    await ws.send(
        json.dumps({"action": "subscribe", "symbols": ["AAPL$US", "700$HK"], "types": ["quote", "tick"]})
    )
    msg = await next_message(ws, subprotocol, {"reply", "error"})
    assert msg.reply.type == "success", msg
    batches = []
    deadline = time.monotonic() + TIMEOUT
    while len(batches) < 8:
        assert time.monotonic() < deadline, len(batches)
        msg = decode(await asyncio.wait_for(ws.recv(), TIMEOUT), subprotocol)
        assert msg.WhichOneof("message") == "batch", msg  # nothing else in batch mode
        batches.append(msg.batch)
    stamps = [b.timestamp_ms for b in batches]
    assert stamps == sorted(stamps) and stamps[0] > 0
    # After the first batch (grid of the empty subscription set) they come 200 ms apart, by the
    # gateway's own stamps. A batch that a stalled machine sent late lengthens one gap and
    # shortens the next by as much, so the median is what shows the interval kept; two batches
    # for one interval would be a timer tick (10 ms) apart.
    gaps = [b - a for a, b in itertools.pairwise(stamps[1:])]
    assert 150 <= statistics.median(gaps) <= 300 and min(gaps) >= 20, stamps
    for batch in batches:
        assert batch.updates
        assert batch.dropped_ticks == 0
        quotes = [u.symbol for u in batch.updates if u.WhichOneof("data") == "quote"]
        assert len(quotes) == len(set(quotes)), quotes  # conflated: one per channel
        for u in batch.updates:
            assert u.symbol in ("AAPL$US", "700$HK")
            assert u.WhichOneof("data") in ("quote", "tick")
            assert u.seq >= 1
    await ws.close()


async def test_json_and_proto_clients_see_the_same_sequence(gw: Gateway) -> None:
    j = await Client.connect(gw)
    p = await open_binary(gw, PROTO_ZSTD)
    await j.request({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]})
    await p.send(json.dumps({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]}))
    assert (await next_message(p, PROTO_ZSTD, {"reply", "error"})).reply.type == "success"

    json_by_seq: dict[int, dict[str, Any]] = {}
    by_seq: dict[int, Any] = {}

    async def json_updates() -> None:
        while True:
            m = await j.recv()
            if m["type"] == "stock_quote":
                json_by_seq[m["data"]["seq"]] = m

    async def proto_updates() -> None:
        while True:
            msg = decode(await p.recv(), PROTO_ZSTD)
            assert msg.WhichOneof("message") == "update", msg
            by_seq[msg.update.seq] = msg.update

    # Both read until five updates reached both (however long a loaded machine takes).
    readers = [asyncio.create_task(json_updates()), asyncio.create_task(proto_updates())]
    try:
        await wait_until(
            lambda: len(set(json_by_seq) & set(by_seq)) >= 5 or any(r.done() for r in readers),
            what="five updates both clients got",
        )
    finally:
        for r in readers:
            r.cancel()
        ended = await asyncio.gather(*readers, return_exceptions=True)
    assert all(isinstance(e, asyncio.CancelledError) for e in ended), ended  # no reader failed
    common = set(json_by_seq) & set(by_seq)
    assert len(common) >= 5, (sorted(json_by_seq), sorted(by_seq))
    for seq in common:
        data, u = json_by_seq[seq]["data"], by_seq[seq]
        assert data["symbol"] == u.symbol
        assert data["lastDealPrice"] == u.quote.last
        assert data["tradeTime"] == u.event_time_ms
        assert json_by_seq[seq]["timestamp"] == u.recv_time_ms
    await j.close()
    await p.close()


async def test_json_subprotocol_reads_binary_frames_as_json(gw: Gateway) -> None:
    async with connect(gw.url, subprotocols=["tickgate.v1.json"], ping_interval=None) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "tickgate.v1.json"
        assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["type"] == "welcome"
        await ws.send(proto.ClientMessage(action="ping", id="x").SerializeToString())
        # A binary frame on JSON is read as JSON: not parsable.
        err = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert err["type"] == "error" and err["code"] == "invalid_json"
        await ws.send(json.dumps({"action": "ping", "id": "x"}))
        pong = await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert isinstance(pong, str) and json.loads(pong)["type"] == "pong"


async def test_zstd_dictionary_is_served_and_names_itself_in_every_frame(gw: Gateway) -> None:
    status, ctype, body = await asyncio.to_thread(http_get, f"http://127.0.0.1:{gw.port}/v1/zstd-dictionary")
    assert (status, ctype) == (200, "application/octet-stream")
    assert body == builtin_dictionary()
    assert zstandard.ZstdCompressionDict(body).dict_id() == 0x74670001
    ws = await open_binary(gw, PROTO_ZSTD)
    try:
        await ws.send(json.dumps({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]}))
        # decode() checks the id in each frame's header and decompresses with the served bytes.
        await next_message(ws, PROTO_ZSTD, {"update"})
        frame = await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert isinstance(frame, bytes)
        with pytest.raises(zstandard.ZstdError):
            zstandard.ZstdDecompressor().decompress(frame)  # a client without the dictionary cannot read it
    finally:
        await ws.close()


async def test_zstd_without_dictionary_sends_plain_frames() -> None:
    sim = await start_simulator(rate=20.0)
    gw = await start_gateway(sim, zstd_dictionary="none")
    try:
        status, _, _ = await asyncio.to_thread(http_get, f"http://127.0.0.1:{gw.port}/v1/zstd-dictionary")
        assert status == 404
        ws = await open_binary(gw, PROTO_ZSTD)
        try:
            await ws.send(json.dumps({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]}))
            while True:
                frame = await asyncio.wait_for(ws.recv(), TIMEOUT)
                assert isinstance(frame, bytes)
                assert zstandard.get_frame_parameters(frame).dict_id == 0
                msg = proto.ServerMessage.FromString(zstandard.ZstdDecompressor().decompress(frame))
                if msg.WhichOneof("message") == "update":
                    assert msg.update.symbol == "AAPL$US"
                    break
        finally:
            await ws.close()
    finally:
        await gw.stop()
        await sim.stop()


def test_zstd_dictionary_setting_refuses_what_is_not_a_dictionary(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        Gateway(GatewayConfig(zstd_dictionary=str(tmp_path / "missing.dict")))
    raw = tmp_path / "raw.dict"
    raw.write_bytes(b"not a trained dictionary")
    with pytest.raises(ConfigError, match="not a zstd dictionary"):
        Gateway(GatewayConfig(zstd_dictionary=str(raw)))
