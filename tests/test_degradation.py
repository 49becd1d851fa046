"""The seed's three levels of graceful degradation, entered by real overload (the gateway's
event loop made to run late) and left with hysteresis, as a real client sees them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from websockets.exceptions import ConnectionClosed

from gatewaykit import Client, start_gateway, start_simulator, wait_until
from tickgate.edge.degrade import Degradation, DegradeSettings

FAST = dict(
    degrade_level1_lag_ms=30.0,
    degrade_level2_lag_ms=90.0,
    degrade_level3_lag_ms=250.0,
    degrade_sample_s=0.05,
    degrade_enter_s=0.2,
    degrade_exit_s=0.6,
    degrade_batch_interval_ms=500,
    degrade_snapshot_interval_s=0.3,
)


class Overload:
    """Keeps the event loop busy ``block_s`` of every ``block_s + 0.02`` s, as CPU-bound work
    would (each timer runs up to ``block_s`` late)."""

    def __init__(self) -> None:
        self.block_s = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(0.02)
            if self.block_s:
                time.sleep(self.block_s)

    def __enter__(self) -> Overload:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


def statuses(messages: list[dict[str, Any]]) -> list[tuple[str, str, list[str]]]:
    return [(m["state"], m["reason"], m["channels"]) for m in messages if m.get("type") == "status"]


async def test_levels_are_entered_under_overload_and_left_when_it_eases() -> None:
    sim = await start_simulator(rate=20.0)
    gw = await start_gateway(sim, **FAST)
    got: list[dict[str, Any]] = []
    collector: asyncio.Task[None] | None = None
    try:
        c = await Client.connect(gw)
        reply = await c.request(
            {"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote", "kline@1"]}
        )
        assert reply["type"] == "success"

        async def collect() -> None:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    got.append(await c.recv(timeout=30))

        collector = asyncio.get_running_loop().create_task(collect())
        level = lambda: gw.edge.degradation.level  # noqa: E731
        with Overload() as load:
            load.block_s = 0.06  # up to 60 ms late: level 1
            await wait_until(lambda: level() == 1, timeout=10, what="level 1")
            await asyncio.sleep(0.3)
            assert statuses(got) == [("stale", "degraded", ["AAPL$US:kline@1"])]
            assert gw.dispatcher.stats()["shed"] > 0  # klines left out, quotes still live
            load.block_s = 0.16  # level 2: the client is moved to coarse batches
            await wait_until(lambda: level() == 2, timeout=10, what="level 2")
            await asyncio.sleep(0.3)
            assert statuses(got)[-1] == ("stale", "degraded", ["AAPL$US:quote"])
            assert gw.dispatcher.mode_of(next(iter(gw.hub.connections)).id) == ("batch", 500)
            load.block_s = 0.4  # level 3: snapshots only
            await wait_until(lambda: level() == 3, timeout=10, what="level 3")
            await asyncio.sleep(0.6)  # the batch already due when level 3 came goes out
            got.clear()
            await asyncio.sleep(1.0)
            assert any(m.get("refresh") for m in got), "periodic refreshes at level 3"
            assert not any(m.get("type") == "batch" for m in got), "nothing live at level 3"
            got.clear()
            load.block_s = 0.0
            # One level at a time, each after degrade_exit_s without the load.
            await wait_until(lambda: level() == 0, timeout=15, what="back to level 0")
        await asyncio.sleep(0.3)
        oks = [s for s in statuses(got) if s[0] == "ok"]
        assert oks == [("ok", "", ["AAPL$US:quote"]), ("ok", "", ["AAPL$US:kline@1"])], statuses(got)
        assert gw.dispatcher.mode_of(next(iter(gw.hub.connections)).id)[0] == "immediate"
        assert gw.health()["degradation_level"] == 0
        await c.close()
    finally:
        if collector is not None:
            collector.cancel()
        await gw.stop()
        await sim.stop()


def test_hysteresis_enters_after_enter_s_and_leaves_one_level_per_exit_s() -> None:
    applied: list[int] = []
    d = Degradation(
        DegradeSettings(lag_ms=(10, 20, 30), paused_share=(0.5, 0.7, 0.9), sample_s=0.1, enter_s=1, exit_s=2),
        lambda: 0.0,
        applied.append,
    )
    d.observe(25, 0.0, now=0.0)  # level 2 wanted
    d.observe(25, 0.0, now=0.5)
    assert applied == []  # not yet held for enter_s
    d.observe(5, 0.0, now=0.8)  # a dip resets it
    d.observe(25, 0.0, now=1.0)
    d.observe(25, 0.0, now=2.0)
    assert applied == [2]
    d.observe(0, 0.6, now=2.1)  # egress pressure alone wants level 1: below 2
    d.observe(0, 0.6, now=4.2)
    assert applied == [2, 1]
    d.observe(0, 0.6, now=9.0)  # level 1 still wanted: stays
    assert applied == [2, 1]
    d.observe(0, 0.0, now=9.1)
    d.observe(0, 0.0, now=11.2)
    assert applied == [2, 1, 0] and d.entered == [0, 0, 1, 0]
