"""A client flooding commands is held to its token bucket (``rate_limited``, nothing applied)
and closed (1008) if it keeps at it, while another client's data is untouched."""

from __future__ import annotations

import asyncio
import time

import pytest
from websockets.exceptions import ConnectionClosed

from gatewaykit import TIMEOUT, Client, start_gateway, start_simulator, wait_until


async def test_commands_over_the_rate_are_refused_then_the_abuser_is_closed() -> None:
    sim = await start_simulator(rate=20.0)
    # A slow refill (1 token/s): the 15 pings all land in one burst (the 11th refused) unless the
    # machine stalls for a second between two of them.
    gw = await start_gateway(sim, client_command_rate=1.0, client_command_burst=10, client_abuse_limit=30)
    try:
        bystander = await Client.connect(gw)
        await bystander.request({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]})
        flood = await Client.connect(gw)
        conn = gw.hub.live_connection(flood.welcome["session"])
        assert conn is not None
        for i in range(15):
            await flood.send({"action": "ping", "id": i})
        replies = [await flood.reply() for _ in range(15)]
        assert [r["type"] for r in replies[:10]] == ["pong"] * 10  # the burst
        assert all(r["type"] == "error" and r["code"] == "rate_limited" for r in replies[10:]), replies[10:]

        def refilled() -> bool:
            """The bucket holds a token again (it refills as time passes, counted when used)."""
            elapsed = time.monotonic() - conn._refill_at
            return conn._allowance + elapsed * gw.hub.command_rate >= 1.0

        await wait_until(refilled, what="a token refilled")
        assert (await flood.request({"action": "ping"}))["type"] == "pong"
        assert gw.stats()["rate_limited"] == 5
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(200):
                await flood.send({"action": "ping"})
            while True:
                await flood.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        # The other client never noticed.
        await bystander.push()
        await bystander.close()
    finally:
        await gw.stop()
        await sim.stop()


async def test_origins_outside_the_allow_list_and_ops_pages_without_the_token_are_refused() -> None:
    import urllib.error
    import urllib.request

    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    gw = await start_gateway(
        None, simulator_rate=0.0, allowed_origins="https://app.example.com", ops_token="ops-secret"
    )
    try:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(gw.url, origin="http://evil.example"):  # type: ignore[arg-type]
                pass
        assert refused.value.response.status_code == 403
        async with connect(gw.url, origin="https://app.example.com") as ws:  # type: ignore[arg-type]
            assert "welcome" in await ws.recv()
        async with connect(gw.url) as ws:  # no Origin: not a browser
            assert "welcome" in await ws.recv()
        base = gw.url.replace("ws://", "http://")

        def get(path: str, token: str | None) -> int:
            request = urllib.request.Request(base + path)
            if token:
                request.add_header("Authorization", f"Bearer {token}")
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT) as r:
                    return int(r.status)
            except urllib.error.HTTPError as e:
                return e.code

        assert await asyncio.to_thread(get, "metrics", None) == 401
        assert await asyncio.to_thread(get, "healthz", "wrong") == 401
        assert await asyncio.to_thread(get, "metrics", "ops-secret") == 200
        assert gw.stats()["origins_refused"] == 1
    finally:
        await gw.stop()
