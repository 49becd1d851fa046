"""The seed's three levels of graceful degradation, entered by real overload (the gateway's
event loop made to run late) and left with hysteresis, as a real client sees them."""

from __future__ import annotations

import asyncio
import contextlib
import select
from typing import Any

from websockets.exceptions import ConnectionClosed

from gatewaykit import Client, start_gateway, start_simulator, wait_until
from tickgate.edge.degrade import Degradation, DegradeSettings

# The Overload's blocks (below) make the loop run each timer up to ``block_s`` late, at least
# about ``block_s - 0.03`` s (the 20 ms gap plus one sample period). Each block sits inside its
# level's band with room on both sides; a loaded machine only adds lag, and it must add over
# 100 ms (level 1) or 250 ms (level 2) at every sample for all of ``degrade_enter_s`` before a
# level above the one the test wants is entered (at level 1 that is longer than the sliding
# window of four samples keeps one stall's lag).
FAST = dict(
    degrade_level1_lag_ms=50.0,
    degrade_level2_lag_ms=250.0,
    degrade_level3_lag_ms=700.0,
    degrade_sample_s=0.05,
    degrade_enter_s=1.0,
    degrade_exit_s=0.6,
    degrade_batch_interval_ms=500,
    degrade_snapshot_interval_s=0.3,
)
LEVEL1_BLOCK_S = 0.13  # lag 100..130 ms: level 1 (50..250)
LEVEL2_BLOCK_S = 0.45  # lag 420..450 ms: level 2 (250..700)
LEVEL3_BLOCK_S = 1.1  # lag 1070..1100 ms: level 3 (700 and up)


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
                # Blocks as time.sleep would; but under a moved clock (libfaketime) Python's
                # time.sleep, an absolute monotonic deadline, fails with EINVAL: a select
                # timeout is relative.
                select.select([], [], [], self.block_s)

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
        conn = gw.hub.live_connection(c.welcome["session"])
        assert conn is not None

        async def collect() -> None:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    got.append(await c.recv(timeout=30))

        def after(message: dict[str, Any]) -> list[dict[str, Any]]:
            """What the client got after ``message`` (a barrier it got earlier)."""
            return got[next(i for i, m in enumerate(got) if m is message) + 1 :]

        def live_quotes(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [
                m
                for m in messages
                if m.get("type") == "stock_quote" and m["data"]["type"] == "quote" and not m.get("refresh")
            ]

        collector = asyncio.get_running_loop().create_task(collect())
        level = lambda: gw.edge.degradation.level  # noqa: E731
        status = lambda n: len(statuses(got)) >= n  # noqa: E731
        with Overload() as load:
            load.block_s = LEVEL1_BLOCK_S
            await wait_until(lambda: level() == 1, what="level 1")
            await wait_until(lambda: status(1), what="the level 1 status")
            assert statuses(got) == [("stale", "degraded", ["AAPL$US:kline@1"])]
            # Klines left out, quotes still live.
            await wait_until(lambda: gw.dispatcher.stats()["shed"] > 0, what="a kline shed")
            told = next(m for m in got if m.get("type") == "status")
            await wait_until(lambda: live_quotes(after(told)), what="a live quote at level 1")
            load.block_s = LEVEL2_BLOCK_S  # level 2: the client is moved to coarse batches
            await wait_until(lambda: level() == 2, what="level 2")
            await wait_until(lambda: status(2), what="the level 2 status")
            assert statuses(got) == [
                ("stale", "degraded", ["AAPL$US:kline@1"]),
                ("stale", "degraded", ["AAPL$US:quote"]),
            ]
            assert gw.dispatcher.mode_of(conn.id) == ("batch", 500)
            told = [m for m in got if m.get("type") == "status"][-1]
            await wait_until(
                lambda: any(m.get("type") == "batch" for m in after(told)), what="a batch at level 2"
            )
            load.block_s = LEVEL3_BLOCK_S  # level 3: snapshots only
            await wait_until(lambda: level() == 3, what="level 3")
            shed = gw.dispatcher.stats()["shed"]
            # The batch already due when level 3 came goes out, and nothing is queued for the
            # client after it: then a ping's pong comes after anything live that was sent.
            channels = set(gw.dispatcher.channels_of(conn.id))
            await wait_until(
                lambda: set(gw.dispatcher.delivered(conn.id)) == channels, what="the last batch sent"
            )
            await c.send({"action": "ping", "id": "level3"})
            await wait_until(lambda: any(m.get("id") == "level3" for m in got), what="the pong")
            pong = next(m for m in got if m.get("id") == "level3")
            await wait_until(
                lambda: sum(1 for m in after(pong) if m.get("refresh")) >= 4,
                what="two rounds of periodic refreshes at level 3",
            )
            since = after(pong)
            assert not any(m.get("type") == "batch" for m in since), "nothing live at level 3"
            assert not live_quotes(since), "nothing live at level 3"
            assert gw.dispatcher.stats()["shed"] > shed  # the updates meanwhile were left out
            got.clear()
            load.block_s = 0.0
            # One level at a time, each after degrade_exit_s without the load.
            await wait_until(lambda: level() == 0, what="back to level 0")
        # Level 2 to 1 gives the quotes back, 1 to 0 the klines: each a refresh, then ok.
        oks = lambda: [s for s in statuses(got) if s[0] == "ok"]  # noqa: E731
        await wait_until(lambda: len(oks()) >= 2, what="both channels ok again")
        assert oks() == [("ok", "", ["AAPL$US:quote"]), ("ok", "", ["AAPL$US:kline@1"])], statuses(got)
        assert gw.dispatcher.mode_of(conn.id)[0] == "immediate"
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
