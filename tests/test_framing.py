"""Strict RFC 6455 framing from clients: reserved bits with no extension, a data frame inside
an unfinished fragmented message, and a continuation with nothing to continue each close the
connection with 1002; a well-formed fragmented request is answered. Raw frames on a real socket."""

from __future__ import annotations

import asyncio
import os

import pytest

from gatewaykit import start_gateway
from test_slow_consumers import raw_client, server_frames


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    mask = os.urandom(4)
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    return bytes([first, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def close_code(reader: asyncio.StreamReader) -> int | None:
    data = b""
    while True:
        chunk = await asyncio.wait_for(reader.read(65536), 5)
        if not chunk:
            return None
        data += chunk
        frames, _ = server_frames(data)
        for opcode, payload in frames:
            if opcode == 0x8:
                return int.from_bytes(payload[:2], "big")


@pytest.mark.parametrize(
    "frames",
    [
        [frame(0x1, b'{"action":"ping"}', rsv1=True)],
        [frame(0x0, b'{"action":"ping"}')],
        [frame(0x1, b'{"action":', fin=False), frame(0x1, b'"ping"}')],
    ],
    ids=["rsv1-without-extension", "stray-continuation", "data-frame-inside-fragmented-message"],
)
async def test_framing_violations_close_with_1002(frames: list[bytes]) -> None:
    gw = await start_gateway(None, simulator_rate=0.0)
    try:
        reader, writer = await raw_client(gw.port)
        writer.write(b"".join(frames))
        assert await close_code(reader) == 1002
        writer.close()
    finally:
        await gw.stop()


async def test_a_fragmented_request_is_answered() -> None:
    gw = await start_gateway(None, simulator_rate=0.0)
    try:
        reader, writer = await raw_client(gw.port)
        writer.write(frame(0x1, b'{"action":', fin=False) + frame(0x0, b'"ping","id":7}'))
        data = b""
        while b'"pong"' not in data:
            data += await asyncio.wait_for(reader.read(65536), 5)
        texts = [p for op, p in server_frames(data)[0] if op == 0x1]
        assert any(b'"type":"pong"' in t and b'"id":7' in t for t in texts)
        writer.close()
    finally:
        await gw.stop()
