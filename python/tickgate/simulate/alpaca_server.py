"""``AlpacaSimulator``: a local stand-in for an Alpaca-style market-data stream (a backup
provider: trades, top-of-book quotes, minute bars).

Protocol (``../shared/reference/providers.md``): every server frame is a JSON array. On connect
``[{"T":"success","msg":"connected"}]``; auth by the ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY``
headers or ``{"action":"auth","key":..,"secret":..}`` within ``auth_timeout``, answered
``[{"T":"success","msg":"authenticated"}]`` or ``[{"T":"error","code":402,"msg":"auth failed"}]``
(then closed). ``{"action":"subscribe"|"unsubscribe","trades":[..],"quotes":[..],"bars":[..]}``
is answered with the whole current set (``{"T":"subscription",...}``). Data is batched per
emitter turn: trades ``{"T":"t","S","p","s","t"}``, quotes ``{"T":"q","S","bp","bs","ap","as","t"}``,
bars ``{"T":"b","S","o","h","l","c","v","t"}`` every ``bar_interval`` seconds; times RFC 3339
with nanoseconds. Errors: 400 invalid syntax, 401 not authenticated, 402 auth failed, 404 auth
timeout, 405 symbol limit exceeded.

Prices come from the same seeded ``MarketModel`` as the other simulators, built independently
of the core's decoder. Faults for failure tests: ``freeze()`` / ``thaw()``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
)

from .backup_server import BackupSimulator
from .market import Symbol, parse_symbol

_STREAMS = ("trades", "quotes", "bars")


@dataclass(frozen=True)
class AlpacaConfig:
    host: str = "127.0.0.1"
    port: int = 0
    rate: float = 2.0  # trades (and quotes) per second per subscribed symbol
    seed: int = 1
    credentials: frozenset[tuple[str, str]] | None = None  # (key, secret); None: any non-empty
    max_symbols: int = 30
    bar_interval: float = 60.0
    auth_timeout: float = 10.0


def rfc3339(ms: int) -> str:
    """``2021-02-22T15:51:44.208000000Z``: Alpaca's nanosecond form."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}000000Z"


class _Session(WSListener):
    def __init__(self, sim: AlpacaSimulator, key: str | None, secret: str | None) -> None:
        self.sim = sim
        self.transport: WSTransport | None = None
        self.authenticated = False
        self._header_credentials = (key, secret) if key and secret else None
        self.streams: dict[str, dict[str, Symbol]] = {name: {} for name in _STREAMS}
        self._timer: asyncio.TimerHandle | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.sim.sessions.add(self)
        self.send([{"T": "success", "msg": "connected"}])
        if self._header_credentials is not None:
            self._auth(*self._header_credentials)
        else:
            self._timer = asyncio.get_running_loop().call_later(
                self.sim.config.auth_timeout, self._auth_timeout
            )
        if self.sim.frozen:
            transport.underlying_transport.pause_reading()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.sim.sessions.discard(self)
        if self._timer is not None:
            self._timer.cancel()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.CLOSE:
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()
            return
        if frame.msg_type is not WSMsgType.TEXT:
            return
        try:
            command = json.loads(frame.get_payload_as_bytes())
            action = command["action"]
        except (ValueError, KeyError, TypeError):
            self.error(400, "invalid syntax")
            return
        if action == "auth":
            self._auth(str(command.get("key", "")), str(command.get("secret", "")))
        elif not self.authenticated:
            self.error(401, "not authenticated")
        elif action in ("subscribe", "unsubscribe"):
            self._subscription(action, command)
        else:
            self.error(400, "invalid syntax")

    def _auth(self, key: str, secret: str) -> None:
        allowed = self.sim.config.credentials
        if not key or not secret or (allowed is not None and (key, secret) not in allowed):
            self.error(402, "auth failed")
            self.close()
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.authenticated = True
        self.send([{"T": "success", "msg": "authenticated"}])

    def _auth_timeout(self) -> None:
        self._timer = None
        if not self.authenticated:
            self.error(404, "auth timeout")
            self.close()

    def _subscription(self, action: str, command: dict[str, Any]) -> None:
        for stream in _STREAMS:
            names = command.get(stream) or []
            if not isinstance(names, list):
                self.error(400, "invalid syntax")
                return
            for raw in names:
                symbol = parse_symbol(f"{str(raw).strip().upper()}$US")
                if symbol is None:
                    continue
                if action == "unsubscribe":
                    self.streams[stream].pop(str(raw), None)
                elif str(raw) not in self.streams[stream]:
                    held = {s for subs in self.streams.values() for s in subs}
                    if str(raw) not in held and len(held) >= self.sim.config.max_symbols:
                        self.error(405, "symbol limit exceeded")
                        return
                    self.streams[stream][str(raw)] = symbol
        self.send([{"T": "subscription", **{s: sorted(self.streams[s]) for s in _STREAMS}}])

    def error(self, code: int, msg: str) -> None:
        self.send([{"T": "error", "code": code, "msg": msg}])

    def close(self) -> None:
        if self.transport is not None:
            self.transport.send_close(WSCloseCode.POLICY_VIOLATION)
            self.transport.disconnect()

    def send(self, messages: list[dict[str, Any]]) -> None:
        transport = self.transport
        if transport is None or transport.is_disconnected or self.sim.frozen:
            return
        transport.send(WSMsgType.TEXT, json.dumps(messages, separators=(",", ":")).encode())


class AlpacaSimulator(BackupSimulator):
    protocol = "Alpaca"

    def __init__(self, config: AlpacaConfig = AlpacaConfig()) -> None:
        super().__init__(config.host, config.port, config.seed)
        self.config = config
        self._next_bar = 0.0

    async def start(self) -> None:
        self._next_bar = time.monotonic() + self.config.bar_interval
        await super().start()

    @property
    def url(self) -> str:
        return f"ws://{self.config.host}:{self.port}/v2/test"

    def subscriptions(self) -> dict[str, set[str]]:
        """Every subscribed symbol per stream, over all connections."""
        return {s: {name for session in self.sessions for name in session.streams[s]} for s in _STREAMS}

    def _accept(self, request: WSUpgradeRequest) -> WSListener:
        headers = request.headers
        return _Session(self, headers.get("APCA-API-KEY-ID"), headers.get("APCA-API-SECRET-KEY"))

    async def _run(self) -> None:
        period = 1.0 / self.config.rate if self.config.rate > 0 else 1.0
        while True:
            await asyncio.sleep(period)
            if self.frozen or self.config.rate <= 0:
                continue
            now_ms = int(time.time() * 1000)
            bars_due = time.monotonic() >= self._next_bar
            if bars_due:
                self._next_bar = time.monotonic() + self.config.bar_interval
            for session in list(self.sessions):
                if session.authenticated:
                    batch = self._batch(session, now_ms, bars_due)
                    if batch:
                        session.send(batch)

    def _batch(self, session: _Session, now_ms: int, bars_due: bool) -> list[dict[str, Any]]:
        stamp = rfc3339(now_ms)
        out: list[dict[str, Any]] = []
        for raw, symbol in session.streams["trades"].items():
            tick = self._model.market(symbol).next_tick(now_ms)
            out.append({"T": "t", "S": raw, "p": float(tick.price), "s": float(tick.volume), "t": stamp})
        for raw, symbol in session.streams["quotes"].items():
            market = self._model.market(symbol)
            last = float(market.last)
            out.append(
                {
                    "T": "q",
                    "S": raw,
                    "bp": float(market.round_price(last * 0.9995)),
                    "bs": 1,
                    "ap": float(market.round_price(last * 1.0005)),
                    "as": 2,
                    "t": stamp,
                }
            )
        if bars_due:
            for raw, symbol in session.streams["bars"].items():
                last = float(self._model.market(symbol).last)
                minute = rfc3339(now_ms - now_ms % 60_000)
                out.append(
                    {"T": "b", "S": raw, "o": last, "h": last, "l": last, "c": last, "v": 100, "t": minute}
                )
        return out
