"""Batch mode over real sockets (docs/protocol.md, "Batch mode"): one conflated frame per interval,
ticks kept in order up to ``batch_tick_cap``, ``set_mode`` both ways, and one encoding shared by
connections with the same subscriptions."""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
from collections.abc import AsyncIterator, Callable
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


async def collect_batches(
    c: Client, count: int, done: Callable[[list[dict[str, Any]]], bool] | None = None
) -> list[tuple[float, Any]]:
    """``(receive time, message)`` of every frame until ``count`` batches have come (the first
    may take up to two intervals after a subscription change) and ``done(batches)`` holds: as
    many as a test needs, however long a loaded machine takes to send them."""
    out: list[tuple[float, Any]] = []
    deadline = time.monotonic() + TIMEOUT
    while True:
        batches = [m for _, m in out if m["type"] == "batch"]
        if len(batches) >= count and (done is None or done(batches)):
            return out
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            at, raw = await recv_raw(c.ws, left)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {count} batches; got {len(batches)}") from None
        out.append((at, json.loads(raw)))


def consecutive(seqs: list[int]) -> bool:
    return seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else True


def only_batches(frames: list[tuple[float, Any]]) -> list[tuple[float, dict[str, Any]]]:
    return [(at, m) for at, m in frames if m["type"] == "batch"]


async def test_batches_conflate_quotes_and_keep_every_tick(gw: Gateway) -> None:
    c = await Client.connect(gw, "/?mode=batch&interval_ms=500")
    reply = await c.request({"action": "subscribe", "symbols": SYMBOLS, "types": ["quote", "tick"]})
    assert reply["type"] == "success"

    def ticks_of(batches: list[dict[str, Any]], channel: str) -> int:
        return sum(entry_channel(e) == channel for b in batches for e in b["updates"])

    # Six intervals' worth, and 20 ticks of each symbol (about 20 per interval come).
    frames = await collect_batches(c, 6, lambda bs: all(ticks_of(bs, f"{s}:tick") >= 20 for s in SYMBOLS))
    # Batch mode: nothing arrives as an immediate push.
    assert [m for _, m in frames if m["type"] != "batch"] == []
    batches = [m for _, m in only_batches(frames)]
    assert len(batches) >= 6, len(batches)

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
    batches = only_batches(await collect_batches(c, 10))
    # The first batch may sit on the grid of the connection's earlier (empty) subscription set;
    # from the second one on they come one interval apart.
    batches = batches[1:]
    assert len(batches) >= 9, len(batches)
    # The batches' own stamps are the gateway's clock as it sent each one. A batch that a stalled
    # machine sent late lengthens the gap before it and shortens the one after by as much, so
    # the median gap stays the interval the gateway keeps (within 10 %) through stalls, even one
    # that skips an interval. (Not every gap: how late a batch goes out is the machine's doing.)
    stamps = [m["timestamp"] for _, m in batches]
    stamp_gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert 450 <= statistics.median(stamp_gaps) <= 550, stamp_gaps
    # As the client receives them: the same, by the same reasoning.
    recv_gaps = [(b - a) * 1000 for (a, _), (b, _) in itertools.pairwise(batches)]
    assert 450 <= statistics.median(recv_gaps) <= 550, recv_gaps
    # One batch per interval: never two in quick succession. Two for one interval would come a
    # timer tick (10 ms) or so apart; the bound is a tenth of the interval because the batch
    # after a late one is on time, so a gap is short by as much as the batch before it was late.
    assert min(stamp_gaps) >= 50, stamp_gaps
    await c.close()


async def test_tick_cap_drops_the_oldest_and_counts_them() -> None:
    sim = await start_simulator(rate=RATE)
    gw = await start_gateway(sim, batch_tick_cap=3)
    try:
        c = await Client.connect(gw, "/?mode=batch&interval_ms=500")
        await c.request({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote", "tick"]})
        # Five intervals' worth, three of them capped (about 20 ticks come per interval).
        frames = await collect_batches(c, 5, lambda bs: sum("dropped_ticks" in b for b in bs) >= 3)
        batches = [m for _, m in only_batches(frames)]
        assert len(batches) >= 5, len(batches)
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
        # About 20 ticks per interval against a cap of 3: full intervals drop some. (Not each
        # one: the interval after a batch that a stalled machine sent late is short.)
        assert capped >= 3, batches
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
    frames = await c.collect_until(lambda ms: len(ms) >= 3, what="three batches")
    assert [m["type"] for m in frames if m["type"] != "batch"] == [], "immediate push after batch mode"
    for m in frames:
        channels = [entry_channel(e) for e in m["updates"]]
        assert channels == ["AAPL$US:quote"], channels

    reply = await c.request({"action": "set_mode", "mode": "immediate", "id": "m2"})
    assert reply == {"type": "success", "action": "set_mode", "mode": "immediate", "id": "m2"}
    frames = await c.collect_until(lambda ms: len(ms) >= 10, what="ten pushes")  # 40/s, each one pushed again
    assert frames and all(m["type"] == "stock_quote" for m in frames), [m["type"] for m in frames]
    seqs = [m["data"]["seq"] for m in frames]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
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
    # Nothing changed: still immediate pushes (in batch mode, the next frames would be batches).
    await c.push()
    frames = await c.collect_until(lambda ms: len(ms) >= 5, what="five more pushes")
    assert all(m["type"] == "stock_quote" for m in frames), frames
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

    got: list[dict[int, bytes]] = [{} for _ in members]

    async def frames_of(c: Client, out: dict[int, bytes]) -> None:
        while True:
            raw = await c.ws.recv(decode=False)
            message = json.loads(raw)
            if message["type"] == "batch":
                assert message["timestamp"] not in out, "two batches with one timestamp"
                out[message["timestamp"]] = raw

    readers = [asyncio.create_task(frames_of(c, out)) for c, out in zip(members, got, strict=True)]
    try:
        await wait_until(
            lambda: len(set(got[0]).intersection(*got[1:])) >= 6 or any(r.done() for r in readers),
            what="six batches all three members got",
        )
    finally:
        for r in readers:
            r.cancel()
        done = await asyncio.gather(*readers, return_exceptions=True)
    assert all(isinstance(e, asyncio.CancelledError) for e in done), done  # no reader failed
    common = sorted(set(got[0]).intersection(*got[1:]))
    assert len(common) >= 6, [sorted(g) for g in got]
    identical = [t for t in common if len({g[t] for g in got}) == 1]
    # The first batch may differ (each member had its own pending updates before the first
    # deadline on the shared grid); after that every batch is one encoding for all three: the
    # same bytes, server stamp included, so built and written to all three in one flush. (When
    # each client gets round to reading it is the machine's doing, so not timed here.)
    assert len(identical) >= len(common) - 1, (len(identical), len(common))
    stats = gw.dispatcher.stats()
    assert stats["batches"] >= 3 * len(identical)
    assert stats["batch_encodes"] < stats["batches"], stats
    assert stats["batch_encodes"] <= stats["batches"] - 2 * len(identical), stats
    for c in members:
        await c.close()
    await wait_until(lambda: gw.stats()["connections"] == 0, what="members gone")
