"""Half-open clients: pinged when silent, dropped when they do not answer, by one sweep for all
connections. A unit test of the sweep with fake connections, and the real thing over sockets."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gatewaykit import Client, start_gateway, start_simulator, wait_until
from test_slow_consumers import raw_client
from tickgate.edge.liveness import Liveness


class FakeConnection:
    def __init__(self, last_seen: float) -> None:
        self.last_seen = last_seen
        self.ping_sent = 0.0
        self.closed = False
        self.pings = 0
        self.aborted = False

    def ping(self) -> None:
        self.pings += 1
        self.ping_sent = time.monotonic()

    def abort(self) -> None:
        self.aborted = self.closed = True


async def test_sweep_pings_the_silent_and_drops_the_unanswering() -> None:
    now = time.monotonic()
    active, silent, answered, dead = (FakeConnection(now) for _ in range(4))
    silent.last_seen = now - 10
    answered.last_seen = now - 10
    dead.last_seen = now - 10
    conns: set[Any] = {active, silent, answered, dead}
    live = Liveness(conns, ping_interval=5.0, pong_timeout=1.0)
    live._sweep()
    assert (active.pings, silent.pings, answered.pings, dead.pings) == (0, 1, 1, 1)
    answered.last_seen = time.monotonic()  # its pong (any frame counts)
    dead.ping_sent = silent.ping_sent = time.monotonic() - 2  # both pings now overdue
    silent.last_seen = dead.ping_sent - 1
    live._sweep()
    assert answered.ping_sent == 0.0 and not answered.aborted
    assert dead.aborted and silent.aborted and not active.aborted
    assert live.dropped == 2
    live.stop()


async def test_a_client_that_stops_answering_is_dropped_and_its_subscriptions_released() -> None:
    sim = await start_simulator()
    gw = await start_gateway(sim, client_ping_interval=0.5, client_pong_timeout=1.0)
    try:
        alive = await Client.connect(gw)  # websockets answers pings by itself
        await alive.request({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]})
        _reader, writer = await raw_client(gw.port)  # handshake done, then never reads nor answers
        await wait_until(lambda: len(gw.hub.connections) == 2, what="both connected")
        await wait_until(lambda: len(gw.hub.connections) == 1, timeout=5, what="the silent client dropped")
        assert gw.hub.liveness.dropped == 1
        assert gw.stats()["unresponsive_closed"] == 1
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.5:  # several ping rounds: the answering client stays
            await alive.push()
        assert len(gw.hub.connections) == 1
        writer.close()
        await asyncio.sleep(0)
        await alive.close()
    finally:
        await gw.stop()
        await sim.stop()
