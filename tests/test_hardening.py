"""Failure paths: misbehaving clients and providers cost only themselves."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys

import pytest
from picows import WSListener, WSMsgType, WSTransport, ws_create_server
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gatewaykit import Client, start_gateway, start_simulator, wait_until
from tickgate import DecodeError, FeedProcessor, FrameError, Update
from tickgate.config import ConfigError, load_config
from tickgate.upstream import UpstreamState
from tickgate.upstream.backoff import Backoff

QUOTE = b'{"code":1,"data":{"s":"AAPL.US","ld":1.5,"t":1731689407000,"type":"quote"}}'


def test_batch_keeps_its_updates_when_an_item_is_not_a_frame() -> None:
    p = FeedProcessor("itick")
    updates, _, bad = p.ingest_many([QUOTE, 42, "\ud800", QUOTE])  # type: ignore[list-item]
    assert all(isinstance(e, FrameError) for e in bad)
    assert [(e.index, e.code) for e in bad] == [(1, "invalid_frame"), (2, "invalid_json")]
    assert all(isinstance(u, Update) for u in updates)
    assert [u.seq for u in updates] == [1, 2]  # no sequence number lost


def test_unencodable_text_is_a_decode_error() -> None:
    with pytest.raises(DecodeError) as info:
        FeedProcessor("itick").ingest("\ud800")
    assert info.value.code == "invalid_json"


def test_backoff_never_overflows_and_stays_capped() -> None:
    b = Backoff(0.5, 30.0)
    delays = [b.next_delay() for _ in range(5000)]
    assert max(delays) <= 30.0 and min(delays) > 0


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"TICKGATE_UPSTREAM_PING_INTERVAL": "0"}, "upstream_ping_interval must be greater than 0"),
        ({"TICKGATE_UPSTREAM_URL": ""}, "upstream_url is empty"),
    ],
)
def test_config_refuses_zero_timers_and_empty_urls(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_config(env=env)


def test_cli_bad_log_level_is_a_config_error() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "tickgate", "serve", "--log-level", "verbose"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ},
    )
    assert r.returncode == 2
    assert "log_level must be one of" in r.stderr


async def test_request_id_null_is_echoed() -> None:
    gw = await start_gateway(None, simulator_rate=0.0)
    try:
        c = await Client.connect(gw)
        assert (await c.request({"action": "ping", "id": None}))["id"] is None
        assert (await c.request({"action": "nope", "id": None}))["id"] is None
        await c.close()
    finally:
        await gw.stop()


async def test_client_flooding_requests_without_reading_is_dropped() -> None:
    gw = await start_gateway(
        None, simulator_rate=0.0, max_send_buffer_bytes=256 * 1024, slow_consumer_soft_cap_bytes=64 * 1024
    )
    try:
        # max_queue=1: the client library stops reading, so replies back up to the gateway.
        async with connect(gw.url, max_queue=1, ping_interval=None, close_timeout=0.5) as ws:
            symbols = [f"S{i}$US" for i in range(500)]
            await ws.send(json.dumps({"action": "subscribe", "symbols": symbols, "types": ["quote", "tick"]}))
            for _ in range(2000):
                await ws.send('{"action":"query_subscribe"}')
                if gw.hub.counters.slow_consumers_closed:
                    break
            await wait_until(lambda: gw.hub.counters.slow_consumers_closed == 1, what="drop")
            await wait_until(lambda: gw.dispatcher.channel_count == 0, what="subscriptions released")
        other = await Client.connect(gw)  # the gateway serves others as before
        assert (await other.request({"action": "ping"}))["type"] == "pong"
        await other.close()
    finally:
        await gw.stop()


async def raw_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    return reader, writer


def masked(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    assert len(payload) < 126
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


async def test_client_that_closes_without_reading_is_released_at_once() -> None:
    sim = await start_simulator(rate=50.0)
    gw = await start_gateway(sim)
    try:
        _reader, writer = await raw_client(gw.port)
        writer.write(masked(0x1, b'{"action":"subscribe","symbols":["AAPL$US","MSFT$US"],"types":["tick"]}'))
        await wait_until(lambda: gw.dispatcher.channel_count == 2, what="subscribed")
        writer.write(masked(0x8, (1000).to_bytes(2, "big")))  # CLOSE, then never read again
        await wait_until(
            lambda: gw.dispatcher.channel_count == 0 and gw.stats()["connections"] == 0, what="release"
        )
        await wait_until(lambda: not sim.subscriptions(), what="upstream dropped")
        writer.close()
    finally:
        await gw.stop()
        await sim.stop()


class _FragmentingProvider(WSListener):
    """An iTick-protocol provider that splits a market message into three WebSocket frames."""

    def on_ws_connected(self, transport: WSTransport) -> None:
        transport.send(WSMsgType.TEXT, b'{"code":1,"msg":"Connected Successfully"}')
        transport.send(WSMsgType.TEXT, b'{"code":1,"resAc":"auth","msg":"authenticated"}')
        transport.send(WSMsgType.TEXT, QUOTE[:20], fin=False)
        transport.send(WSMsgType.CONTINUATION, QUOTE[20:40], fin=False)
        transport.send(WSMsgType.CONTINUATION, QUOTE[40:], fin=True)


async def test_fragmented_provider_messages_are_reassembled() -> None:
    server = await ws_create_server(lambda _r: _FragmentingProvider(), "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/stock"
    gw = await start_gateway(None, upstream_url=url, upstream_token="t")
    try:
        await wait_until(lambda: gw.hub.counters.updates_in == 1, what="reassembled update")
        assert gw.upstream.decode_errors == 0
    finally:
        await gw.stop()
        server.close()


async def test_feed_that_answers_pings_but_sends_no_data_is_redialled() -> None:
    sim = await start_simulator(rate=0.0)
    gw = await start_gateway(sim, upstream_data_timeout=0.8, upstream_ping_interval=0.2)
    try:
        c = await Client.connect(gw)
        await c.request({"action": "subscribe", "symbols": ["AAPL$US"]})
        await wait_until(lambda: gw.upstream.reconnects >= 1, what="data timeout")
        assert gw.upstream.status()["last_error"].startswith("no market data")
        await wait_until(lambda: gw.upstream.state is UpstreamState.READY, what="back")
        await c.close()
    finally:
        await gw.stop()
        await sim.stop()


async def test_failed_start_leaves_nothing_running() -> None:
    gw1 = await start_gateway(None, simulator_rate=0.0)
    try:
        with pytest.raises(OSError):
            await start_gateway(None, simulator_rate=0.0, port=gw1.port)
        await asyncio.sleep(0.1)
        leftovers = [t for t in asyncio.all_tasks() if t.get_name() == "tickgate-upstream-itick"]
        assert len(leftovers) == 1  # only gw1's
    finally:
        await gw1.stop()


async def test_oversize_message_closes_only_that_client_with_1009() -> None:
    gw = await start_gateway(None, simulator_rate=20.0, max_message_bytes=4096)
    try:
        bystander = await Client.connect(gw)
        await bystander.request({"action": "subscribe", "symbols": ["AAPL$US"]})
        async with connect(gw.url, ping_interval=None, close_timeout=1, max_size=None) as ws:
            await ws.send('{"action":"subscribe","symbols":["' + "A" * 10_000 + '"]}')
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 5)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        await bystander.push()  # unaffected
        assert (await bystander.request({"action": "ping"}))["type"] == "pong"
        await bystander.close()
    finally:
        await gw.stop()
