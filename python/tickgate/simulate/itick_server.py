"""A local iTick WebSocket server: the iTick protocol over picows, fed by the seeded market model.

One simulator serves any number of connections. Market state is per symbol and shared, so every connection
subscribed to a symbol sees the same prices. Data is driven by a single timer: a heap of per-symbol due times,
so thousands of symbols cost one task and a heap pop per update rather than a task each.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from picows import (
    WSCloseCode,
    WSListener,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from . import itick_protocol as protocol
from .itick_session import MAX_MESSAGE_BYTES, ItickSession, upgrade_token
from .market import MarketModel, Symbol, stable_seed

log = logging.getLogger("tickgate.simulate")

_COMMAND_HISTORY = 10_000  # commands kept for tests to inspect
_TIMER_INTERVAL = 0.05
_MIN_TIMER_INTERVAL = 0.005
_MAX_LAG = 1.0  # seconds a symbol may fall behind before its schedule skips ahead
_STOP_GRACE = 2.0  # seconds stop() lets closing connections flush before aborting them
_REASON_SLOW_CONSUMER = "slow consumer"


@dataclass(frozen=True)
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0 picks a free port; ItickSimulator.port has the bound one after start()
    rate: float = 2.0  # updates per second per subscribed symbol (each subscribed type once)
    seed: int = 1
    tokens: frozenset[str] | None = None  # None accepts any non-empty token
    max_subscriptions: int = 1000  # symbols per connection
    single_connection_per_token: bool = True  # a newer connection with a token evicts the older one
    symbol_style: str = "dot"  # "dot": "s":"AAPL.US"; "dollar": "s":"AAPL$US"
    kline_style: str = "flat"  # "flat": type "kline@N"; "nested": code 0, period in "t", bar in "k"
    max_buffer: int = 4 * 1024 * 1024  # write backlog (bytes) at which a slow consumer is disconnected
    auth_timeout: float = 10.0  # seconds a connection may stay unauthenticated

    def __post_init__(self) -> None:
        if self.rate < 0:
            raise ValueError(f"rate must be >= 0 (0 sends no market data), not {self.rate}")
        if self.max_subscriptions < 0:
            raise ValueError(f"max_subscriptions must be >= 0, not {self.max_subscriptions}")
        if self.max_buffer <= 0:
            raise ValueError(f"max_buffer must be > 0, not {self.max_buffer}")
        if self.auth_timeout <= 0:
            raise ValueError(f"auth_timeout must be > 0, not {self.auth_timeout}")
        if self.symbol_style not in protocol.SYMBOL_STYLES:
            raise ValueError(
                f"symbol_style must be one of {protocol.SYMBOL_STYLES}, not {self.symbol_style!r}"
            )
        if self.kline_style not in protocol.KLINE_STYLES:
            raise ValueError(f"kline_style must be one of {protocol.KLINE_STYLES}, not {self.kline_style!r}")
        if self.tokens is not None and not isinstance(self.tokens, frozenset):
            # Accept any iterable of tokens but keep the config hashable and immutable.
            object.__setattr__(self, "tokens", frozenset(self.tokens))


class ItickSimulator:
    """A faithful, seeded iTick WebSocket server for tests, benchmarks and offline development."""

    def __init__(self, config: SimulatorConfig = SimulatorConfig()) -> None:
        self.config = config
        self.commands: list[dict[str, Any]] = []
        self._model = MarketModel(config.seed)
        self._encoder = protocol.PushEncoder(config.symbol_style, config.kline_style)
        self._server: asyncio.AbstractServer | None = None
        self._port: int | None = None
        self._running = False
        self._stopped = False
        self._sessions: set[ItickSession] = set()
        self._watchers: dict[str, set[ItickSession]] = {}
        # Per-symbol next due time (loop clock); heap entries not matching it are stale and skipped.
        self._next_due: dict[str, float] = {}
        self._schedule: list[tuple[float, str]] = []
        self._emitter: asyncio.Task[None] | None = None
        #: Faults for failure tests (what a real provider does on its bad days):
        #: ``answer_auth`` False greets and never answers the auth; ``frozen`` (``freeze``)
        #: keeps every TCP connection open and reads, writes and emits nothing.
        self.answer_auth = True
        self.frozen = False

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the listener and start the data timer."""
        if self._running or self._stopped:
            raise RuntimeError("an ItickSimulator can be started once")
        server = await ws_create_server(
            self._accept,
            self.config.host,
            self.config.port,
            max_frame_size=MAX_MESSAGE_BYTES,
            enable_auto_pong=True,
            logger_name="tickgate.simulate",
        )
        self._server = server
        self._port = int(server.sockets[0].getsockname()[1])
        self._running = True
        if self.config.rate > 0:
            self._emitter = asyncio.get_running_loop().create_task(
                self._run_emitter(), name="itick-simulator-emitter"
            )
        log.info(
            "iTick simulator listening on %s (seed %d, %.3g updates/s per symbol)",
            self.url,
            self.config.seed,
            self.config.rate,
        )

    async def stop(self) -> None:
        """Close every connection and the listener and cancel the timer; safe to call more than once."""
        if self._stopped:
            return
        self._stopped = True
        self._running = False
        if self._emitter is not None:
            self._emitter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._emitter
            self._emitter = None
        for session in list(self._sessions):
            session.close(WSCloseCode.GOING_AWAY.value, "simulator stopping")
        server = self._server
        if server is None:
            return
        server.close()
        try:
            await asyncio.wait_for(server.wait_closed(), _STOP_GRACE)
        except TimeoutError:
            # A peer that never reads (or a half-open handshake) must not hold up shutdown.
            abort_clients: Callable[[], None] | None = getattr(server, "abort_clients", None)
            if abort_clients is not None:
                abort_clients()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(server.wait_closed(), _STOP_GRACE)

    async def serve_forever(self) -> None:
        """Start and serve until cancelled, then stop."""
        await self.start()
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            await self.stop()

    # -- observability -----------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the simulator is not started; call start() first")
        return self._port

    @property
    def url(self) -> str:
        host = self.config.host or "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"ws://{host}:{self.port}/stock"

    @property
    def connection_count(self) -> int:
        return len(self._sessions)

    def subscriptions(self) -> dict[str, set[str]]:
        """Union over live connections: canonical symbol (``AAPL$US``) -> subscribed types."""
        union: dict[str, set[str]] = {}
        for canonical, watchers in self._watchers.items():
            types: set[str] = set()
            for session in watchers:
                types |= session.subscriptions.get(canonical, set())
            if types:
                union[canonical] = types
        return union

    async def wait_for(self, predicate: Callable[[ItickSimulator], object], timeout: float = 5.0) -> None:
        """Return once ``predicate(self)`` is true; TimeoutError when it stays false for ``timeout`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self):
            if loop.time() >= deadline:
                raise TimeoutError(f"simulator condition still false after {timeout} s")
            await asyncio.sleep(0.01)

    def freeze(self) -> None:
        """Like a provider process stopped (SIGSTOP): connections stay open, nothing is read
        (so pings go unanswered), nothing is sent, no market data."""
        self.frozen = True
        for session in self._sessions:
            session.pause_reading(True)

    def thaw(self) -> None:
        self.frozen = False
        for session in self._sessions:
            session.pause_reading(False)

    def drop_connections(self, code: int = WSCloseCode.GOING_AWAY.value) -> int:
        """Close every live client connection at once (close frame with ``code``, then FIN); how many."""
        sessions = list(self._sessions)
        for session in sessions:
            session.close(code, "dropped by simulator")
        return len(sessions)

    # -- session bookkeeping (called by sessions) --------------------------------------------------------

    def _accept(self, request: WSUpgradeRequest) -> WSListener | WSUpgradeResponseWithListener:
        if not self._running:
            response = WSUpgradeResponse.create_error_response(
                HTTPStatus.SERVICE_UNAVAILABLE, b"simulator stopping"
            )
            return WSUpgradeResponseWithListener(response, None)
        return ItickSession(self, upgrade_token(request))

    def _register(self, session: ItickSession) -> None:
        self._sessions.add(session)
        if self.frozen:
            session.pause_reading(True)

    def _unregister(self, session: ItickSession) -> None:
        self._sessions.discard(session)
        for canonical in list(session.subscriptions):
            self._unwatch(session, canonical)
        session.subscriptions.clear()
        session.push_types.clear()

    def _record_command(self, command: dict[str, Any]) -> None:
        self.commands.append(command)
        if len(self.commands) > _COMMAND_HISTORY:
            del self.commands[0]

    def _accepts_token(self, token: str) -> bool:
        if not token:
            return False
        return self.config.tokens is None or token in self.config.tokens

    def _claim_token(self, owner: ItickSession) -> None:
        if not self.config.single_connection_per_token:
            return
        for session in list(self._sessions):
            if session is not owner and session.authenticated and session.token == owner.token:
                session.close(WSCloseCode.POLICY_VIOLATION.value, "another connection used this token")

    def _watch(self, session: ItickSession, symbol: Symbol) -> None:
        canonical = symbol.canonical
        watchers = self._watchers.get(canonical)
        if watchers is None:
            watchers = self._watchers[canonical] = set()
            self._model.market(symbol)  # creates the state, so later lookups take the canonical fast path
            if self.config.rate > 0:
                # A stable per-symbol phase spreads symbols over the period instead of firing in bursts.
                period = 1.0 / self.config.rate
                phase = period * (stable_seed(canonical) % 1000) / 1000.0
                self._reschedule(canonical, asyncio.get_running_loop().time() + phase)
        watchers.add(session)

    def _unwatch(self, session: ItickSession, canonical: str) -> None:
        watchers = self._watchers.get(canonical)
        if watchers is None:
            return
        watchers.discard(session)
        if not watchers:
            del self._watchers[canonical]
            self._next_due.pop(canonical, None)

    def _reschedule(self, canonical: str, due: float) -> None:
        self._next_due[canonical] = due
        heapq.heappush(self._schedule, (due, canonical))

    # -- market data -------------------------------------------------------------------------------------

    async def _run_emitter(self) -> None:
        loop = asyncio.get_running_loop()
        interval = max(_MIN_TIMER_INTERVAL, min(_TIMER_INTERVAL, 1.0 / self.config.rate))
        while True:
            await asyncio.sleep(interval)
            if self.frozen:
                continue
            try:
                self._emit_due(loop.time())
            except Exception:
                log.exception("iTick simulator failed to emit market data")

    def _emit_due(self, now: float) -> None:
        period = 1.0 / self.config.rate
        # Stamp each update with the wall-clock moment it was due, not when the timer got round to it.
        wall_offset_ms = time.time() * 1000.0 - now * 1000.0
        schedule = self._schedule
        written: set[ItickSession] = set()
        while schedule and schedule[0][0] <= now:
            due, canonical = heapq.heappop(schedule)
            if self._next_due.get(canonical) != due:
                continue  # unwatched (or rescheduled) since this entry was pushed
            watchers = self._watchers.get(canonical)
            if not watchers:
                self._next_due.pop(canonical, None)
                continue
            # Reschedule first: whatever publishing runs into, the symbol keeps its place in the schedule.
            next_due = due + period
            if next_due < now - _MAX_LAG:
                next_due = now + period
            self._reschedule(canonical, next_due)
            self._publish(canonical, watchers, int(due * 1000.0 + wall_offset_ms), written)
        limit = self.config.max_buffer
        for session in written:
            if session.write_backlog() > limit:
                log.info("iTick simulator disconnects a slow consumer (write backlog over %d bytes)", limit)
                session.close(WSCloseCode.POLICY_VIOLATION.value, _REASON_SLOW_CONSUMER, abort=True)

    def _publish(
        self, canonical: str, watchers: set[ItickSession], time_ms: int, written: set[ItickSession]
    ) -> None:
        market = self._model.market(canonical)
        tick = market.next_tick(time_ms)
        frames: dict[str, bytes] = {}
        for session in tuple(watchers):
            push_types = session.push_types.get(canonical)
            if not push_types:
                continue
            for data_type in push_types:
                frame = frames.get(data_type)
                if frame is None:
                    frame = frames[data_type] = self._encoder.encode(data_type, market, tick)
                try:
                    session.send(frame)
                except Exception:
                    # One broken connection must not starve the others of this update.
                    log.exception("iTick simulator could not write to a client; dropping it")
                    session.close(WSCloseCode.INTERNAL_ERROR.value, "write failed", abort=True)
                    break
            written.add(session)
