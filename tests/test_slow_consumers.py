"""Slow consumers over real sockets (docs/protocol.md, "Slow consumers"): a client that stops
reading goes soft cap -> conflated -> closed 1013, while a client that reads keeps its full rate
and every sequence number."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from typing import Any

from websockets.asyncio.client import connect

from gatewaykit import TIMEOUT, Client, channel_of, start_gateway, start_simulator, wait_for_seqs, wait_until

SYMBOLS = [f"S{i:02d}$US" for i in range(20)]
TYPES = ["quote", "tick", "depth"]
NORMAL_CHANNELS = {f"{s}:{t}" for s in SYMBOLS[:2] for t in ("quote", "tick")}
LAG_TIMEOUT = 1.0
#: The gateway resets a closed client's socket if it has not drained within this (connection.py).
CLOSE_GRACE_S = 2.0


def masked(opcode: int, payload: bytes) -> bytes:
    """A client frame (masked), with the 16- or 64-bit extended length when needed."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 1 << 16:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def server_frames(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Unmasked server frames ``(opcode, payload)`` from a byte stream, and what is left over."""
    frames = []
    i = 0
    while len(data) - i >= 2:
        opcode, n = data[i] & 0x0F, data[i + 1] & 0x7F
        assert data[i] & 0x80, "fragmented server frame"
        assert not data[i + 1] & 0x80, "the server masked a frame"
        head = 2
        if n == 126:
            if len(data) - i < 4:
                break
            n, head = int.from_bytes(data[i + 2 : i + 4], "big"), 4
        elif n == 127:
            if len(data) - i < 10:
                break
            n, head = int.from_bytes(data[i + 2 : i + 10], "big"), 10
        if len(data) - i < head + n:
            break
        frames.append((opcode, data[i + head : i + head + n]))
        i += head + n
    return frames, data[i:]


def test_frame_helpers_round_trip() -> None:
    for n in (0, 125, 126, 70_000):
        frame = masked(0x1, b"x" * n)
        assert frame[1] & 0x80
        length = {0: n, 125: n, 126: 126, 70_000: 127}[n]
        assert frame[1] & 0x7F == length
    stream = bytes([0x81, 3]) + b"abc" + bytes([0x82, 126]) + (300).to_bytes(2, "big") + b"y" * 300 + b"\x88"
    frames, rest = server_frames(stream)
    assert frames == [(1, b"abc"), (2, b"y" * 300)] and rest == b"\x88"


async def raw_slow_client(port: int, rcvbuf: int = 4096) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket client on a socket with a small receive buffer (set before connecting, so the
    window is small from the start)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)), TIMEOUT)
    except BaseException:
        sock.close()
        raise
    reader, writer = await asyncio.open_connection(sock=sock, limit=16 * 1024)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert status.startswith(b"HTTP/1.1 101"), status
    return reader, writer


async def raw_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    return reader, writer


async def test_slow_reader_is_conflated_then_closed_while_others_keep_up() -> None:
    sim = await start_simulator(rate=50.0)
    gw = await start_gateway(
        sim,
        slow_consumer_soft_cap_bytes=64 * 1024,
        max_send_buffer_bytes=4 * 1024 * 1024,
        slow_consumer_lag_timeout=LAG_TIMEOUT,
    )
    reader_task: asyncio.Task[None] | None = None
    writer: asyncio.StreamWriter | None = None
    # The gateway's own clock readings of each pause and slow close: a loaded machine can delay
    # when the test sees them, never when the gateway acted. Pauses on the core's clock (wall
    # time, as its lag rule reads it), closes also on the event loop's (the reset timer's).
    paused_since: dict[object, float] = {}
    slow_closes: list[tuple[float, float, float, str]] = []  # (wall, monotonic, paused since, why)
    hub_paused, hub_close_slow = gw.hub.paused, gw.hub.close_slow

    def paused(conn: Any, now_paused: bool) -> None:
        if now_paused:
            paused_since.setdefault(conn, time.time())  # read before the core reads its own
        else:
            paused_since.pop(conn, None)
        hub_paused(conn, now_paused)

    def close_slow(conn: Any, why: str) -> None:
        slow_closes.append((time.time(), time.monotonic(), paused_since.get(conn, float("nan")), why))
        hub_close_slow(conn, why)

    gw.hub.paused = paused  # type: ignore[method-assign]
    gw.hub.close_slow = close_slow  # type: ignore[method-assign]
    try:
        normal = await Client.connect(gw)
        reply = await normal.request(
            {"action": "subscribe", "symbols": SYMBOLS[:2], "types": ["quote", "tick"]}
        )
        assert set(reply["channels"]) == NORMAL_CHANNELS
        seqs: dict[str, list[int]] = {ch: [] for ch in NORMAL_CHANNELS}
        others: list[dict[str, Any]] = []

        async def read_normal() -> None:
            while True:
                m = await normal.recv()
                if m["type"] == "stock_quote":
                    seqs[channel_of(m)].append(m["data"]["seq"])
                else:
                    others.append(m)

        reader_task = asyncio.create_task(read_normal())

        reader, writer = await raw_slow_client(gw.port)
        subscribe = json.dumps({"action": "subscribe", "symbols": SYMBOLS, "types": TYPES}).encode()
        assert len(subscribe) > 125  # needs the extended length
        writer.write(masked(0x1, subscribe))
        await wait_until(lambda: gw.dispatcher.channel_count == len(SYMBOLS) * len(TYPES), what="subscribed")
        assert gw.dispatcher.connection_count == 2

        # The slow client now reads nothing: its socket fills, the gateway conflates it ...
        await wait_until(
            lambda: gw.stats()["paused_connections"] >= 1 and gw.stats()["slow_conflations"] >= 1,
            what="conflation of the slow client",
        )
        received_at_pause = sum(map(len, seqs.values()))
        # ... and closes it once it has been over the soft cap for the lag timeout. (Not "still
        # open now": a stalled test may see the pause late; the gateway's readings below show the
        # order, and the time between.)
        await wait_until(lambda: gw.hub.counters.slow_consumers_closed == 1, what="slow close")
        [(closed_wall, closed_at, since, why)] = slow_closes
        # By the lag rule (not the hard cap), and not before the lag timeout: the gateway's own
        # readings of when it paused and closed the client (1 ms: the core counts whole ms).
        assert why == f"over the soft cap for {LAG_TIMEOUT:g}s", why
        assert closed_wall - since >= LAG_TIMEOUT - 0.002, "closed before the lag timeout"
        assert gw.dispatcher.stats()["conflated"] > 0

        # Read what the slow client was sent, at once: it ends with the 1013 close frame (if the
        # gateway reset the socket instead, that may only happen after the close grace period).
        data = bytearray()
        reset_after: float | None = None
        end = time.monotonic() + TIMEOUT  # a reset comes CLOSE_GRACE_S after the close at the latest
        while time.monotonic() < end:
            try:
                chunk = await asyncio.wait_for(reader.read(1 << 16), max(0.01, end - time.monotonic()))
            except ConnectionResetError:
                reset_after = time.monotonic() - closed_at
                break
            if not chunk:
                break
            data += chunk
        frames, rest = server_frames(bytes(data))
        if reset_after is not None:
            # Seen by the test after it happened, measured from when the gateway closed (its
            # own reading, on the clock of its reset timer): a stall can only make this longer.
            assert reset_after >= CLOSE_GRACE_S - 0.01, f"reset {reset_after:.2f}s after the close"
        else:
            assert frames, "nothing received"
            opcode, payload = frames[-1]
            assert opcode == 0x8, f"last frame has opcode {opcode}"
            assert rest == b"", "bytes after the close frame"
            assert int.from_bytes(payload[:2], "big") == 1013
            assert payload[2:].decode().startswith("slow_consumer:"), payload
        # What did arrive is in order per channel: conflation skips, it never repeats or reorders.
        last: dict[str, int] = {}
        texts = [p for op, p in frames if op == 0x1]
        assert [json.loads(t)["type"] for t in texts[:2]] == ["welcome", "success"]
        for payload in texts[2:]:
            m = json.loads(payload)
            assert m["type"] == "stock_quote", m
            ch = channel_of(m)
            assert m["data"]["seq"] > last.get(ch, 0), (ch, m["data"]["seq"], last.get(ch))
            last[ch] = m["data"]["seq"]
        assert len(last) > len(NORMAL_CHANNELS)

        # Memory bounded: the slow client and its channels are gone; the other one remains.
        await wait_until(lambda: gw.dispatcher.connection_count == 1, what="slow client forgotten")
        assert gw.stats()["connections"] == 1
        assert gw.stats()["paused_connections"] == 0
        assert set(gw.dispatcher.channels()) == NORMAL_CHANNELS

        # The client that reads kept up all along: every seq, and everything ingested. Updates
        # go on meanwhile (5 more on each channel, 50 in all), and it gets each of them: up to
        # what the gateway has numbered by then (how far behind it is at a given instant is the
        # machine's load, not the gateway's doing).
        channels = sorted(NORMAL_CHANNELS)
        await wait_for_seqs(gw, channels, more=5)
        await wait_until(lambda: all(len(seqs[ch]) >= 50 for ch in channels), what="50 updates on each")
        numbered = {ch: gw.processor.last_seq(ch) for ch in channels}
        await wait_until(
            lambda: all(seqs[ch][-1] >= numbered[ch] for ch in channels), what="the reader to catch up"
        )
        assert others == []
        assert sum(map(len, seqs.values())) - received_at_pause >= 20, "starved while the other was slow"
        for ch, values in seqs.items():
            assert len(values) >= 50, (ch, len(values))
            assert values == list(range(values[0], values[0] + len(values))), f"{ch}: gap or reorder"
            ingested = numbered[ch] - values[0] + 1
            assert len(values) >= ingested, (ch, len(values), ingested)
        reader_task.cancel()
        await asyncio.gather(reader_task, return_exceptions=True)
        assert (await normal.request({"action": "ping"}))["type"] == "pong"
        await normal.close()
    finally:
        if reader_task is not None:
            reader_task.cancel()
        if writer is not None:
            writer.close()
        await gw.stop()
        await sim.stop()


async def test_client_flooding_requests_without_reading_is_dropped() -> None:
    gw = await start_gateway(
        None,
        simulator_rate=0.0,
        max_send_buffer_bytes=256 * 1024,
        slow_consumer_soft_cap_bytes=64 * 1024,
        upstream_symbols_per_connection=500,  # big replies: 500 symbols, all this client's
        max_channels_per_connection=1000,
        client_command_rate=1e6,  # this is about replies backing up, not the command rate limit
        client_command_burst=10_000,
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
