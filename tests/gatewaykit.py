"""Helpers for gateway tests: a real simulator, a real gateway and real WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tickgate.config import GatewayConfig
from tickgate.gateway import Gateway
from tickgate.simulate import ItickSimulator, SimulatorConfig

TIMEOUT = 5.0
TOKEN = "test-token"

#: Short timers so failure paths show within a test's time budget.
FAST_UPSTREAM = dict(
    upstream_ping_interval=0.5,
    upstream_pong_timeout=0.5,
    upstream_idle_timeout=2.0,
    upstream_backoff_initial=0.05,
    upstream_backoff_max=0.2,
)


async def start_simulator(**overrides: Any) -> ItickSimulator:
    config = dict(rate=20.0, seed=3, tokens=frozenset({TOKEN}))
    config.update(overrides)
    sim = ItickSimulator(SimulatorConfig(**config))
    await sim.start()
    return sim


async def start_gateway(sim: ItickSimulator | None, **overrides: Any) -> Gateway:
    settings: dict[str, Any] = dict(port=0, **FAST_UPSTREAM)
    if sim is not None:
        settings.update(upstream_url=sim.url, upstream_token=TOKEN)
    settings.update(overrides)
    gw = Gateway(GatewayConfig(**settings))
    await gw.start()
    return gw


def http_get(url: str) -> tuple[int, str, bytes]:
    """``(status, content type, body)`` of a plain GET, error statuses included (blocking: run
    it with ``asyncio.to_thread`` from a test)."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


async def wait_until(
    predicate: Callable[[], object], timeout: float = TIMEOUT, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Client:
    """A WebSocket client that separates pushes (``stock_quote``) from replies."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.pushes: list[dict[str, Any]] = []
        #: The server's first message: ``{"type":"welcome","session","epoch"}``.
        self.welcome: dict[str, Any] = {}

    @classmethod
    async def connect(
        cls,
        gw: Gateway,
        path: str = "/",
        *,
        token: str | None = None,
        welcome: bool = True,
        **options: Any,
    ) -> Client:
        """``token``: sent as ``Authorization: Bearer``; ``welcome``: wait for the welcome
        (False: a connection that must authenticate first gets none until it has)."""
        headers = {"Authorization": f"Bearer {token}"} if token is not None else None
        ws = await connect(
            gw.url.rstrip("/") + path,
            open_timeout=TIMEOUT,
            close_timeout=1,
            ping_interval=None,
            compression=None,
            additional_headers=headers,
            **options,
        )
        client = cls(ws)
        if welcome:
            client.welcome = await client.recv()
            assert client.welcome["type"] == "welcome", client.welcome
        return client

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(message if isinstance(message, str | bytes) else json.dumps(message))

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def reply(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next message that is not a market-data push (pushes are kept in ``pushes``)."""
        deadline = time.monotonic() + timeout
        while True:
            message = await self.recv(max(0.01, deadline - time.monotonic()))
            if message.get("type") == "stock_quote":
                self.pushes.append(message)
            else:
                return message

    async def request(self, message: dict[str, Any] | str | bytes) -> dict[str, Any]:
        await self.send(message)
        return await self.reply()

    async def push(
        self, predicate: Callable[[dict[str, Any]], bool] = lambda m: True, timeout: float = TIMEOUT
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            message = await self.recv(max(0.01, deadline - time.monotonic()))
            if message.get("type") == "stock_quote" and predicate(message):
                return message

    async def collect(self, seconds: float) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = await self.recv(left)
            except TimeoutError:
                break
            out.append(message)
        return out

    async def close(self) -> None:
        await self.ws.close()


def channel_of(push: dict[str, Any]) -> str:
    data = push["data"]
    kind = data["klineCycle"] if data["type"] == "kline" else data["type"]
    return f"{data['symbol']}:{kind}"
