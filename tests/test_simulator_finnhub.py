"""The Finnhub-style simulator (a backup provider's protocol), checked with a real WebSocket
client and decoded by the core's own Finnhub decoder into the common model."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from gatewaykit import TIMEOUT, wait_until
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


async def frames_until(
    ws: Any, done: Callable[[list[dict[str, Any]]], object], what: str = "frames"
) -> list[dict[str, Any]]:
    """Every message until ``done(messages so far)`` holds (however long a loaded machine takes)."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + TIMEOUT
    while not done(out):
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            out.append(json.loads(await asyncio.wait_for(ws.recv(), left)))
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}; got {out[-5:]}") from None
    return out


def traded(messages: list[dict[str, Any]]) -> set[str]:
    return {t["s"] for m in messages if m["type"] == "trade" for t in m["data"]}


def until_error(messages: list[dict[str, Any]]) -> bool:
    return bool(messages) and messages[-1]["type"] == "error"


async def frames_for(ws: Any, seconds: float) -> list[dict[str, Any]]:
    """Every message for ``seconds``: only for what must NOT come (a fixed window)."""
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
        got = await frames_until(ws, lambda ms: len(traded(ms)) >= 2, "trades of both")
        trades = [m for m in got if m["type"] == "trade"]
        assert trades and traded(trades) == {"AAPL", "700.HK"}
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
        # A barrier: a bad message's error comes after the unsubscribe was handled (one
        # connection, in order); what came before it may still have had AAPL's trades.
        await ws.send("{nope")
        await frames_until(ws, until_error, "the barrier's error")
        later = await frames_until(
            ws, lambda ms: sum(m["type"] == "trade" for m in ms) >= 5, "five more trade messages"
        )
        assert traded(later) == {"700.HK"}


async def test_tokens_limits_errors_and_heartbeats(sim: FinnhubSimulator) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(sim.url + "?token=wrong"):
            pass
    assert refused.value.response.status_code == 401
    async with connect(sim.url + "?token=key") as ws:
        first = await frames_until(ws, lambda ms: len(ms) >= 1, "a heartbeat")
        assert [m["type"] for m in first] == ["ping"]  # idle: heartbeats
        await ws.send("{nope")
        # (Heartbeats may come before it, being idle.)
        got = await frames_until(ws, until_error, "the error")
        assert {m["type"] for m in got[:-1]} <= {"ping"}, got
        assert got[-1] == {"type": "error", "msg": "Invalid message"}
        for symbol in ("A", "B", "C", "D"):
            await ws.send(json.dumps({"type": "subscribe", "symbol": symbol}))
        # A barrier: a bad message's error comes after the four subscribes were handled.
        await ws.send("{nope")
        got = await frames_until(ws, lambda ms: {"type": "error", "msg": "Invalid message"} in ms, "barrier")
        errors = [m for m in got if m["type"] == "error"]
        assert errors == [
            {"type": "error", "msg": "Subscribing to too many symbols"},
            {"type": "error", "msg": "Invalid message"},
        ]
        assert sim.subscriptions() == {"A", "B", "C"}
        sim.freeze()
        # What was already on its way: all of it has left the simulator's sockets (on loopback,
        # it is then in ours) ...
        await wait_until(
            lambda: all(
                s.transport.underlying_transport.get_write_buffer_size() == 0
                for s in list(sim.sessions)
                if s.transport is not None
            ),
            what="the simulator's buffers to drain",
        )
        await frames_for(ws, 0.2)  # ... read it
        # Frozen: nothing at all. (An absence: a frozen provider answers nothing, so there is no
        # barrier to wait for; a fixed window, and a vacuous pass if the machine stalls it.)
        assert await frames_for(ws, 0.4) == []
        sim.thaw()
        await frames_until(ws, lambda ms: any(m["type"] == "trade" for m in ms), "trades again")
