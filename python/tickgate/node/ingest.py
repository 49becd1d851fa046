"""``Ingest``: the role that talks to the provider. It holds the provider adapter (or starts
the embedded simulator feed), the global subscription pool and the core's ``FeedProcessor``
(decode, normalize, derive, sequence). What it produces goes to one sink, the bus's ingest
side; interest reaches it through the pool."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Any

from tickgate._core import FeedProcessor, ReplayRing, Update, split_channel
from tickgate.bus.base import FeedState
from tickgate.config import GatewayConfig, parse_symbol_map
from tickgate.sessions.history import History
from tickgate.status import StaleReason
from tickgate.upstream import ADAPTERS
from tickgate.upstream.base import UpstreamState
from tickgate.upstream.connection import ProviderConnection
from tickgate.upstream.failover import Failover
from tickgate.upstream.pool import SubscriptionPool
from tickgate.upstream.settings import UpstreamSettings

log = logging.getLogger("tickgate.ingest")

#: How often the replay ring drops what aged out while no updates came.
EVICT_EVERY_S = 5.0
#: How long ``start`` waits for the provider to be ready, so clients of a healthy gateway never
#: see their first channels stale; a provider that is not ready by then is reported as such.
READY_WAIT_S = 2.0


class Ingest:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.processor = FeedProcessor(
            config.upstream_provider,
            max_past_ms=int(config.upstream_max_event_age * 1000),
            max_future_ms=int(config.upstream_max_event_lead * 1000),
        )
        self.pool = SubscriptionPool(max_symbols=config.upstream_max_symbols)
        # A channel no longer streamed has a hole in its updates from now on: its next seq
        # skips one, so no client resumes across it believing it missed nothing.
        self.pool.on_dropped(self.processor.mark_gap)
        # A symbol nobody holds any more is released after the grace period (symbol -> timer).
        self.pool.on_dropped(self._release_later)
        self._releasing: dict[str, asyncio.TimerHandle] = {}
        self.simulator: Any = None  # tickgate.simulate.ItickSimulator when embedded
        self.upstream: ProviderConnection | Failover | None = None
        self.upstream_url: str | None = None
        #: Recent updates per channel, for snapshots and resume.
        self.history = History(
            ReplayRing(window_ms=int(config.replay_window * 1000), max_bytes=config.replay_max_bytes),
            self.processor,
        )
        self._evictor: asyncio.TimerHandle | None = None
        #: Whether the provider feed is delivering (clients' channels are stale while not).
        self.feed = FeedState(up=False, reason=StaleReason.UPSTREAM_DOWN)

    @property
    def epoch(self) -> str:
        return self.processor.epoch

    async def start(
        self,
        publish: Callable[[list[Update]], None],
        feed: Callable[[FeedState], None] | None = None,
    ) -> None:
        """Connects upstream (starting the embedded simulator first when no URL is set);
        every update decoded from then on goes into the replay ring and to ``publish``, and
        each change of the feed's state to ``feed``. Waits up to ``READY_WAIT_S`` for the
        provider to be ready."""
        cfg = self.config
        url, token = cfg.upstream_url, cfg.upstream_token
        if cfg.embedded_upstream:
            url, token = await self._start_simulator()
        assert url is not None
        self.upstream_url = url
        ring = self.history.ring

        def keep_and_publish(updates: list[Update]) -> None:
            ring.append(updates)
            publish(updates)

        def feed_changed(up: bool, reason: str, unserved: tuple[str, ...] = ()) -> None:
            self.feed = FeedState(up=up, reason=reason, unserved=unserved)
            if up:
                log.info("provider feed delivering")
            else:
                log.warning("provider feed down (%s): clients' channels are stale", reason)
                self.processor.mark_gap(self.pool.channels())  # what it misses now is lost
            if feed is not None:
                feed(self.feed)

        self._evict_later()
        settings = UpstreamSettings.from_config(cfg, url, token)
        adapter = ADAPTERS[cfg.upstream_provider]
        primary = adapter(settings, self.processor, keep_and_publish, self.pool.refused, feed_changed)
        primary.map_symbols(parse_symbol_map(cfg.upstream_symbols))
        if cfg.backup_provider is None or cfg.backup_url is None:
            self.upstream = primary
        else:
            backup_settings = UpstreamSettings.from_config(cfg, cfg.backup_url, cfg.backup_token)
            backup = ADAPTERS[cfg.backup_provider](
                backup_settings, self.processor, keep_and_publish, self.pool.refused, None
            )
            backup.map_symbols(parse_symbol_map(cfg.backup_symbols))
            self.upstream = Failover(
                primary,
                backup,
                self.processor,
                keep_and_publish,
                self.pool.refused,
                feed_changed,
                failover_after_s=cfg.failover_after,
                failback_after_s=cfg.failback_after,
            )
        self.pool.attach(self.upstream)
        await self.upstream.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.upstream.ready_event.wait(), READY_WAIT_S)
        if not self.feed.up and feed is not None:
            feed(self.feed)  # not ready yet: say so (the adapter tells when it is)

    async def _start_simulator(self) -> tuple[str, str]:
        from tickgate.simulate import ItickSimulator, SimulatorConfig
        from tickgate.simulate.finnhub_server import FinnhubConfig, FinnhubSimulator

        token = secrets.token_hex(16)
        if self.config.upstream_provider == "alpaca":
            from tickgate.simulate.alpaca_server import AlpacaConfig, AlpacaSimulator

            key, secret = secrets.token_hex(8), secrets.token_hex(8)
            self.simulator = AlpacaSimulator(
                AlpacaConfig(
                    rate=self.config.simulator_rate,
                    seed=self.config.simulator_seed,
                    credentials=frozenset({(key, secret)}),
                )
            )
            await self.simulator.start()
            log.info("embedded Alpaca-style simulator on %s", self.simulator.url)
            return self.simulator.url, f"{key}:{secret}"
        if self.config.upstream_provider == "finnhub":
            self.simulator = FinnhubSimulator(
                FinnhubConfig(
                    rate=self.config.simulator_rate,
                    seed=self.config.simulator_seed,
                    tokens=frozenset({token}),
                )
            )
            await self.simulator.start()
            log.info("embedded Finnhub-style simulator on %s", self.simulator.url)
            return self.simulator.url, token
        self.simulator = ItickSimulator(
            SimulatorConfig(
                host="127.0.0.1",
                port=0,
                rate=self.config.simulator_rate,
                seed=self.config.simulator_seed,
                tokens=frozenset({token}),
                symbol_style="dollar",
            )
        )
        await self.simulator.start()
        log.info("embedded iTick simulator on %s", self.simulator.url)
        return self.simulator.url, token

    def _release_later(self, channels: list[str]) -> None:
        symbols = {split_channel(c)[0] for c in channels}
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not serving (a test driving the pool by hand)
        for symbol in symbols:
            if not self.pool.holds_symbol(symbol):
                pending = self._releasing.pop(symbol, None)
                if pending is not None:  # dropped again: the grace runs from now
                    pending.cancel()
                self._releasing[symbol] = loop.call_later(
                    self.config.symbol_release_grace, self._release, symbol
                )

    def _release(self, symbol: str) -> None:
        del self._releasing[symbol]
        if self.pool.holds_symbol(symbol):
            return  # wanted again meanwhile
        self.processor.release([symbol])
        self.history.ring.forget_symbols([symbol])

    def _evict_later(self) -> None:
        # Appends evict as they go; this ages out channels that went quiet.
        self.history.ring.evict()
        self._evictor = asyncio.get_running_loop().call_later(EVICT_EVERY_S, self._evict_later)

    async def stop(self) -> None:
        if self._evictor is not None:
            self._evictor.cancel()
        for timer in self._releasing.values():
            timer.cancel()
        self._releasing.clear()
        if self.upstream is not None:
            await self.upstream.stop()
        if self.simulator is not None:
            await self.simulator.stop()

    def upstream_status(self) -> dict[str, Any]:
        if self.upstream is not None:
            return self.upstream.status()
        return {
            "provider": self.config.upstream_provider,
            "state": UpstreamState.IDLE.value,
            "reconnects": 0,
            "frames_in": 0,
            "decode_errors": 0,
            "dropped": {},
        }
