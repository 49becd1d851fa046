"""Fuzzing: random and malformed input at the client protocol and at the core's decoder never
crashes anything and never costs anyone else their data.

- hypothesis drives bytes and near-valid requests through the command parser and the edge's
  command handling, and bytes and near-valid provider frames through the core's decoder (each
  of the three provider protocols): the only outcomes allowed are a result, a catalogued
  error (never ``internal``), or ``DecodeError``.
- a real gateway, one client throwing 10,000 malformed or oversize frames at it while another
  client receives every update of its channels, with no seq missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gatewaykit import Client, start_gateway, wait_until
from test_commands import Setup
from tickgate._core import DecodeError, FeedProcessor
from tickgate.edge import commands
from tickgate.edge.replies import ErrorReply
from tickgate.errors import ErrorCode

from frames import DEPTH, QUOTE, RECV_MS, TICK

FUZZ = settings(max_examples=int(os.environ.get("TICKGATE_FUZZ_EXAMPLES", "300")), deadline=None)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
#: Requests that look almost right: a known action with fields of any shape.
near_requests = st.fixed_dictionaries(
    {"action": st.sampled_from([*commands.ACTIONS, "Subscribe", "", "x" * 100])},
    optional={
        "symbols": json_values | st.lists(st.sampled_from(["AAPL$US", "700.HK", "$$", "", "a" * 40])),
        "types": json_values | st.lists(st.sampled_from(["quote", "tick", "kline@1", "kline@99", ""])),
        "id": json_values,
        "mode": json_values,
        "interval_ms": json_values,
        "session": json_values,
        "epoch": json_values,
        "last_seq": json_values,
        "token": json_values,
    },
)


@FUZZ
@given(payload=st.binary(max_size=512) | near_requests.map(lambda r: json.dumps(r).encode()))
def test_any_client_bytes_are_a_command_or_a_catalogued_error(payload: bytes) -> None:
    for parse in (commands.parse_json, commands.parse_proto):
        try:
            parse(payload)
        except commands.ProtocolError as e:
            assert e.code in set(ErrorCode) and e.code is not ErrorCode.INTERNAL


@FUZZ
@given(requests=st.lists(near_requests, min_size=1, max_size=8))
def test_the_edge_answers_every_request_and_never_with_internal(requests: list[dict[str, Any]]) -> None:
    async def run() -> None:
        env = Setup(client_command_rate=1e6, client_command_burst=10_000)
        try:
            conn = env.connect()
            for request in requests:
                payload = json.dumps(request).encode()
                reply, _then = commands.handle(payload, False, conn, env.hub)  # type: ignore[arg-type]
                if isinstance(reply, ErrorReply):
                    assert reply.code != ErrorCode.INTERNAL, (request, reply)
        finally:
            env.close()

    asyncio.run(run())


def _mutations(frame: bytes) -> st.SearchStrategy[bytes]:
    """A valid provider frame with bytes flipped, cut short, or a field set to any JSON value."""
    doc = json.loads(frame)

    def replace_field(key: str, value: Any) -> bytes:
        data = dict(doc["data"]) if isinstance(doc.get("data"), dict) else {}
        data[key] = value
        return json.dumps({**doc, "data": data}).encode()

    keys = sorted(doc["data"]) if isinstance(doc.get("data"), dict) else ["s"]
    flipped = st.tuples(st.integers(0, len(frame) - 1), st.integers(0, 255)).map(
        lambda p: frame[: p[0]] + bytes([p[1]]) + frame[p[0] + 1 :]
    )
    cut = st.integers(0, len(frame)).map(lambda n: frame[:n])
    return flipped | cut | st.builds(replace_field, st.sampled_from(keys), json_values)


provider_frames = (
    st.binary(max_size=1024)
    | json_values.map(lambda v: json.dumps(v).encode())
    | _mutations(QUOTE)
    | _mutations(TICK)
    | _mutations(DEPTH)
)


@FUZZ
@given(frame=provider_frames, provider=st.sampled_from(["itick", "finnhub", "alpaca"]))
def test_the_core_decoder_takes_any_frame_or_refuses_it_cleanly(frame: bytes, provider: str) -> None:
    core = FeedProcessor("itick")
    try:
        updates, _controls = core.ingest(frame, RECV_MS, provider=provider)
    except DecodeError as e:
        assert str(e)
        return
    for update in updates:
        assert update.seq >= 1 and update.channel


# -- end to end ---------------------------------------------------------------------------------

MALFORMED = [
    b"{",
    b"\xff\xfe\x00",
    b"[]",
    b'{"action":1}',
    b'{"action":"subscribe","symbols":[{"x":1}]}',
    b'{"action":"subscribe","symbols":["$$$"]}',
    b'{"action":"nope"}',
    b'{"action":"set_mode","mode":"batch","interval_ms":-1}',
    b'{"action":"resume","session":"x","last_seq":{"a":"b"}}',
    b"[" * 5000 + b"]" * 5000,
    b'{"action":"subscribe","symbols":"' + b"A$US," * 3000 + b'"}',
]
FRAMES = 10_000
OVERSIZE_EVERY = 100


async def test_one_client_throwing_10000_bad_frames_costs_another_nothing() -> None:
    gw = await start_gateway(
        None,
        simulator_rate=50.0,
        max_message_bytes=16 * 1024,
        client_command_rate=1e6,  # every frame is parsed, not just rate-limited
        client_command_burst=100_000,
    )
    rng = random.Random(7)
    channels = ["AAPL$US:quote", "AAPL$US:tick", "700$HK:depth"]
    seqs: dict[str, list[int]] = {c: [] for c in channels}
    try:
        watcher = await Client.connect(gw)
        request = {
            "action": "subscribe",
            "symbols": ["AAPL$US", "700$HK"],
            "types": ["quote", "tick", "depth"],
        }
        assert (await watcher.request(request))["type"] == "success"

        async def watch() -> None:
            while True:
                message = await watcher.recv(timeout=10)
                if message.get("type") == "stock_quote":
                    data = message["data"]
                    seqs.setdefault(f"{data['symbol']}:{data['type']}", []).append(data["seq"])

        watching = asyncio.create_task(watch())
        sent = closes = errors = 0
        while sent < FRAMES:
            async with connect(gw.url, max_size=None, ping_interval=None, close_timeout=1) as bad:

                async def drain(ws: Any = bad) -> None:
                    nonlocal errors
                    with contextlib.suppress(ConnectionClosed):
                        async for message in ws:
                            errors += '"type":"error"' in str(message)

                draining = asyncio.create_task(drain())
                try:
                    while sent < FRAMES:
                        sent += 1
                        if sent % OVERSIZE_EVERY == 0:
                            await bad.send(b"x" * (gw.config.max_message_bytes + 1))
                            break
                        frame = (
                            rng.choice(MALFORMED)
                            if rng.random() < 0.7
                            else rng.randbytes(rng.randint(1, 300))
                        )
                        await bad.send(frame if rng.random() < 0.5 else frame.decode("latin-1"))
                except ConnectionClosed:
                    pass
                await asyncio.wait_for(draining, 10)  # the server closes it: 1009 for the oversize one
                if bad.close_code == 1009:
                    closes += 1
        assert closes == FRAMES // OVERSIZE_EVERY
        assert errors >= FRAMES * 0.9, errors  # each bad frame answered with an error reply
        # The watcher gets every update of its channels up to what the gateway has numbered now:
        # in order, none missing.
        targets = {c: gw.processor.last_seq(c) for c in channels}
        await wait_until(lambda: all(seqs[c] and seqs[c][-1] >= targets[c] for c in channels), 10, "catch-up")
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        for channel in channels:
            got = seqs[channel]
            assert got == list(range(got[0], got[0] + len(got))), channel
        assert len(gw.hub.connections) == 1
        await watcher.close()
    finally:
        await gw.stop()
