"""``Gateway``: the embeddable gateway object the CLI is a thin shell over: the ingest role and
one edge in one process, joined by the in-process bus. It wires the roles and does nothing
else:

- ``Ingest`` (``tickgate.node.ingest``): the provider adapter (or the embedded simulator
  feed), the subscription pool and the core's ``FeedProcessor``;
- ``Edge`` (``tickgate.node.edge``): the ``EdgeHub`` with the core's ``Dispatcher`` and the
  listener for clients, ``/healthz`` and ``/metrics``.

One update's path: provider frame -> adapter -> ``FeedProcessor.ingest`` -> bus ->
``EdgeHub.publish`` -> ``Dispatcher`` -> one buffer per client per event-loop turn. Interest
flows back the other way: client subscribe -> dispatcher (first receiver) -> bus -> pool ->
adapter. For a node of worker processes see ``tickgate.node.supervisor``.

    async with Gateway(GatewayConfig(port=0)) as gw:
        print(gw.url)            # clients connect here
        await gw.serve_forever()
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tickgate.bus.inprocess import InProcessBus
from tickgate.config import GatewayConfig
from tickgate.edge.metrics import make_renderer
from tickgate.logs import redact_url
from tickgate.node.edge import Edge
from tickgate.node.ingest import Ingest
from tickgate.node.view import health_of
from tickgate.upstream.connection import ProviderConnection
from tickgate.upstream.failover import Failover

log = logging.getLogger("tickgate.gateway")


class Gateway:
    def __init__(self, config: GatewayConfig | None = None) -> None:
        self.config = config or GatewayConfig()
        self.ingest = Ingest(self.config)
        self.edge = Edge(self.config)
        self.bus = InProcessBus(self.ingest.pool, self.ingest.history)
        self.edge.join(self.bus)
        self.bus.join(self.edge.hub, self.ingest.epoch)
        # Shortcuts to the parts an embedding service (and the tests) look at.
        self.processor = self.ingest.processor
        self.pool = self.ingest.pool
        self.hub = self.edge.hub
        self.dispatcher = self.edge.dispatcher
        self.zstd_dictionary = self.edge.zstd_dictionary
        self._render_metrics = make_renderer(self.stats)
        self._stopped = asyncio.Event()

    @property
    def upstream(self) -> ProviderConnection | Failover | None:
        return self.ingest.upstream

    @property
    def simulator(self) -> Any:
        return self.ingest.simulator

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self.ingest.start(self.bus.publish, self.bus.feed)
            await self.edge.start(self.health, self._render_metrics)
        except BaseException:
            # Whatever did start (simulator, upstream task) must not outlive a failed start.
            await self.stop()
            raise
        log.info("tickgate listening on %s (upstream %s)", self.url, redact_url(self.ingest.upstream_url))

    async def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        await self.edge.stop()
        await self.ingest.stop()
        log.info("tickgate stopped")

    async def serve_forever(self) -> None:
        await self._stopped.wait()

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self.edge.port

    @property
    def url(self) -> str:
        return self.edge.url

    # -- embedding --------------------------------------------------------------------------

    def feed(self, frame: bytes | str) -> int:
        """Pushes one provider (iTick-protocol) frame through the core and the fan-out, for
        services that bring their own feed; returns how many updates it held. Raises
        ``DecodeError`` for a malformed frame."""
        updates, _controls = self.processor.ingest(frame)
        if updates:
            self.ingest.history.ring.append(updates)
            self.bus.publish(updates)
        return len(updates)

    # -- observability ----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {
            **self.hub.stats(),
            "upstream": self.ingest.upstream_status(),
            "replay": self.ingest.history.ring.stats(),
        }

    def health(self) -> dict[str, Any]:
        return health_of(self.stats(), self.processor.epoch)
