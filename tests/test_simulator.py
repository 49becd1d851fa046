"""The iTick simulator over real sockets with a real WebSocket client, and its market model directly."""

from __future__ import annotations

import asyncio
import json
import math
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
import websockets
from websockets.asyncio.client import ClientConnection, connect

from gatewaykit import TIMEOUT
from tickgate.simulate import ItickSimulator, MarketModel, SimulatorConfig
from tickgate.simulate.market import kline_open_time

FAST_RATE = 40.0  # updates/s per symbol, so a few hundred ms show plenty of data

SimulatorFactory = Callable[..., Awaitable[ItickSimulator]]


@pytest_asyncio.fixture
async def make_simulator() -> AsyncIterator[SimulatorFactory]:
    started: list[ItickSimulator] = []

    async def make(**overrides: Any) -> ItickSimulator:
        simulator = ItickSimulator(SimulatorConfig(**overrides))
        await simulator.start()
        started.append(simulator)
        return simulator

    yield make
    for simulator in started:
        await simulator.stop()


async def open_ws(url: str, token: str | None = None) -> ClientConnection:
    headers = {"token": token} if token is not None else None
    return await connect(
        url,
        additional_headers=headers,
        compression=None,
        open_timeout=TIMEOUT,
        close_timeout=1,
        ping_interval=None,
    )


async def recv_json(ws: ClientConnection, timeout: float = TIMEOUT) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), timeout)
    message = json.loads(raw)
    assert isinstance(message, dict)
    return message


async def recv_reply(ws: ClientConnection, res_ac: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    """The next reply to ``res_ac``, skipping market data pushed in between."""
    async with asyncio.timeout(timeout):
        while True:
            message = await recv_json(ws, timeout)
            if message.get("resAc") == res_ac:
                return message


async def connect_authenticated(
    simulator: ItickSimulator, token: str = "demo", path: str = "/stock"
) -> ClientConnection:
    ws = await open_ws(f"ws://127.0.0.1:{simulator.port}{path}", token)
    assert await recv_json(ws) == {"code": 1, "msg": "Connected Successfully"}
    assert (await recv_json(ws))["msg"] == "authenticated"
    return ws


async def send(ws: ClientConnection, command: dict[str, Any] | str) -> None:
    await ws.send(command if isinstance(command, str) else json.dumps(command))


async def subscribe(ws: ClientConnection, params: str, types: str) -> dict[str, Any]:
    await send(ws, {"ac": "subscribe", "params": params, "types": types})
    return await recv_reply(ws, "subscribe")


async def collect_data(
    ws: ClientConnection, done: Callable[[list[dict[str, Any]]], object], what: str = "data"
) -> list[dict[str, Any]]:
    """Every push envelope received until ``done(envelopes so far)`` holds: as many as a test
    needs, however long a loaded machine takes to send them."""
    frames: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(TIMEOUT):
            while not done(frames):
                message = await recv_json(ws)
                assert "resAc" not in message, message
                frames.append(message)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}; got {frames[-5:]}") from None
    return frames


def at_least(n: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda frames: len(frames) >= n


def kinds(frames: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(frame["data"]["s"], push_type(frame)) for frame in frames}


async def assert_closed_by_server(ws: ClientConnection, code: int | None = None) -> list[dict[str, Any]]:
    """Read until the server closes the connection; the messages seen before the close."""
    seen: list[dict[str, Any]] = []
    with pytest.raises(websockets.ConnectionClosed):
        async with asyncio.timeout(TIMEOUT):
            while True:
                seen.append(json.loads(await ws.recv()))
    if code is not None:
        assert ws.close_code == code
    return seen


def push_type(frame: dict[str, Any]) -> str:
    data = frame["data"]
    return str(data["type"]) if "type" in data else f"kline@{data['t']}"


# -- connecting and authenticating ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_header_token_gets_greeting_then_authenticated(make_simulator: SimulatorFactory) -> None:
    simulator = await make_simulator()
    assert simulator.url == f"ws://127.0.0.1:{simulator.port}/stock"
    async with await open_ws(simulator.url, "secret-1") as ws:
        assert await recv_json(ws) == {"code": 1, "msg": "Connected Successfully"}
        assert await recv_json(ws) == {
            "code": 1,
            "resAc": "auth",
            "msg": "authenticated",
            "data": {"params": "secret-1"},
        }
        await simulator.wait_for(lambda s: s.connection_count == 1, timeout=TIMEOUT)


@pytest.mark.asyncio
async def test_query_token_authenticates(make_simulator: SimulatorFactory) -> None:
    simulator = await make_simulator(tokens=frozenset({"q-token"}))
    async with await open_ws(f"ws://127.0.0.1:{simulator.port}/stock?token=q-token") as ws:
        assert (await recv_json(ws))["msg"] == "Connected Successfully"
        assert (await recv_json(ws))["data"] == {"params": "q-token"}


@pytest.mark.asyncio
async def test_auth_message_authenticates_and_commands_before_it_are_refused(
    make_simulator: SimulatorFactory,
) -> None:
    simulator = await make_simulator(tokens={"msg-token"})
    async with await open_ws(f"ws://127.0.0.1:{simulator.port}/sws") as ws:
        assert (await recv_json(ws))["msg"] == "Connected Successfully"
        await send(ws, {"ac": "subscribe", "params": "AAPL$US", "types": "quote"})
        assert await recv_json(ws) == {"code": 0, "resAc": "subscribe", "msg": "not authenticated"}
        await send(ws, {"ac": "auth", "params": "msg-token"})
        assert await recv_json(ws) == {
            "code": 1,
            "resAc": "auth",
            "msg": "authenticated",
            "data": {"params": "msg-token"},
        }
        assert (await subscribe(ws, "AAPL$US", "quote"))["code"] == 1
    assert simulator.commands[0] == {"ac": "subscribe", "params": "AAPL$US", "types": "quote"}
    assert simulator.commands[1] == {"ac": "auth", "params": "msg-token"}


@pytest.mark.asyncio
@pytest.mark.parametrize("form", ["header", "query", "message"])
async def test_bad_token_fails_then_closes(make_simulator: SimulatorFactory, form: str) -> None:
    simulator = await make_simulator(tokens=frozenset({"good"}))
    url = f"ws://127.0.0.1:{simulator.port}/stock" + ("?token=bad" if form == "query" else "")
    async with await open_ws(url, "bad" if form == "header" else None) as ws:
        if form == "message":
            await send(ws, {"ac": "auth", "params": "bad"})
        seen = await assert_closed_by_server(ws, code=1008)
    assert seen == [
        {"code": 1, "msg": "Connected Successfully"},
        {"code": 0, "resAc": "auth", "msg": "auth failed"},
    ]
    await simulator.wait_for(lambda s: s.connection_count == 0, timeout=TIMEOUT)


@pytest.mark.asyncio
async def test_connection_without_auth_is_closed_after_the_timeout(make_simulator: SimulatorFactory) -> None:
    simulator = await make_simulator(auth_timeout=0.3)
    async with await open_ws(simulator.url) as ws:
        seen = await assert_closed_by_server(ws, code=1008)
    assert seen == [{"code": 1, "msg": "Connected Successfully"}]


@pytest.mark.asyncio
async def test_second_connection_with_same_token_disconnects_the_first(
    make_simulator: SimulatorFactory,
) -> None:
    simulator = await make_simulator()
    first = await connect_authenticated(simulator, "shared")
    second = await connect_authenticated(simulator, "shared")
    await assert_closed_by_server(first, code=1008)
    await send(second, {"ac": "ping", "params": "still-here"})
    assert (await recv_json(second))["data"] == {"params": "still-here"}
    await simulator.wait_for(lambda s: s.connection_count == 1, timeout=TIMEOUT)
    await second.close()


@pytest.mark.asyncio
async def test_same_token_may_connect_twice_when_allowed(make_simulator: SimulatorFactory) -> None:
    simulator = await make_simulator(single_connection_per_token=False)
    first = await connect_authenticated(simulator, "shared")
    second = await connect_authenticated(simulator, "shared")
    async with first, second:
        await simulator.wait_for(lambda s: s.connection_count == 2, timeout=TIMEOUT)


# -- subscriptions and market data -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_subscribe_streams_exactly_the_subscribed_symbols_and_types(
    make_simulator: SimulatorFactory,
) -> None:
    simulator = await make_simulator(rate=FAST_RATE)
    async with await connect_authenticated(simulator) as ws:
        assert await subscribe(ws, "AAPL$US, tsla$us", "tick, QUOTE") == {
            "code": 1,
            "resAc": "subscribe",
            "msg": "subscribe Successfully",
        }
        assert (await subscribe(ws, "700$HK", "depth,kline@1"))["code"] == 1
        assert simulator.subscriptions() == {
            "AAPL$US": {"tick", "quote"},
            "TSLA$US": {"tick", "quote"},
            "700$HK": {"depth", "kline@1"},
        }
        # Every subscribed kind, and 30 frames: what is not subscribed would be among them.
        frames = await collect_data(ws, lambda fs: len(kinds(fs)) >= 6 and len(fs) >= 30, "every kind")
    assert kinds(frames) == {
        ("AAPL.US", "tick"),
        ("AAPL.US", "quote"),
        ("TSLA.US", "tick"),
        ("TSLA.US", "quote"),
        ("700.HK", "depth"),
        ("700.HK", "kline@1"),
    }
    assert all(frame["code"] == 1 for frame in frames)


@pytest.mark.asyncio
async def test_quotes_ticks_and_depth_are_consistent(make_simulator: SimulatorFactory) -> None:
    simulator = await make_simulator(rate=FAST_RATE)
    async with await connect_authenticated(simulator) as ws:
        await subscribe(ws, "AAPL$US", "tick,quote,depth")

        def five_of_each(fs: list[dict[str, Any]]) -> bool:
            got = [f["data"]["type"] for f in fs]
            return all(got.count(kind) >= 5 for kind in ("tick", "quote", "depth"))

        frames = [frame["data"] for frame in await collect_data(ws, five_of_each, "five of each")]
    quotes = [data for data in frames if data["type"] == "quote"]
    assert len(quotes) >= 5
    tick_volume = 0
    last_tick: dict[str, Any] | None = None
    for data in frames:
        if data["type"] == "tick":
            assert set(data) == {"s", "ld", "t", "v", "d", "te", "type"}
            assert data["d"] in (0, 1, 2) and data["te"] == 0
            if last_tick is not None:
                expected = 2 if data["ld"] > last_tick["ld"] else 1 if data["ld"] < last_tick["ld"] else 0
                assert data["d"] == expected
            tick_volume += data["v"]
            last_tick = data
        elif data["type"] == "quote":
            assert set(data) == {"s", "ld", "o", "h", "l", "p", "ch", "chp", "t", "v", "tu", "ts", "type"}
            assert last_tick is not None and data["ld"] == last_tick["ld"] and data["t"] == last_tick["t"]
            assert data["l"] <= data["ld"] <= data["h"] and data["l"] <= data["o"] <= data["h"]
            assert math.isclose(data["ch"], data["ld"] - data["p"], abs_tol=0.005)
            assert math.isclose(data["chp"], data["ch"] / data["p"] * 100, abs_tol=0.006)
            assert data["v"] == tick_volume  # the day began when the simulator first saw the symbol
            assert data["ts"] == 0 and round(data["ld"], 2) == data["ld"]
        else:
            asks, bids = data["a"], data["b"]
            assert [level["po"] for level in asks] == [1, 2, 3, 4, 5] == [level["po"] for level in bids]
            assert math.isclose(asks[0]["p"] - bids[0]["p"], 0.01, abs_tol=1e-9)
            assert bids[0]["p"] <= data_last(frames, data) <= asks[0]["p"]
            assert [level["p"] for level in asks] == sorted(level["p"] for level in asks)
            assert [level["p"] for level in bids] == sorted((level["p"] for level in bids), reverse=True)


def data_last(frames: list[dict[str, Any]], depth: dict[str, Any]) -> float:
    """The last trade price before ``depth`` among ``frames``."""
    ticks = [data for data in frames[: frames.index(depth)] if data["type"] == "tick"]
    return float(ticks[-1]["ld"])


@pytest.mark.asyncio
async def test_symbol_styles(make_simulator: SimulatorFactory) -> None:
    dotted = await make_simulator(rate=FAST_RATE)
    dollar = await make_simulator(rate=FAST_RATE, symbol_style="dollar")
    for simulator, expected in ((dotted, "AAPL.US"), (dollar, "AAPL$US")):
        async with await connect_authenticated(simulator) as ws:
            assert (await subscribe(ws, "aapl.US", "quote"))["code"] == 1
            frames = await collect_data(ws, at_least(3))
        assert frames and {frame["data"]["s"] for frame in frames} == {expected}


@pytest.mark.asyncio
@pytest.mark.parametrize("style", ["flat", "nested"])
async def test_kline_styles(make_simulator: SimulatorFactory, style: str) -> None:
    simulator = await make_simulator(rate=FAST_RATE, kline_style=style)
    async with await connect_authenticated(simulator) as ws:
        await subscribe(ws, "AAPL$US", "kline@1,kline@5")
        # Both bars (each trade updates both).
        frames = await collect_data(ws, lambda fs: len(kinds(fs)) >= 2, "both bars")
    assert frames
    for frame in frames:
        data = frame["data"]
        if style == "nested":
            assert frame["code"] == 0 and frame["msg"] is None
            assert set(data) == {"s", "t", "k"} and data["t"] in (1, 5)
            bar, period = data["k"], data["t"]
        else:
            assert frame["code"] == 1 and data["type"] in ("kline@1", "kline@5")
            bar, period = data, int(data["type"].split("@")[1])
        assert {"o", "h", "l", "c", "v", "tu", "t"} <= set(bar)
        assert bar["l"] <= min(bar["o"], bar["c"]) <= max(bar["o"], bar["c"]) <= bar["h"]
        assert bar["t"] % (60_000 if period == 1 else 3_600_000) == 0


@pytest.mark.asyncio
async def test_subscription_limit_applies_nothing(make_simulator: SimulatorFactory) -> None:
    simulator = await make_simulator(max_subscriptions=2)
    async with await connect_authenticated(simulator) as ws:
        limit = {"code": 0, "resAc": "subscribe", "msg": "exceeding the maximum subscription limit"}
        assert await subscribe(ws, "A$US,B$US,C$US", "quote") == limit
        assert simulator.subscriptions() == {}
        assert (await subscribe(ws, "A$US,B$US", "quote"))["code"] == 1
        assert (await subscribe(ws, "A$US,B$US", "tick"))["code"] == 1  # merging adds no symbol
        assert await subscribe(ws, "C$US", "quote") == limit
        assert simulator.subscriptions() == {"A$US": {"quote", "tick"}, "B$US": {"quote", "tick"}}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("params", "types", "needle"),
    [
        ("AAPL", "quote", "invalid symbol"),
        ("AAPL$U1", "quote", "invalid symbol"),
        ("A$B$US", "quote", "invalid symbol"),
        ("", "quote", "params"),
        ("AAPL$US", "quotes", "invalid type"),
        ("AAPL$US", "kline@11", "invalid type"),
        ("AAPL$US", "", "types"),
    ],
)
async def test_malformed_subscribe_is_rejected_and_connection_stays(
    make_simulator: SimulatorFactory, params: str, types: str, needle: str
) -> None:
    simulator = await make_simulator()
    async with await connect_authenticated(simulator) as ws:
        reply = await subscribe(ws, params, types)
        assert reply["code"] == 0 and needle in reply["msg"], reply
        assert simulator.subscriptions() == {}
        await send(ws, {"ac": "ping", "params": "1"})
        assert (await recv_json(ws))["resAc"] == "pong"


@pytest.mark.asyncio
async def test_unsubscribe_stops_data(make_simulator: SimulatorFactory) -> None:
    simulator = await make_simulator(rate=FAST_RATE)
    async with await connect_authenticated(simulator) as ws:
        await subscribe(ws, "AAPL$US,TSLA$US", "tick,quote")
        await send(ws, {"ac": "unsubscribe", "params": "AAPL$US", "types": "quote"})
        assert await recv_reply(ws, "unsubscribe") == {
            "code": 1,
            "resAc": "unsubscribe",
            "msg": "unsubscribe Successfully",
        }
        assert simulator.subscriptions() == {"AAPL$US": {"tick"}, "TSLA$US": {"tick", "quote"}}
        # The three left, and 30 frames: AAPL's quotes would be among them.
        frames = await collect_data(ws, lambda fs: len(kinds(fs)) >= 3 and len(fs) >= 30, "the rest")
        assert {(f["data"]["s"], f["data"]["type"]) for f in frames} == {
            ("AAPL.US", "tick"),
            ("TSLA.US", "tick"),
            ("TSLA.US", "quote"),
        }

        await send(ws, {"ac": "unsubscribe", "params": "AAPL$US,TSLA$US"})
        await recv_reply(ws, "unsubscribe")
        assert simulator.subscriptions() == {}
        # A barrier, not a wait for nothing: a new symbol's data comes on the same connection,
        # and the unsubscribed ones' would be among its first ten frames (all at the same rate).
        assert (await subscribe(ws, "MSFT$US", "quote"))["code"] == 1
        frames = await collect_data(ws, at_least(10))
        assert kinds(frames) == {("MSFT.US", "quote")}


@pytest.mark.asyncio
@pytest.mark.parametrize("params", ["1731688569840", 1731688569840])
async def test_ping_echoes_params_as_given(make_simulator: SimulatorFactory, params: Any) -> None:
    simulator = await make_simulator()
    async with await connect_authenticated(simulator) as ws:
        await send(ws, {"ac": "ping", "params": params})
        assert await recv_json(ws) == {"resAc": "pong", "data": {"params": params}}
        # Protocol-level pings are answered too.
        pong = await ws.ping(b"probe")
        await asyncio.wait_for(pong, TIMEOUT)


@pytest.mark.asyncio
async def test_garbage_gets_errors_and_keeps_the_connection(make_simulator: SimulatorFactory) -> None:
    simulator = await make_simulator()
    async with await connect_authenticated(simulator) as ws:
        await send(ws, {"ac": "teleport", "params": "x"})
        assert await recv_json(ws) == {"code": 0, "resAc": "teleport", "msg": "cannot be resolved action"}
        for garbage in ("not json", "[1, 2]", '{"ac": 7}', "{" * 5000, '{"ac":"subscribe","params":5}'):
            await send(ws, garbage)
            reply = await recv_json(ws)
            assert reply["code"] == 0, (garbage, reply)
        await ws.send(b"\xff\xfe binary garbage")
        assert await recv_json(ws) == {"code": 0, "msg": "invalid message"}
        await send(ws, {"ac": "ping", "params": "alive"})
        assert (await recv_json(ws))["data"] == {"params": "alive"}
        assert simulator.connection_count == 1


@pytest.mark.asyncio
async def test_every_path_is_an_itick_endpoint(make_simulator: SimulatorFactory) -> None:
    simulator = await make_simulator()
    for path in ("/forex", "/crypto", "/sws", "/"):
        async with await connect_authenticated(simulator, path=path):
            pass


# -- shared state, observability, connection control -------------------------------------------------------


@pytest.mark.asyncio
async def test_subscriptions_follow_live_connections_and_prices_are_shared(
    make_simulator: SimulatorFactory,
) -> None:
    simulator = await make_simulator(rate=FAST_RATE)
    first = await connect_authenticated(simulator, "one")
    second = await connect_authenticated(simulator, "two")
    await subscribe(first, "AAPL$US", "quote")
    await subscribe(second, "AAPL$US", "tick")
    await subscribe(second, "9988$HK", "quote")
    assert simulator.subscriptions() == {"AAPL$US": {"quote", "tick"}, "9988$HK": {"quote"}}

    # Three AAPL trades on the second connection; the first (subscribed before) gets quotes for
    # each of them too.
    second_frames = await collect_data(
        second, lambda fs: sum(f["data"]["s"] == "AAPL.US" for f in fs) >= 3, "three AAPL ticks"
    )
    ticks_by_time = {f["data"]["t"]: f["data"]["ld"] for f in second_frames if f["data"]["s"] == "AAPL.US"}
    first_quotes = await collect_data(
        first, lambda fs: {f["data"]["t"] for f in fs} >= ticks_by_time.keys(), "their quotes"
    )
    quotes_by_time = {f["data"]["t"]: f["data"]["ld"] for f in first_quotes}
    shared = quotes_by_time.keys() & ticks_by_time.keys()
    assert len(shared) >= 3
    assert all(quotes_by_time[t] == ticks_by_time[t] for t in shared)

    await second.close()
    await simulator.wait_for(lambda s: s.subscriptions() == {"AAPL$US": {"quote"}}, timeout=TIMEOUT)
    assert simulator.connection_count == 1
    await first.close()
    await simulator.wait_for(lambda s: s.subscriptions() == {} and s.connection_count == 0, timeout=TIMEOUT)


@pytest.mark.asyncio
async def test_drop_connections_closes_everyone_and_allows_reconnect(
    make_simulator: SimulatorFactory,
) -> None:
    simulator = await make_simulator(rate=FAST_RATE)
    first = await connect_authenticated(simulator, "one")
    second = await connect_authenticated(simulator, "two")
    await subscribe(first, "AAPL$US", "quote")
    assert simulator.drop_connections() == 2
    assert simulator.connection_count == 0 and simulator.subscriptions() == {}
    for ws in (first, second):
        await assert_closed_by_server(ws, code=1001)
    async with await connect_authenticated(simulator, "one") as again:
        assert (await subscribe(again, "AAPL$US", "quote"))["code"] == 1
        assert await collect_data(again, at_least(1))
    assert simulator.drop_connections(code=4000) == 0


@pytest.mark.asyncio
async def test_slow_consumer_is_disconnected(make_simulator: SimulatorFactory) -> None:
    simulator = await make_simulator(rate=200.0, max_buffer=64 * 1024)
    _, writer = await raw_upgrade(simulator.port, "slow")
    symbols = ",".join(f"S{index}$US" for index in range(40))
    frame = json.dumps({"ac": "subscribe", "params": symbols, "types": "tick,quote,depth"}).encode()
    writer.write(masked_text_frame(frame))
    await writer.drain()
    await simulator.wait_for(lambda s: len(s.subscriptions()) == 40, timeout=TIMEOUT)
    # Never read: the kernel buffers fill, then the simulator's backlog, then it gives up on us.
    await simulator.wait_for(lambda s: s.connection_count == 0, timeout=TIMEOUT)
    writer.close()


async def raw_upgrade(port: int, token: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket client that reads nothing after the handshake, with a tiny receive window."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 16)
    writer.write(
        (
            f"GET /stock HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\ntoken: {token}\r\n\r\n"
        ).encode()
    )
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    return reader, writer


def masked_text_frame(payload: bytes) -> bytes:
    """One masked, final text frame (payload under 64 KiB), as a client must send it."""
    mask = b"\x01\x02\x03\x04"
    length = len(payload)
    if length < 126:
        header = bytes([0x81, 0x80 | length])
    else:
        header = bytes([0x81, 0x80 | 126]) + length.to_bytes(2, "big")
    return header + mask + bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))


@pytest.mark.asyncio
async def test_stop_is_idempotent_and_closes_clients() -> None:
    simulator = ItickSimulator(SimulatorConfig())
    with pytest.raises(RuntimeError):
        _ = simulator.port
    await simulator.start()
    ws = await connect_authenticated(simulator)
    await simulator.stop()
    await assert_closed_by_server(ws, code=1001)
    await simulator.stop()


# -- the market model ----------------------------------------------------------------------------------------


def price_path(model: MarketModel, symbol: str, count: int, start_ms: int = 1_731_689_400_000) -> list[Any]:
    return [model.next_tick(symbol, start_ms + step * 500).price for step in range(count)]


def test_same_seed_same_path_regardless_of_other_activity() -> None:
    reference = price_path(MarketModel(seed=7), "AAPL$US", 300)

    busy = MarketModel(seed=7)
    busy_path = []
    for step in range(300):
        busy.next_tick("TSLA$US", 1_731_689_400_000 + step * 500)
        busy_path.append(busy.next_tick("aapl.us", 1_731_689_400_000 + step * 500).price)
        busy.depth("AAPL$US")
        busy.kline("AAPL$US", 1)
    assert busy_path == reference
    assert price_path(MarketModel(seed=8), "AAPL$US", 300) != reference
    assert len(set(reference)) > 10


@pytest.mark.parametrize(
    ("symbol", "low", "high", "decimals"),
    [
        ("AAPL$US", 20, 500, 2),
        ("700$HK", 1, 600, 3),
        ("600519$SH", 5, 2000, 2),
        ("000001$SZ", 5, 2000, 2),
        ("7203$JP", 500, 20000, 0),
        ("EURUSD$GB", 1.0, 1.5, 5),
        ("BTCUSDT$BA", 1000, 200000, 2),
        ("XYZ9$US", 20, 500, 2),
        ("ABCD$JP", 500, 20000, 0),
    ],
)
def test_prices_sit_on_the_regional_grid(symbol: str, low: float, high: float, decimals: int) -> None:
    model = MarketModel(seed=3)
    for price in price_path(model, symbol, 200):
        assert low * 0.8 <= price <= high * 1.2
        if decimals == 0:
            assert isinstance(price, int)
        else:
            assert round(price, decimals) == price
    if symbol == "700$HK":
        assert all(math.isclose(p / 0.2, round(p / 0.2), abs_tol=1e-6) for p in price_path(model, symbol, 50))


def test_klines_aggregate_the_ticks_of_their_bar() -> None:
    model = MarketModel(seed=5)
    start = 1_731_660_030_000  # 30 s into a minute
    model.next_tick("AAPL$US", start)
    model.kline("AAPL$US", 1)
    ticks = [model.next_tick("AAPL$US", start + step * 1_000) for step in range(1, 120)]
    bar = model.kline("AAPL$US", 1)
    in_bar = [tick for tick in ticks if kline_open_time(1, tick.time_ms) == bar.open_time_ms]
    assert bar.open_time_ms % 60_000 == 0 and bar.close_time_ms == bar.open_time_ms + 60_000
    assert bar.open == in_bar[0].price and bar.close == in_bar[-1].price
    assert bar.high == max(t.price for t in in_bar) and bar.low == min(t.price for t in in_bar)
    assert bar.volume == sum(t.volume for t in in_bar)
    assert kline_open_time(9, 1_731_660_030_000) == 1_731_283_200_000  # Monday 2024-11-11 00:00 UTC
    assert kline_open_time(10, 1_731_660_030_000) == 1_730_419_200_000  # 2024-11-01 00:00 UTC


def test_a_new_day_rolls_open_previous_close_and_volume() -> None:
    model = MarketModel(seed=2)
    day_ms = 86_400_000
    for step in range(20):
        model.next_tick("MSFT$US", 20_000 * day_ms + step * 1_000)
    closing = model.quote("MSFT$US")
    tick = model.next_tick("MSFT$US", 20_001 * day_ms + 1_000)
    quote = model.quote("MSFT$US")
    assert quote.prev_close == closing.last
    assert quote.open == quote.high == quote.low == tick.price
    assert quote.volume == tick.volume
