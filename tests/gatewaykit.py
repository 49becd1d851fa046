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
from websockets.exceptions import ConnectionClosed

from tickgate.config import GatewayConfig
from tickgate.gateway import Gateway
from tickgate.simulate import ItickSimulator, SimulatorConfig

#: How long a test waits for what must happen (a reply, a push, a condition) before it fails.
#: Only a failing test ever waits this long, so it is generous: a loaded 2-core CI machine can
#: stall a process for seconds.
TIMEOUT = 20.0
TOKEN = "test-token"

#: Every test gateway's upstream timers: reconnects come at once, but a provider is declared
#: dead only after seconds of silence, so a loaded machine that stalls the test's event loop
#: (gateway and simulator share it) does not cut a healthy feed and leave a hole in a stream.
FAST_UPSTREAM = dict(
    upstream_ping_interval=2.0,
    upstream_pong_timeout=5.0,
    upstream_idle_timeout=10.0,
    upstream_backoff_initial=0.05,
    upstream_backoff_max=0.2,
)

#: For the tests of a silent provider being found: pings every 0.5 s, dead after 0.5 s unanswered.
FAST_DETECTION = dict(upstream_ping_interval=0.5, upstream_pong_timeout=0.5, upstream_idle_timeout=2.0)


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
    """Polls ``predicate`` until it holds; fails after ``timeout``. Tests wait on what they
    need this way, never on a fixed sleep being long enough."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def wait_for_seqs(gw: Gateway, channels: list[str], more: int, timeout: float = TIMEOUT) -> None:
    """Waits until the gateway has numbered at least ``more`` further updates on each channel:
    "updates go on meanwhile" as a condition, not as a sleep that a busy machine may not fill."""
    start = {ch: gw.processor.last_seq(ch) for ch in channels}
    await wait_until(
        lambda: all(gw.processor.last_seq(ch) >= start[ch] + more for ch in channels),
        timeout,
        f"{more} more updates on {channels}",
    )


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

    async def collect_until(
        self,
        done: Callable[[list[dict[str, Any]]], object],
        timeout: float = TIMEOUT,
        what: str = "messages",
    ) -> list[dict[str, Any]]:
        """Every message received until ``done(messages so far)`` holds; fails after ``timeout``."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while not done(out):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}; got {out[-5:]}")
            try:
                out.append(await self.recv(left))
            except TimeoutError:
                raise AssertionError(f"timed out waiting for {what}; got {out[-5:]}") from None
        return out

    async def close_and_drain(self) -> list[dict[str, Any]]:
        """Closes cleanly and returns what was still on its way: the server counts everything it
        sent before the close as delivered, read by the test or not."""
        # Read while closing: a client whose receive queue is full (websockets' max_queue) stops
        # reading the socket, never sees the server's close frame and drops what was coming.
        closing = asyncio.get_running_loop().create_task(self.ws.close())
        out: list[dict[str, Any]] = []
        try:
            while True:
                out.append(json.loads(await self.ws.recv()))
        except ConnectionClosed:
            pass
        await closing
        return out

    async def collect(self, seconds: float) -> list[dict[str, Any]]:
        """Every message for ``seconds``: for a test that samples a stream, never for one that
        needs a given message to arrive (``collect_until``, ``push``)."""
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
