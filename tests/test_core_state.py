"""Sequencing, epochs and derived fields."""

from __future__ import annotations

from tickgate import FeedProcessor, Update

from frames import QUOTE, RECV_MS, T0, TICK, quote, tick

DAY = 86_400_000


def ingest(p: FeedProcessor, frame: bytes, recv_ms: int = RECV_MS) -> Update:
    """``recv_ms``: when the frame arrived (a frame stamped far from it is dropped as implausible)."""
    (u,), _ = p.ingest(frame, recv_ms)
    assert isinstance(u, Update)
    return u


def test_sequence_per_channel_starts_at_one() -> None:
    p = FeedProcessor("itick")
    seen = [(u.channel, u.seq) for u in (ingest(p, f) for f in (QUOTE, TICK, QUOTE, TICK, TICK))]
    assert seen == [
        ("AAPL$US:quote", 1),
        ("AAPL$US:tick", 1),
        ("AAPL$US:quote", 2),
        ("AAPL$US:tick", 2),
        ("AAPL$US:tick", 3),
    ]
    assert ingest(p, quote("MSFT$US", 400)).seq == 1
    assert p.last_seq("AAPL$US:tick") == 3
    assert p.last_seq("aapl.us:depth") == 0


def test_epoch_changes_per_processor_and_can_be_pinned() -> None:
    a, b = FeedProcessor("itick"), FeedProcessor("itick")
    assert a.epoch != b.epoch
    assert FeedProcessor("itick", epoch="fixed").epoch == "fixed"
    assert ingest(a, QUOTE).epoch == a.epoch


def test_change_against_provider_prev_close() -> None:
    u = ingest(FeedProcessor("itick"), quote("700$HK", 380.2, p=378.0, o=379.0))
    d = u.to_dict()
    assert (d["prev_close"], d["change"], d["change_percent"]) == (378.0, 2.2, 0.582)


def test_change_against_first_open_when_no_prev_close() -> None:
    p = FeedProcessor("itick")
    first = ingest(p, quote("AAPL$US", 101.0, o=100.0)).to_dict()
    assert (first["prev_close"], first["change"], first["change_percent"]) == (None, 1.0, 1.0)
    later = ingest(p, quote("AAPL$US", 99.5, o=98.0, t=T0 + 1000)).to_dict()
    assert later["change"] == -0.5  # still against the day's first open, 100


def test_provider_change_is_authoritative() -> None:
    d = ingest(FeedProcessor("itick"), quote("AAPL$US", 10.0, p=9.0, ch=0.7, chp=7.0)).to_dict()
    assert (d["change"], d["change_percent"]) == (0.7, 7.0)


def test_tick_change_uses_quote_reference() -> None:
    p = FeedProcessor("itick")
    ingest(p, quote("AAPL$US", 100.0, p=98.0))
    d = ingest(p, tick("AAPL$US", 99.0, 5)).to_dict()
    assert (d["change"], d["change_percent"]) == (1.0, 1.0204)


def test_cumulative_volume_per_symbol_and_day() -> None:
    p = FeedProcessor("itick")
    vols = [
        ingest(p, tick("AAPL$US", 1, 100)).to_dict()["cumulative_volume"],
        ingest(p, tick("AAPL$US", 1, 50.5, T0 + 10)).to_dict()["cumulative_volume"],
        ingest(p, tick("MSFT$US", 1, 7)).to_dict()["cumulative_volume"],
        ingest(p, tick("AAPL$US", 1, 1, T0 + DAY), RECV_MS + DAY).to_dict()["cumulative_volume"],
    ]
    assert vols == [100, 150.5, 7, 1]


def test_trading_day_follows_exchange_time() -> None:
    # 2024-11-15 15:59:59 UTC and 16:00:00 UTC straddle midnight in Hong Kong (UTC+8)...
    before, after = 1731686399000, 1731686400000
    p = FeedProcessor("itick")
    ingest(p, tick("700$HK", 1, 10, before))
    assert ingest(p, tick("700$HK", 1, 10, after)).to_dict()["cumulative_volume"] == 10
    # ...but not in New York, where both are the same day.
    ingest(p, tick("AAPL$US", 1, 10, before))
    assert ingest(p, tick("AAPL$US", 1, 10, after)).to_dict()["cumulative_volume"] == 20
