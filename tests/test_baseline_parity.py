"""The benchmark baseline must do the same work as the core, or the comparison means nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tickgate import FeedProcessor

from frames import DEPTH, KLINE_FLAT, KLINE_NESTED, QUOTE, RECV_MS, TICK, quote, tick

sys.path.insert(0, str(Path(__file__).parent.parent))
from benches.baseline_msgspec import MsgspecPipeline


def test_baseline_emits_the_same_json_as_the_core() -> None:
    core, baseline = FeedProcessor("itick"), MsgspecPipeline()
    frames = [
        QUOTE,
        TICK,
        DEPTH,
        KLINE_FLAT,
        KLINE_NESTED,
        quote("700$HK", 380.2, p=378.0),
        tick("aapl.us", 225.3, 7),
    ]
    for frame in frames:
        # A receive time just after the fixtures' event times (far from it would be implausible).
        (u,), _ = core.ingest(frame, RECV_MS)
        framed = baseline.process(frame, 1_731_689_500_000)
        assert framed is not None
        assert framed[0] == 0x81
        assert json.loads(framed[framed.index(b"{") :]) == json.loads(u.json), frame


@pytest.mark.parametrize(
    "frame", [b'{"code":1,"msg":"Connected Successfully"}', b'{"resAc":"pong","data":{"params":"1"}}']
)
def test_baseline_skips_control_frames(frame: bytes) -> None:
    assert MsgspecPipeline().process(frame, 1) is None
