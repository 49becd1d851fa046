"""``Ingest``: the role that talks to the provider. It holds the provider adapter (or starts
the embedded simulator feed), the global subscription pool and the core's ``FeedProcessor``
(decode, normalize, derive, sequence). What it produces goes to one sink, the bus's ingest
side; interest reaches it through the pool."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any

from tickgate._core import FeedProcessor, Update
from tickgate.config import GatewayConfig
from tickgate.upstream.base import UpstreamState
from tickgate.upstream.itick import ItickAdapter
from tickgate.upstream.pool import SubscriptionPool
from tickgate.upstream.settings import UpstreamSettings

log = logging.getLogger("tickgate.ingest")


class Ingest:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.processor = FeedProcessor(ItickAdapter.provider)
        self.pool = SubscriptionPool()
        self.simulator: Any = None  # tickgate.simulate.ItickSimulator when embedded
        self.upstream: ItickAdapter | None = None
        self.upstream_url: str | None = None

    @property
    def epoch(self) -> str:
        return self.processor.epoch

    async def start(self, publish: Callable[[list[Update]], None]) -> None:
        """Connects upstream (starting the embedded simulator first when no URL is set);
        every update decoded from then on goes to ``publish``."""
        cfg = self.config
        url, token = cfg.upstream_url, cfg.upstream_token
        if cfg.embedded_upstream:
            url, token = await self._start_simulator()
        assert url is not None
        self.upstream_url = url
        settings = UpstreamSettings.from_config(cfg, url, token)
        self.upstream = ItickAdapter(settings, self.processor, publish, self.pool.refused)
        self.pool.attach(self.upstream)
        await self.upstream.start()

    async def _start_simulator(self) -> tuple[str, str]:
        from tickgate.simulate import ItickSimulator, SimulatorConfig

        token = secrets.token_hex(16)
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

    async def stop(self) -> None:
        if self.upstream is not None:
            await self.upstream.stop()
        if self.simulator is not None:
            await self.simulator.stop()

    def upstream_status(self) -> dict[str, Any]:
        if self.upstream is not None:
            return self.upstream.status()
        return {
            "provider": ItickAdapter.name,
            "state": UpstreamState.IDLE.value,
            "reconnects": 0,
            "frames_in": 0,
            "decode_errors": 0,
        }
