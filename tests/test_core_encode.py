"""Each update is encoded once per format; both formats round-trip."""

from __future__ import annotations

import json

import pytest

import tickgate
from tickgate import FeedProcessor, Update, proto

from frames import DEPTH, KLINE_NESTED, QUOTE, RECV_MS, TICK


def updates(*frames: bytes) -> list[Update]:
    p = FeedProcessor("itick", epoch="e1")
    out = []
    for f in frames:
        (u,), _ = p.ingest(f, RECV_MS)
        assert isinstance(u, Update)
        out.append(u)
    return out


def parse_ws_frame(frame: bytes) -> tuple[int, bytes]:
    """An independent RFC 6455 reader, to check the core's framing."""
    assert frame[0] & 0x80, "FIN must be set"
    opcode = frame[0] & 0x0F
    assert not frame[1] & 0x80, "server frames are unmasked"
    n = frame[1] & 0x7F
    offset = 2
    if n == 126:
        n, offset = int.from_bytes(frame[2:4], "big"), 4
    elif n == 127:
        n, offset = int.from_bytes(frame[2:10], "big"), 10
    payload = frame[offset:]
    assert len(payload) == n
    return opcode, payload


def test_seed_json_quote() -> None:
    (u,) = updates(QUOTE)
    msg = json.loads(u.json)
    assert msg["type"] == "stock_quote"
    assert msg["timestamp"] == 1_731_689_500_000
    assert msg["data"] == {
        "symbol": "AAPL$US",
        "lastDealPrice": 225.215,
        "openPrice": 226.27,
        "highPrice": 226.92,
        "lowPrice": 224.44,
        "volume": 16742235,
        "turnover": 3774688301.452,
        "tradeTime": 1731689407000,
        "type": "quote",
        "change": -1.055,
        "changePercent": -0.4663,
        "status": 0,
        "seq": 1,
    }


def test_seed_json_other_kinds() -> None:
    tick, depth, kline = (json.loads(u.json)["data"] for u in updates(TICK, DEPTH, KLINE_NESTED))
    assert {k: tick[k] for k in ("symbol", "lastDealPrice", "volume", "tradeTime", "type", "seq")} == {
        "symbol": "AAPL$US",
        "lastDealPrice": 225.2,
        "volume": 100,
        "tradeTime": 1731689407100,
        "type": "tick",
        "seq": 1,
    }
    assert tick["cumulativeVolume"] == 100
    assert depth["ask"] == [{"po": 1, "p": 3034.01, "v": 10.6023, "o": 10.6023}]
    assert depth["bid"] == [{"po": 1, "p": 3034, "v": 20.9758, "o": 20.9758}]
    assert depth["type"] == "depth"
    assert kline == {
        "symbol": "AAPL$US",
        "closePrice": 3059.39,
        "highPrice": 3061.41,
        "lowPrice": 3055.24,
        "openPrice": 3055.36,
        "volume": 28,
        "turnover": 157513,
        "time": 1731660060000,
        "klineCycle": "kline@1",
        "type": "kline",
        "seq": 1,
    }


@pytest.mark.parametrize("frame", [QUOTE, TICK, DEPTH, KLINE_NESTED])
def test_protobuf_round_trip_matches_normalized_fields(frame: bytes) -> None:
    (u,) = updates(frame)
    msg = proto.Update.FromString(u.protobuf)
    d = u.to_dict()
    assert (msg.symbol, msg.seq, msg.epoch, msg.provider) == ("AAPL$US", 1, "e1", "itick")
    assert (msg.event_time_ms, msg.recv_time_ms) == (u.event_time_ms, u.recv_time_ms)
    which = msg.WhichOneof("data")
    assert which == u.kind.split("@")[0]
    body = getattr(msg, which)
    if which == "quote":
        assert (body.last, body.open, body.change, body.change_percent) == (
            d["last"],
            d["open"],
            d["change"],
            d["change_percent"],
        )
        assert not body.HasField("prev_close")
    elif which == "tick":
        assert (body.price, body.volume, body.direction, body.cumulative_volume) == (225.2, 100, 2, 100)
    elif which == "depth":
        assert [(lv.position, lv.price) for lv in body.asks] == [(1, 3034.01)]
        assert body.bids[0].orders == 20.9758
    else:
        assert (body.period, body.open_time_ms, body.close) == (1, 1731660060000, 3059.39)


def test_ws_frames_wrap_the_same_bytes() -> None:
    (u,) = updates(QUOTE)
    assert parse_ws_frame(u.json_frame) == (0x1, u.json)
    opcode, payload = parse_ws_frame(u.protobuf_frame)
    message = proto.ServerMessage.FromString(payload)
    assert opcode == 0x2 and message.WhichOneof("message") == "update"
    assert message.update.SerializeToString() == u.protobuf
    assert parse_ws_frame(tickgate.ws_frame(b"x" * 70_000, binary=True)) == (0x2, b"x" * 70_000)


def test_each_encoding_is_computed_once() -> None:
    (u,) = updates(QUOTE)
    # The same object comes back: receivers share one encoded buffer.
    assert u.json is u.json
    assert u.json_frame is u.json_frame
    assert u.protobuf is u.protobuf
    assert u.protobuf_frame is u.protobuf_frame


def test_protobuf_is_smaller_than_json() -> None:
    for u in updates(QUOTE, TICK, DEPTH, KLINE_NESTED):
        assert len(u.protobuf) < len(u.json)
