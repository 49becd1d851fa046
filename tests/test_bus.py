"""The local bus between an ingest and edge processes, over a real Unix socket in one event
loop: interest is ref-counted across edges, each update reaches only the edges that hold a
receiver of it, as the core's encodings (nothing re-encoded), and a dead or stuck edge costs
only itself."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gatewaykit import wait_until
from tickgate import DecodeError, FeedProcessor
from tickgate._core import pack_updates, unpack_updates
from tickgate.bus.base import FeedState, IngestState
from tickgate.bus.client import BusClient
from tickgate.bus.server import BusServer
from tickgate.bus.wire import BusProtocolError, Kind, Reader, message
from tickgate.upstream.pool import SubscriptionPool

from frames import QUOTE, RECV_MS, T0, TICK, quote, tick


class RecordingEdge:
    """An ``EdgeSink`` that keeps what the bus delivers."""

    def __init__(self) -> None:
        self.updates: list[Any] = []
        self.refused: list[tuple[list[str], str]] = []
        self.states: list[IngestState] = []
        self.feeds: list[FeedState] = []
        self.channels: list[str] = []

    def publish(self, updates: list[Any]) -> None:
        self.updates.extend(updates)

    def publish_packed(self, record: bytes) -> None:
        self.updates.extend(unpack_updates(record))

    def on_refused(self, channels: list[str], reason: str) -> None:
        self.refused.append((channels, reason))

    def on_ingest(self, state: IngestState) -> None:
        self.states.append(state)

    def on_feed(self, state: FeedState) -> None:
        self.feeds.append(state)


@pytest.fixture
async def bus() -> AsyncIterator[tuple[BusServer, SubscriptionPool]]:
    with tempfile.TemporaryDirectory() as tmp:
        pool = SubscriptionPool()
        server = BusServer(
            os.path.join(tmp, "bus.sock"),
            pool,
            "epoch-1",
            lambda: {"channels": len(pool.channels())},
            buffer_bytes=1 << 20,
            view_interval_s=0.05,
        )
        await server.start()
        yield server, pool
        await server.stop()


async def _join(
    server: BusServer, name: str, channels: list[str] | None = None
) -> tuple[BusClient, RecordingEdge]:
    edge = RecordingEdge()
    edge.channels = channels or []
    client = BusClient(
        server.path, name, edge, lambda: edge.channels, lambda: {"connections": 1}, stats_interval_s=0.05
    )
    client.start()
    await wait_until(lambda: client.joined, what=f"{name} to join")
    return client, edge


def _updates(*frames: str) -> list[Any]:
    processor = FeedProcessor("itick", epoch="epoch-1")
    out = []
    for frame in frames:
        out.extend(processor.ingest(frame, RECV_MS)[0])
    return out


async def test_updates_reach_only_the_edges_holding_their_channel_with_encodings_intact(
    bus: tuple[BusServer, SubscriptionPool],
) -> None:
    server, pool = bus
    a, edge_a = await _join(server, "edge-a")
    b, edge_b = await _join(server, "edge-b")
    a.add(["AAPL$US:quote"])
    b.add(["AAPL$US:quote", "700$HK:tick"])
    await wait_until(lambda: pool.channels() == ["700$HK:tick", "AAPL$US:quote"], what="pool")
    *sent, marker = _updates(
        QUOTE, tick("700$HK", 380.2, 100), tick("AAPL$US", 1.0, 5), quote("AAPL$US", 226.0, T0 + 1000)
    )
    server.publish(sent)
    await wait_until(lambda: len(edge_b.updates) == 2, what="edge-b's updates")
    # A barrier for what must not arrive: a later publish, on a channel both edges hold, reaches
    # each edge after everything published before it (one ordered link per edge).
    server.publish([marker])
    for edge in (edge_a, edge_b):
        await wait_until(
            lambda e=edge: any(u.json_frame == marker.json_frame for u in e.updates), what="the marker"
        )
    assert [u.channel for u in edge_a.updates] == ["AAPL$US:quote", "AAPL$US:quote"]
    assert [u.channel for u in edge_b.updates] == ["AAPL$US:quote", "700$HK:tick", "AAPL$US:quote"]
    got = edge_a.updates[0]
    assert (got.json_frame, got.protobuf_frame, got.seq, got.epoch) == (
        sent[0].json_frame,
        sent[0].protobuf_frame,
        sent[0].seq,
        sent[0].epoch,
    )
    assert got.to_dict() == sent[0].to_dict()
    assert edge_a.states == [IngestState(up=True, epoch="epoch-1")]
    # Interest is ref-counted across edges: AAPL stays upstream until its last edge lets go.
    (link_a,) = [link for link in server.links if link.worker == "edge-a"]
    a.remove(["AAPL$US:quote"])
    # The ingest handles the remove (the link forgets the channel and tells the pool at once).
    await wait_until(lambda: "AAPL$US:quote" not in link_a.channels, what="edge-a's remove")
    assert "AAPL$US:quote" in pool.channels()
    await b.stop()  # an edge that leaves takes its interest with it
    await wait_until(lambda: pool.channels() == [], what="the pool to empty")
    # The view the ingest relays has each joined edge's figures.
    await wait_until(lambda: set(a.node.get("workers", {})) == {"edge-a"}, what="the node view")
    await a.stop()


async def test_an_edge_rejoins_a_new_ingest_and_announces_its_channels(
    bus: tuple[BusServer, SubscriptionPool],
) -> None:
    server, pool = bus
    client, edge = await _join(server, "edge-a", ["AAPL$US:quote"])
    await wait_until(lambda: pool.channels() == ["AAPL$US:quote"], what="the announced channels")
    await server.stop()
    await wait_until(lambda: not client.joined, what="the edge to notice")
    assert edge.states[-1] == IngestState(up=False, epoch="", reason="ingest_down")
    fresh_pool = SubscriptionPool()
    fresh = BusServer(server.path, fresh_pool, "epoch-2", dict, buffer_bytes=1 << 20, view_interval_s=1)
    await fresh.start()
    try:
        await wait_until(lambda: client.joined, what="the edge to re-join")
        await wait_until(lambda: fresh_pool.channels() == ["AAPL$US:quote"], what="re-announced interest")
        assert edge.states[-1] == IngestState(up=True, epoch="epoch-2")
        refused = []
        fresh_pool.on_refused(lambda c, r: refused.append(c))
        fresh_pool.refused(["AAPL$US:quote"], "limit")
        await wait_until(lambda: edge.refused == [(["AAPL$US:quote"], "limit")], what="the refusal")
    finally:
        await client.stop()
        await fresh.stop()


async def test_an_edge_that_stops_reading_is_dropped_not_buffered_without_bound(
    bus: tuple[BusServer, SubscriptionPool],
) -> None:
    server, pool = bus
    client, _ = await _join(server, "edge-a", ["AAPL$US:quote"])
    await wait_until(lambda: pool.channels() == ["AAPL$US:quote"], what="interest")
    client._transport.pause_reading()  # type: ignore[union-attr]  # a stuck edge
    updates = _updates(*(quote("AAPL$US", 100 + i) for i in range(200)))
    for _ in range(200):  # ~ 200 x 200 records, far past the 1 MiB bound
        server.publish(updates)
        await asyncio.sleep(0)
    await wait_until(lambda: not server.links, what="the stuck edge to be dropped")
    assert pool.channels() == []
    await client.stop()


def test_reader_splits_messages_and_refuses_garbage() -> None:
    reader = Reader(max_bytes=100)
    data = message(Kind.ADD, b"A$US:quote") + message(Kind.REMOVE, b"")
    got = []
    for byte in data:  # one byte at a time
        got.extend(reader.feed(bytes([byte])))
    assert got == [(Kind.ADD, b"A$US:quote"), (Kind.REMOVE, b"")]
    with pytest.raises(BusProtocolError):
        list(Reader(max_bytes=100).feed(message(Kind.ADD, b"x" * 101)))
    with pytest.raises(BusProtocolError):
        list(Reader(max_bytes=100).feed(b"\x00\x00\x00\x00\xee"))


def test_a_corrupt_record_is_a_decode_error() -> None:
    record = pack_updates(_updates(QUOTE, TICK))
    assert len(unpack_updates(record)) == 2
    with pytest.raises(DecodeError):
        unpack_updates(record[:-3])


async def test_every_edge_is_told_the_feed_state_in_stream_order_and_on_joining(
    bus: tuple[BusServer, SubscriptionPool],
) -> None:
    server, pool = bus
    a, edge_a = await _join(server, "edge-a")
    assert edge_a.feeds == [FeedState(up=True)]
    a.add(["AAPL$US:quote"])
    await wait_until(lambda: pool.channels() == ["AAPL$US:quote"], what="edge-a's interest")
    server.publish(_updates(QUOTE))
    server.feed(FeedState(up=False, reason="upstream_down"))
    await wait_until(lambda: len(edge_a.feeds) == 2, what="the feed state")
    assert edge_a.feeds[1] == FeedState(up=False, reason="upstream_down")
    assert len(edge_a.updates) == 1  # what was published before it came first
    b, edge_b = await _join(server, "edge-b")  # a newcomer learns the state as it joins
    assert edge_b.feeds == [FeedState(up=False, reason="upstream_down")]
    server.feed(FeedState(up=True))
    await wait_until(lambda: edge_b.feeds[-1].up and edge_a.feeds[-1].up, what="back up")
    await asyncio.gather(a.stop(), b.stop())
