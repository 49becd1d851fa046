"""The core's decoder through its Python API: every iTick form, every error path."""

from __future__ import annotations

import pytest

import tickgate
from tickgate import ControlEvent, DecodeError, FeedProcessor, FrameError, Update

from frames import (
    AUTH_FAILED,
    AUTH_OK,
    DEPTH,
    GREETING,
    KLINE_FLAT,
    KLINE_NESTED,
    PONG_NUM,
    PONG_STR,
    QUOTE,
    RECV_MS,
    SUBSCRIBE_LIMIT,
    SUBSCRIBE_OK,
    TICK,
)


def one(frame: bytes | str) -> Update | ControlEvent:
    updates, controls = FeedProcessor("itick", epoch="e").ingest(frame, RECV_MS)
    (event,) = updates + controls
    return event


@pytest.mark.parametrize(
    ("frame", "kind", "ok", "params"),
    [
        (GREETING, "connected", True, None),
        (AUTH_OK, "auth", True, "tok"),
        (AUTH_FAILED, "auth", False, None),
        (SUBSCRIBE_OK, "subscribe", True, None),
        (SUBSCRIBE_LIMIT, "subscribe", False, None),
        (b'{"code":1,"resAc":"unsubscribe","msg":"unsubscribe Successfully"}', "unsubscribe", True, None),
        (PONG_STR, "pong", True, "1731688569840"),
        (PONG_NUM, "pong", True, "1731688569840"),
        (b'{"code":0,"resAc":"x","msg":"cannot be resolved action"}', "notice", False, None),
    ],
)
def test_control_frames(frame: bytes, kind: str, ok: bool, params: str | None) -> None:
    event = one(frame)
    assert isinstance(event, ControlEvent)
    assert (event.kind, event.ok, event.params) == (kind, ok, params)


def test_subscribe_limit_message_is_kept() -> None:
    event = one(SUBSCRIBE_LIMIT)
    assert isinstance(event, ControlEvent)
    assert event.message == "exceeding the maximum subscription limit"
    assert event.action == "subscribe"


def test_quote() -> None:
    u = one(QUOTE)
    assert isinstance(u, Update)
    assert (u.kind, u.symbol, u.channel, u.seq, u.provider) == (
        "quote",
        "AAPL$US",
        "AAPL$US:quote",
        1,
        "itick",
    )
    d = u.to_dict()
    assert d["last"] == 225.215
    assert (d["open"], d["high"], d["low"]) == (226.27, 226.92, 224.44)
    assert (d["volume"], d["turnover"], d["status"]) == (16742235, 3774688301.452, 0)
    assert u.event_time_ms == 1731689407000
    assert u.recv_time_ms == RECV_MS


def test_tick() -> None:
    u = one(TICK)
    assert isinstance(u, Update)
    d = u.to_dict()
    assert (u.kind, d["price"], d["volume"], d["direction"], d["session"]) == ("tick", 225.2, 100, 2, 0)
    assert d["cumulative_volume"] == 100


def test_depth() -> None:
    u = one(DEPTH)
    assert isinstance(u, Update)
    d = u.to_dict()
    assert d["asks"] == [{"position": 1, "price": 3034.01, "volume": 10.6023, "orders": 10.6023}]
    assert d["bids"][0]["price"] == 3034


def test_both_kline_forms_decode_alike() -> None:
    flat, nested = one(KLINE_FLAT), one(KLINE_NESTED)
    assert isinstance(flat, Update) and isinstance(nested, Update)
    assert flat.to_dict() == nested.to_dict()
    assert flat.channel == "AAPL$US:kline@1"
    assert flat.to_dict()["open_time_ms"] == 1731660060000


@pytest.mark.parametrize("spelling", ["AAPL$US", "aapl$us", "AAPL.US", "aapl.us"])
def test_symbol_spellings(spelling: str) -> None:
    u = one(f'{{"code":1,"data":{{"s":"{spelling}","ld":1,"type":"tick"}}}}')
    assert isinstance(u, Update)
    assert u.symbol == "AAPL$US"


def test_accepts_str_bytearray_and_memoryview() -> None:
    p = FeedProcessor("itick")
    for frame in (TICK, TICK.decode(), bytearray(TICK), memoryview(TICK)):
        (u,), _ = p.ingest(frame, RECV_MS)
        assert isinstance(u, Update)
    with pytest.raises(TypeError):
        p.ingest(12345)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"", "invalid_json"),
        (b"{not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b"[]", "invalid_frame"),
        (b"{}", "invalid_frame"),
        (b'{"code":1,"data":{"s":"AAPL$US","ld":1}}', "invalid_frame"),
        (b'{"code":1,"data":{"s":"AAPL","ld":1,"type":"tick"}}', "invalid_symbol"),
        (b'{"code":1,"data":{"s":"AAPL$US","ld":1,"type":"trade"}}', "invalid_type"),
        (b'{"code":1,"data":{"s":"AAPL$US","type":"quote"}}', "invalid_field"),
        (b'{"code":1,"data":{"s":"AAPL$US","ld":"NaN","type":"quote"}}', "invalid_field"),
    ],
)
def test_malformed_frames_raise_named_errors(frame: bytes, code: str) -> None:
    with pytest.raises(DecodeError) as info:
        FeedProcessor("itick").ingest(frame)
    assert info.value.code == code
    assert isinstance(info.value, ValueError)


def test_specific_exception_classes() -> None:
    p = FeedProcessor("itick")
    with pytest.raises(tickgate.InvalidSymbolError):
        p.ingest(b'{"code":1,"data":{"s":"AAPL","ld":1,"type":"tick"}}')
    with pytest.raises(tickgate.InvalidTypeError):
        p.ingest(b'{"code":1,"data":{"s":"AAPL$US","ld":1,"type":"trade"}}')


def test_oversize_frame_is_refused() -> None:
    p = FeedProcessor("itick", max_frame_bytes=64)
    with pytest.raises(DecodeError) as info:
        p.ingest(b" " * 65)
    assert info.value.code == "frame_too_large"


def test_batch_keeps_going_past_bad_frames() -> None:
    p = FeedProcessor("itick")
    updates, controls, errors = p.ingest_many(
        [GREETING, b"{garbage", QUOTE, b'{"code":1,"data":{"s":"X","type":"tick"}}', TICK], RECV_MS
    )
    assert [u.kind for u in updates] == ["quote", "tick"]
    assert [c.kind for c in controls] == ["connected"]
    assert all(isinstance(e, FrameError) for e in errors)
    assert [(e.index, e.code) for e in errors] == [(1, "invalid_json"), (3, "invalid_symbol")]
    assert p.stats() == {
        "frames": 5,
        "updates": 2,
        "errors": 2,
        "symbols": 1,
        "released": 0,
        "dropped": {"price": 0, "volume": 0, "time": 0},
    }


def test_bad_frame_leaves_state_untouched() -> None:
    p = FeedProcessor("itick")
    with pytest.raises(DecodeError):
        p.ingest(b'{"code":1,"data":{"s":"AAPL$US","ld":"x","type":"tick"}}')
    (u,), _ = p.ingest(TICK, RECV_MS)
    assert u.seq == 1


def test_unknown_provider() -> None:
    with pytest.raises(DecodeError):
        FeedProcessor("nope")


def test_helpers() -> None:
    assert tickgate.normalize_symbol("600519.sh") == "600519$SH"
    assert tickgate.normalize_type("KLINE@5") == "kline@5"
    assert tickgate.make_channel("700.hk", "Quote") == "700$HK:quote"
    assert tickgate.split_channel("aapl.us:kline@1") == ("AAPL$US", "kline@1")
    with pytest.raises(tickgate.InvalidSymbolError) as info:
        tickgate.normalize_symbol("AAPL")
    assert info.value.code == "invalid_symbol"
    with pytest.raises(tickgate.InvalidTypeError):
        tickgate.normalize_type("kline@11")


def test_batch_keeps_its_updates_when_an_item_is_not_a_frame() -> None:
    p = FeedProcessor("itick")
    updates, _, bad = p.ingest_many([QUOTE, 42, "\ud800", QUOTE], RECV_MS)  # type: ignore[list-item]
    assert all(isinstance(e, FrameError) for e in bad)
    assert [(e.index, e.code) for e in bad] == [(1, "invalid_frame"), (2, "invalid_json")]
    assert all(isinstance(u, Update) for u in updates)
    assert [u.seq for u in updates] == [1, 2]  # no sequence number lost


def test_unencodable_text_is_a_decode_error() -> None:
    with pytest.raises(DecodeError) as info:
        FeedProcessor("itick").ingest("\ud800")
    assert info.value.code == "invalid_json"


def test_a_backup_providers_frames_carry_on_the_same_numbering() -> None:
    p = FeedProcessor("itick", epoch="e")
    (first,), _ = p.ingest(TICK, RECV_MS)
    trades = b'{"type":"trade","data":[{"s":"AAPL","p":225.3,"t":1731689407200,"v":10}]}'
    updates, _ = p.ingest(trades, RECV_MS, provider="finnhub")
    assert [(u.channel, u.seq, u.provider) for u in updates] == [("AAPL$US:tick", first.seq + 1, "finnhub")]
    (back,), _ = p.ingest(TICK, RECV_MS)
    assert (back.seq, back.provider) == (first.seq + 2, "itick")
    with pytest.raises(DecodeError):
        p.ingest(TICK, RECV_MS, provider="nope")
    _, (heartbeat,) = p.ingest(b'{"type":"ping"}', RECV_MS, provider="finnhub")
    assert heartbeat.kind == "pong"
