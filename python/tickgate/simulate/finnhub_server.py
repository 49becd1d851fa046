"""``FinnhubSimulator``: a local stand-in for a Finnhub-style trades feed (a backup provider).

Protocol (``../shared/reference/providers.md``): connect to ``ws://host:port/?token=KEY`` (a
missing or unknown token is refused at the upgrade with 401); send
``{"type":"subscribe","symbol":"AAPL"}`` / ``{"type":"unsubscribe","symbol":"AAPL"}``, one symbol
per message, no reply; trades come batched per emitter turn as
``{"type":"trade","data":[{"s":"AAPL","p":..,"t":ms,"v":..,"c":[..]},...]}``; a silent
connection gets ``{"type":"ping"}`` every ``ping_interval``; anything unreadable gets
``{"type":"error","msg":"..."}``. Symbols: bare codes are US listings, ``CODE.REGION`` others.

Prices come from the same seeded ``MarketModel`` as the iTick simulator, built independently of
the core's decoder. Faults for failure tests: ``freeze()`` / ``thaw()``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
)

from .backup_server import BackupSimulator
from .market import Symbol, parse_symbol


@dataclass(frozen=True)
class FinnhubConfig:
    host: str = "127.0.0.1"
    port: int = 0
    rate: float = 2.0  # trades per second per subscribed symbol
    seed: int = 1
    tokens: frozenset[str] | None = None  # None accepts any non-empty token
    max_symbols: int = 50  # Finnhub's free plan allows 50 symbols per connection
    ping_interval: float = 10.0


def finnhub_symbol(symbol: Symbol) -> str:
    """How Finnhub spells an instrument: a bare code for US listings, ``CODE.REGION`` else."""
    return symbol.code if symbol.region == "US" else symbol.dotted


def _parse(raw: str) -> Symbol | None:
    text = raw.strip().upper()
    return parse_symbol(text if "." in text or "$" in text else f"{text}$US")


class _Session(WSListener):
    def __init__(self, sim: FinnhubSimulator) -> None:
        self.sim = sim
        self.transport: WSTransport | None = None
        self.symbols: dict[str, Symbol] = {}  # Finnhub spelling -> instrument
        self.last_sent = time.monotonic()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.sim.sessions.add(self)
        if self.sim.frozen:
            transport.underlying_transport.pause_reading()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.sim.sessions.discard(self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.CLOSE:
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()
            return
        if frame.msg_type is not WSMsgType.TEXT:
            return
        try:
            command = json.loads(frame.get_payload_as_bytes())
            kind, raw = command["type"], str(command["symbol"])
        except (ValueError, KeyError, TypeError):
            self.send({"type": "error", "msg": "Invalid message"})
            return
        symbol = _parse(raw)
        if symbol is None:
            self.send({"type": "error", "msg": f"Invalid symbol {raw[:40]}"})
        elif kind == "subscribe":
            if raw not in self.symbols and len(self.symbols) >= self.sim.config.max_symbols:
                self.send({"type": "error", "msg": "Subscribing to too many symbols"})
            else:
                self.symbols[raw] = symbol
        elif kind == "unsubscribe":
            self.symbols.pop(raw, None)
        else:
            self.send({"type": "error", "msg": f"Unknown message type {str(kind)[:40]}"})

    def send(self, message: dict[str, object]) -> None:
        transport = self.transport
        if transport is None or transport.is_disconnected or self.sim.frozen:
            return
        transport.send(WSMsgType.TEXT, json.dumps(message, separators=(",", ":")).encode())
        self.last_sent = time.monotonic()


class FinnhubSimulator(BackupSimulator):
    protocol = "Finnhub"

    def __init__(self, config: FinnhubConfig = FinnhubConfig()) -> None:
        super().__init__(config.host, config.port, config.seed)
        self.config = config

    @property
    def url(self) -> str:
        return f"ws://{self.config.host}:{self.port}/"

    def subscriptions(self) -> set[str]:
        """Every symbol some connection is subscribed to (Finnhub spelling)."""
        return {s for session in self.sessions for s in session.symbols}

    def _accept(self, request: WSUpgradeRequest) -> WSListener | WSUpgradeResponseWithListener:
        tokens = parse_qs(urlsplit(request.path.decode("latin-1")).query).get("token", [""])
        token = tokens[0].strip()
        if not token or (self.config.tokens is not None and token not in self.config.tokens):
            response = WSUpgradeResponse.create_error_response(HTTPStatus.UNAUTHORIZED, b"invalid token")
            return WSUpgradeResponseWithListener(response, None)
        return _Session(self)

    async def _run(self) -> None:
        period = 1.0 / self.config.rate if self.config.rate > 0 else None
        while True:
            await asyncio.sleep(period or 1.0)
            if self.frozen:
                continue
            now_ms = int(time.time() * 1000)
            for session in list(self.sessions):
                trades = []
                if period is not None:
                    for raw, symbol in session.symbols.items():
                        tick = self._model.market(symbol).next_tick(now_ms)
                        trades.append(
                            {"s": raw, "p": float(tick.price), "t": now_ms, "v": float(tick.volume)}
                        )
                if trades:
                    session.send({"type": "trade", "data": trades})
                elif time.monotonic() - session.last_sent >= self.config.ping_interval:
                    session.send({"type": "ping"})
