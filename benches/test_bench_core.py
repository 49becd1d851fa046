"""Core vs the msgspec baseline, side by side in one run.

    pytest benches --benchmark-enable --benchmark-json=.benchmarks/core.json
    python benches/ratios.py .benchmarks/core.json

Each pair does the same work: provider frame -> decoded, normalized, derived, sequenced ->
seed JSON -> ready WebSocket frame. The core's side includes the PyO3 call and the Python
objects it returns.
"""

from __future__ import annotations

import pytest

from benches.baseline_msgspec import MsgspecPipeline
from benches.feed import RECV_MS, frames
from tickgate import FeedProcessor, SubscriptionIndex
from tickgate._core import Dispatcher

SINGLE = {kind: frames(1, kinds=(kind,))[0] for kind in ("quote", "tick", "depth", "kline@1")}
BATCH = frames(1000)


@pytest.mark.parametrize("kind", list(SINGLE))
@pytest.mark.parametrize("impl", ["tickgate-core", "msgspec-baseline"])
def test_per_frame(benchmark, kind: str, impl: str) -> None:
    frame = SINGLE[kind]
    benchmark.group = f"per-frame {kind}"
    benchmark.extra_info.update(frame_bytes=len(frame), impl=impl)
    if impl == "tickgate-core":
        ingest = FeedProcessor("itick").ingest

        def run() -> bytes:
            return ingest(frame, RECV_MS)[0][0].json_frame
    else:
        process = MsgspecPipeline().process

        def run() -> bytes:
            return process(frame, RECV_MS)  # type: ignore[return-value]

    out = benchmark(run)
    assert out[0] == 0x81


@pytest.mark.parametrize("impl", ["tickgate-core", "msgspec-baseline"])
def test_batch_1000_mixed(benchmark, impl: str) -> None:
    benchmark.group = "batch of 1000 mixed frames"
    benchmark.extra_info.update(frames=len(BATCH), impl=impl)
    if impl == "tickgate-core":
        ingest_many = FeedProcessor("itick").ingest_many

        def run() -> list[bytes]:
            return [e.json_frame for e in ingest_many(BATCH, RECV_MS)[0]]
    else:
        process = MsgspecPipeline().process

        def run() -> list[bytes]:
            return [process(f, RECV_MS) for f in BATCH]  # type: ignore[misc]

    assert len(benchmark(run)) == 1000


#: Receivers per channel in the fan-out benchmark.
FANOUT = 10


def fanout_dispatcher() -> tuple[Dispatcher, list[object]]:
    d = Dispatcher(
        soft_cap_bytes=1 << 30,
        tick_cap=1000,
        lag_deadline_ms=1 << 40,
        wheel_tick_ms=10,
        min_interval_ms=50,
        max_interval_ms=60_000,
    )
    channels = sorted({u.channel for u in FeedProcessor("itick").ingest_many(BATCH, RECV_MS)[0]})
    handles = [object() for _ in range(FANOUT)]
    for h in handles:
        d.subscribe(d.connect(h), channels)
    return d, handles


@pytest.mark.parametrize("impl", ["tickgate-core", "msgspec-baseline"])
def test_frames_to_every_receivers_bytes(benchmark, impl: str) -> None:
    """Provider frames in -> one ready buffer per receiver out: 1000 mixed frames, every channel
    held by 10 receivers. The core's side is ingest_many + Dispatcher.publish + flush; the
    baseline decodes and encodes with msgspec and joins each receiver's frames in Python."""
    benchmark.group = f"1000 frames -> bytes for {FANOUT} receivers each"
    benchmark.extra_info.update(frames=len(BATCH), receivers=FANOUT, impl=impl)
    if impl == "tickgate-core":
        d, _ = fanout_dispatcher()
        p = FeedProcessor("itick")

        def run() -> int:
            d.publish(p.ingest_many(BATCH, RECV_MS)[0])
            return sum(len(b) for _, b in d.flush())
    else:
        process = MsgspecPipeline().process
        receivers = list(range(FANOUT))

        def run() -> int:
            queues: dict[int, list[bytes]] = {r: [] for r in receivers}
            for f in BATCH:
                frame = process(f, RECV_MS)
                if frame:
                    for r in receivers:
                        queues[r].append(frame)  # type: ignore[arg-type]
            return sum(len(b"".join(q)) for q in queues.values())

    assert benchmark(run) > 0


def test_encode_protobuf_frame(benchmark) -> None:
    """Informational: the second encoding, per update (no baseline peer)."""
    benchmark.group = "protobuf frame per update"
    p = FeedProcessor("itick")
    frame = SINGLE["quote"]
    benchmark(lambda: p.ingest(frame, RECV_MS)[0][0].protobuf_frame)


class Conn:
    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n


@pytest.fixture(scope="module")
def big_index() -> tuple[SubscriptionIndex, list[str], list[Conn]]:
    """100k connections x 20 channels each over 2,000 channels (2M subscriptions)."""
    ix = SubscriptionIndex()
    channels = [f"S{i}$US:quote" for i in range(2_000)]
    conns = [Conn(i) for i in range(100_000)]
    for i, c in enumerate(conns):
        ix.subscribe(c, [channels[(i * 7 + k * 101) % 2_000] for k in range(20)])
    return ix, channels, conns


def test_index_receivers_lookup(benchmark, big_index) -> None:
    benchmark.group = "index 100k conns x 20 channels"
    ix, channels, _ = big_index
    assert len(ix) == 2_000_000
    benchmark(ix.receivers, channels[17])


def test_index_subscribe_unsubscribe_churn(benchmark, big_index) -> None:
    """One client joining 20 channels and leaving, with 2M subscriptions in place."""
    benchmark.group = "index 100k conns x 20 channels"
    ix, channels, _ = big_index
    c = Conn(-1)
    wanted = channels[:20]

    def churn() -> None:
        ix.subscribe(c, wanted)
        ix.receivers(wanted[0])
        ix.remove(c)

    benchmark(churn)


@pytest.mark.parametrize("impl", ["ingest", "ingest+replay"])
def test_replay_ring_append(benchmark, impl: str) -> None:
    """What keeping updates for resume adds to the ingest path: the same 1,000 mixed frames
    decoded with and without appending each frame's updates to the replay ring, side by side.
    The ring is capped at 16 MiB so that, as in a long-running gateway, it is full and every
    append also evicts (a bigger cap would only fill for longer across rounds)."""
    from tickgate._core import ReplayRing

    benchmark.group = "replay ring: 1000 mixed frames"
    processor = FeedProcessor("itick")
    ingest = processor.ingest
    ring = ReplayRing(window_ms=300_000, max_bytes=16 * 1024 * 1024)
    append = ring.append

    if impl == "ingest":

        def run() -> int:
            n = 0
            for f in BATCH:
                n += len(ingest(f, RECV_MS)[0])
            return n
    else:

        def run() -> int:
            n = 0
            for f in BATCH:
                updates = ingest(f, RECV_MS)[0]
                append(updates)
                n += len(updates)
            return n

    assert benchmark(run) > 0
    if impl != "ingest":
        stats = ring.stats()
        benchmark.extra_info.update(ring_updates=stats["updates"], ring_bytes=stats["bytes"])
        benchmark.extra_info.update(bytes_per_update=stats["bytes"] / max(1, stats["updates"]))
