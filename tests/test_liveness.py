"""Half-open clients: pinged when silent, dropped when they do not answer, by one sweep for all
connections. A unit test of the sweep with fake connections, and the real thing over sockets."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from websockets.exceptions import ConnectionClosed

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
    # Pinged after 0.5 s of silence; the pong timeout is long (3 s) because the answering client
    # must answer before it: its pong comes from this process's loop, which a loaded machine
    # can stall for a while.
    gw = await start_gateway(sim, client_ping_interval=0.5, client_pong_timeout=3.0)
    pushes: list[dict[str, Any]] = []
    reader: asyncio.Task[None] | None = None
    try:
        alive = await Client.connect(gw)  # websockets answers pings by itself while it reads
        await alive.request({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]})
        conn = gw.hub.live_connection(alive.welcome["session"])
        assert conn is not None

        async def read() -> None:  # keeps reading, so that its pongs are never stuck behind data
            with contextlib.suppress(ConnectionClosed):
                while True:
                    pushes.append(await alive.push())

        reader = asyncio.get_running_loop().create_task(read())
        _reader, writer = await raw_client(gw.port)  # handshake done, then never reads nor answers
        await wait_until(lambda: len(gw.hub.connections) == 2, what="both connected")
        await wait_until(lambda: len(gw.hub.connections) == 1, what="the silent client dropped")
        assert gw.hub.liveness.dropped == 1
        assert gw.stats()["unresponsive_closed"] == 1
        assert gw.hub.connections == {conn}
        # Several ping rounds: the answering client is pinged and answers each time, and stays.
        pings: set[float] = set()
        streamed = len(pushes)

        def answered(n: int) -> bool:
            if conn.ping_sent:  # set when pinged, back to 0 at the sweep that sees the answer
                pings.add(conn.ping_sent)
            return len(pings) - (1 if conn.ping_sent else 0) >= n

        await wait_until(lambda: answered(3), what="three pings answered")
        assert not conn.closed and gw.hub.connections == {conn}
        assert gw.hub.liveness.dropped == 1
        assert len(pushes) > streamed  # and its data went on meanwhile
        writer.close()
        await asyncio.sleep(0)
        reader.cancel()
        await alive.close()
    finally:
        if reader is not None:
            reader.cancel()
        await gw.stop()
        await sim.stop()
