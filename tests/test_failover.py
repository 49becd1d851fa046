"""Failover to a backup provider and back, with the real iTick simulator as the primary and the
real Finnhub-style simulator as the backup, while a client counts seqs and statuses."""

from __future__ import annotations

import time
from typing import Any

from gatewaykit import TIMEOUT, Client, channel_of, start_gateway, start_simulator, wait_until
from tickgate.simulate.finnhub_server import FinnhubConfig, FinnhubSimulator
from tickgate.upstream.failover import Failover


async def until_status(
    c: Client, state: str, reason: str, timeout: float = TIMEOUT
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The next status with ``state`` and ``reason``, and every message before it."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        m = await c.recv(max(0.01, deadline - time.monotonic()))
        if m.get("type") == "status" and m["state"] == state and m["reason"] == reason:
            return m, seen
        seen.append(m)


async def test_channels_move_to_the_backup_and_back_with_one_numbering() -> None:
    primary = await start_simulator(rate=20.0)
    port = primary.port
    backup = FinnhubSimulator(FinnhubConfig(rate=20.0, tokens=frozenset({"bk"}), ping_interval=0.3))
    await backup.start()
    gw = await start_gateway(
        primary,
        backup_provider="finnhub",
        backup_url=backup.url,
        backup_token="bk",
        failover_after=0.5,
        failback_after=1.0,
    )
    try:
        assert isinstance(gw.upstream, Failover)
        c = await Client.connect(gw)
        reply = await c.request({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["tick", "quote"]})
        assert reply["type"] == "success"
        first = await c.push(lambda m: "snapshot" not in m and channel_of(m) == "AAPL$US:tick")
        # The primary goes away: stale, then failing over, then the backup's ticks.
        await primary.stop()
        await until_status(c, "stale", "upstream_down")
        _, before = await until_status(c, "ok", "")
        assert gw.upstream.active is gw.upstream.backup
        assert backup.subscriptions() == {"AAPL"}  # ticks only: the backup has no quotes
        refreshed = [m for m in before if m.get("refresh")]
        assert [m["data"]["symbol"] for m in refreshed] == ["AAPL$US"]
        statuses = [(m["state"], m["reason"], m["channels"]) for m in before if m.get("type") == "status"]
        assert ("stale", "failing_over", ["AAPL$US:quote", "AAPL$US:tick"]) in statuses
        tick = await c.push(lambda m: "snapshot" not in m and channel_of(m) == "AAPL$US:tick")
        assert tick["data"]["seq"] > first["data"]["seq"] + 1  # one numbering, a skip for the hole
        assert gw.health()["stale"]["channels"] == 1  # the quote channel, until the primary is back
        # The primary comes back and holds: the channels move back.
        primary = await start_simulator(rate=20.0, port=port)
        await wait_until(lambda: gw.upstream.active is gw.upstream.primary, what="failback")
        _, before = await until_status(c, "ok", "")
        assert {m["data"]["symbol"] for m in before if m.get("refresh")} == {"AAPL$US"}
        # Quotes flow again (only the primary has them).
        await c.push(lambda m: "snapshot" not in m and channel_of(m) == "AAPL$US:quote")
        await wait_until(lambda: not backup.sessions, what="backup let go")
        assert gw.upstream.status()["failover"]["switches"] == 2
        await c.close()
    finally:
        await gw.stop()
        await primary.stop()
        await backup.stop()
