"""Batch mode over real sockets (docs/protocol.md, "Batch mode"): one conflated frame per interval,
ticks kept in order up to ``batch_tick_cap``, ``set_mode`` both ways, and one encoding shared by
connections with the same subscriptions."""

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
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from gatewaykit import TIMEOUT, Client, start_gateway, start_simulator, wait_until
from tickgate.gateway import Gateway

SYMBOLS = ["AAPL$US", "MSFT$US"]
#: Updates per second per symbol and type: about 20 of each per 500 ms interval.
RATE = 40.0


@pytest_asyncio.fixture
async def gw() -> AsyncIterator[Gateway]:
    sim = await start_simulator(rate=RATE)
    gateway = await start_gateway(sim)
    yield gateway
    await gateway.stop()
    await sim.stop()


def entry_channel(entry: dict[str, Any]) -> str:
    kind = entry["klineCycle"] if entry["type"] == "kline" else entry["type"]
    return f"{entry['symbol']}:{kind}"


async def recv_raw(ws: Any, timeout: float) -> tuple[float, str]:
    """(receive time, text) of the next frame."""
    data = await asyncio.wait_for(ws.recv(), timeout)
    return time.monotonic(), data


async def collect_batches(c: Client, seconds: float, first_timeout: float = 3.0) -> list[tuple[float, Any]]:
    """Waits for the first batch frame (it may take up to two intervals after a subscription
    change), then collects ``(receive time, message)`` of every frame for ``seconds``."""
    out: list[tuple[float, Any]] = []
    deadline = time.monotonic() + first_timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no batch within {first_timeout}s"
        at, raw = await recv_raw(c.ws, left)
        message = json.loads(raw)
        out.append((at, message))
        if message["type"] == "batch":
            break
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        try:
            at, raw = await recv_raw(c.ws, left)
        except TimeoutError:
            break
        out.append((at, json.loads(raw)))
    return out


def consecutive(seqs: list[int]) -> bool:
    return seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else True


def only_batches(frames: list[tuple[float, Any]]) -> list[tuple[float, dict[str, Any]]]:
    return [(at, m) for at, m in frames if m["type"] == "batch"]


async def test_batches_conflate_quotes_and_keep_every_tick(gw: Gateway) -> None:
    c = await Client.connect(gw, "/?mode=batch&interval_ms=500")
    reply = await c.request({"action": "subscribe", "symbols": SYMBOLS, "types": ["quote", "tick"]})
    assert reply["type"] == "success"
    frames = await collect_batches(c, 2.5)
    # Batch mode: nothing arrives as an immediate push.
    assert [m for _, m in frames if m["type"] != "batch"] == []
    batches = [m for _, m in only_batches(frames)]
    assert len(batches) >= 4, len(batches)

    quote_channels = {f"{s}:quote" for s in SYMBOLS}
    tick_channels = {f"{s}:tick" for s in SYMBOLS}
    last_quote: dict[str, int] = {}
    ticks: dict[str, list[int]] = {ch: [] for ch in tick_channels}
    gaps_seen = 0
    for batch in batches:
        assert set(batch) >= {"type", "updates", "timestamp"}
        assert isinstance(batch["timestamp"], int) and batch["timestamp"] > 0
        assert "dropped_ticks" not in batch  # far under the default cap of 1000
        assert batch["updates"], "an empty batch was sent"
        kinds = [e["type"] for e in batch["updates"]]
        # Conflated entries first, then the ticks.
        first_tick = kinds.index("tick") if "tick" in kinds else len(kinds)
        assert all(k == "tick" for k in kinds[first_tick:]), kinds
        seen_here: set[str] = set()
        for entry in batch["updates"]:
            assert {"symbol", "type", "seq"} <= set(entry), entry
            assert entry["symbol"] in SYMBOLS
            channel = entry_channel(entry)
            if entry["type"] == "tick":
                assert channel in tick_channels
                ticks[channel].append(entry["seq"])
                continue
            assert channel in quote_channels
            assert channel not in seen_here, f"{channel} twice in one batch"
            seen_here.add(channel)
            if channel in last_quote:
                assert entry["seq"] > last_quote[channel], (channel, entry["seq"], last_quote[channel])
                gaps_seen += entry["seq"] - last_quote[channel] > 1
            last_quote[channel] = entry["seq"]
    assert set(last_quote) == quote_channels
    # About 20 quotes per channel per interval: the latest is sent, its seq showing the skipped ones.
    assert gaps_seen >= 2, last_quote
    assert gw.dispatcher.stats()["conflated"] > 0
    for channel, seqs in ticks.items():
        assert len(seqs) >= 20, (channel, len(seqs))
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{channel}: tick lost or out of order"
    await c.close()


async def test_batch_interval_is_kept_within_ten_percent(gw: Gateway) -> None:
    c = await Client.connect(gw, "/?mode=batch&interval_ms=500")
    await c.request({"action": "subscribe", "symbols": SYMBOLS, "types": ["quote"]})
    batches = only_batches(await collect_batches(c, 4.2))
    # The first batch may sit on the grid of the connection's earlier (empty) subscription set;
    # from the second one on they come one interval apart.
    batches = batches[1:]
    assert len(batches) >= 7, len(batches)
    stamps = [m["timestamp"] for _, m in batches]
    stamp_gaps = [b - a for a, b in itertools.pairwise(stamps)]
    recv_gaps = [(b - a) * 1000 for (a, _), (b, _) in itertools.pairwise(batches)]
    assert 450 <= statistics.median(stamp_gaps) <= 550, stamp_gaps
    assert 450 <= statistics.median(recv_gaps) <= 550, recv_gaps
    within = [g for g in stamp_gaps if 450 <= g <= 550]
    assert len(within) >= 0.8 * len(stamp_gaps), stamp_gaps
    within = [g for g in recv_gaps if 450 <= g <= 550]
    assert len(within) >= 0.7 * len(recv_gaps), recv_gaps
    # One batch per interval: never two in quick succession.
    assert min(stamp_gaps) >= 400, stamp_gaps
    await c.close()


async def test_tick_cap_drops_the_oldest_and_counts_them() -> None:
    sim = await start_simulator(rate=RATE)
    gw = await start_gateway(sim, batch_tick_cap=3)
    try:
        c = await Client.connect(gw, "/?mode=batch&interval_ms=500")
        await c.request({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote", "tick"]})
        batches = [m for _, m in only_batches(await collect_batches(c, 2.2))]
        assert len(batches) >= 4, len(batches)
        last_tick: int | None = None
        capped = 0
        for batch in batches:
            seqs = [e["seq"] for e in batch["updates"] if e["type"] == "tick"]
            quotes = [e for e in batch["updates"] if e["type"] == "quote"]
            assert len(quotes) <= 1
            assert len(seqs) <= 3, seqs
            # The ticks kept are the newest, in order, with no hole between them.
            assert consecutive(seqs), seqs
            dropped = batch.get("dropped_ticks", 0)
            if dropped:
                assert dropped > 0 and len(seqs) == 3, batch
                capped += 1
            if last_tick is not None and seqs:
                # Every tick since the previous batch is either here or counted as dropped.
                assert seqs[0] == last_tick + dropped + 1, (last_tick, dropped, seqs)
            if seqs:
                last_tick = seqs[-1]
        # About 20 ticks per interval against a cap of 3: every full interval drops some.
        assert capped >= len(batches) - 2, batches
        assert gw.dispatcher.stats()["ticks_dropped"] > 0
        await c.close()
    finally:
        await gw.stop()
        await sim.stop()


async def test_set_mode_to_batch_and_back(gw: Gateway) -> None:
    c = await Client.connect(gw)
    await c.request({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]})
    await c.push()
    reply = await c.request({"action": "set_mode", "mode": "batch", "interval_ms": 200})
    assert reply == {"type": "success", "action": "set_mode", "mode": "batch", "interval_ms": 200}
    frames = await c.collect(1.2)
    assert [m["type"] for m in frames if m["type"] != "batch"] == [], "immediate push after batch mode"
    assert len(frames) >= 3
    for m in frames:
        channels = [entry_channel(e) for e in m["updates"]]
        assert channels == ["AAPL$US:quote"], channels

    reply = await c.request({"action": "set_mode", "mode": "immediate", "id": "m2"})
    assert reply == {"type": "success", "action": "set_mode", "mode": "immediate", "id": "m2"}
    frames = await c.collect(0.6)
    assert frames and all(m["type"] == "stock_quote" for m in frames), [m["type"] for m in frames]
    seqs = [m["data"]["seq"] for m in frames]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert len(seqs) >= 10  # 40/s, each one pushed again
    await c.close()


@pytest.mark.parametrize(
    "request_",
    [
        {"action": "set_mode", "mode": "turbo"},
        {"action": "set_mode", "mode": "batch", "interval_ms": 10},
        {"action": "set_mode", "mode": "batch", "interval_ms": 60_001},
        {"action": "set_mode", "mode": "batch", "interval_ms": -1},
    ],
)
async def test_set_mode_refuses_bad_modes_and_intervals(gw: Gateway, request_: dict[str, Any]) -> None:
    c = await Client.connect(gw)
    await c.request({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]})
    err = await c.request({**request_, "id": 9})
    assert err["type"] == "error" and err["code"] == "invalid_mode" and err["id"] == 9, err
    assert err["msg"]
    # Nothing changed: still immediate pushes.
    await c.push(timeout=2)
    assert all(m["type"] == "stock_quote" for m in await c.collect(0.3))
    await c.close()


@pytest.mark.parametrize(
    "query", ["?mode=batch&interval_ms=5", "?mode=turbo", "?mode=batch&interval_ms=abc", "?interval_ms=70000"]
)
async def test_bad_mode_in_the_url_is_refused_with_400(gw: Gateway, query: str) -> None:
    with pytest.raises(InvalidStatus) as info:
        await connect(gw.url + query, open_timeout=TIMEOUT, ping_interval=None)
    assert info.value.response.status_code == 400
    assert gw.stats()["connections"] == 0


async def test_same_subscriptions_share_one_encoded_batch(gw: Gateway) -> None:
    members = [await Client.connect(gw, "/?mode=batch&interval_ms=200") for _ in range(3)]
    for c in members:
        reply = await c.request({"action": "subscribe", "symbols": SYMBOLS, "types": ["quote", "tick"]})
        assert reply["type"] == "success"

    async def frames_of(c: Client) -> dict[int, tuple[float, bytes]]:
        out: dict[int, tuple[float, bytes]] = {}
        end = time.monotonic() + 2.0
        while (left := end - time.monotonic()) > 0:
            try:
                raw = await asyncio.wait_for(c.ws.recv(decode=False), left)
            except TimeoutError:
                break
            message = json.loads(raw)
            if message["type"] == "batch":
                assert message["timestamp"] not in out, "two batches with one timestamp"
                out[message["timestamp"]] = (time.monotonic(), raw)
        return out

    got = await asyncio.gather(*(frames_of(c) for c in members))
    common = sorted(set(got[0]).intersection(*got[1:]))
    assert len(common) >= 5, [sorted(g) for g in got]
    identical = [t for t in common if len({g[t][1] for g in got}) == 1]
    # The first batch may differ (each member had its own pending updates before the first
    # deadline on the shared grid); after that every batch is one encoding for all three.
    assert len(identical) >= len(common) - 1, (len(identical), len(common))
    for t in identical:
        arrivals = [g[t][0] for g in got]
        assert max(arrivals) - min(arrivals) < 0.25, arrivals
    stats = gw.dispatcher.stats()
    assert stats["batches"] >= 3 * len(identical)
    assert stats["batch_encodes"] < stats["batches"], stats
    assert stats["batch_encodes"] <= stats["batches"] - 2 * len(identical), stats
    for c in members:
        await c.close()
    await wait_until(lambda: gw.stats()["connections"] == 0, what="members gone")
