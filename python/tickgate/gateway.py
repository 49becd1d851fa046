"""``Gateway``: the embeddable gateway object the CLI is a thin shell over. It wires the roles
together and does nothing else:

- ingest: the provider adapter (or the embedded simulator feed), the subscription pool and the
  core's ``FeedProcessor`` (decode, normalize, derive, sequence);
- edge: the ``EdgeHub`` with the core's ``Dispatcher`` (fan-out, outboxes, batches) and the
  listener for clients, ``/healthz`` and ``/metrics``.

One update's path: provider frame -> adapter -> ``FeedProcessor.ingest`` -> ``EdgeHub.publish``
-> ``Dispatcher`` -> one buffer per client per event-loop turn. Interest flows back the other
way: client subscribe -> dispatcher (first receiver) -> pool -> adapter.

    async with Gateway(GatewayConfig(port=0)) as gw:
        print(gw.url)            # clients connect here
        await gw.serve_forever()
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Any

from picows import WSCloseCode, ws_create_server

from tickgate._core import FeedProcessor
from tickgate.config import GatewayConfig
from tickgate.edge.admission import (
    derive_max_connections,
    install_accept_error_filter,
    open_listeners,
    raise_file_limit,
)
from tickgate.edge.hub import EdgeHub, make_dispatcher
from tickgate.edge.listener import make_router
from tickgate.edge.metrics import make_renderer
from tickgate.edge.zstd_dictionary import load_zstd_dictionary
from tickgate.upstream.base import UpstreamState
from tickgate.upstream.itick import ItickAdapter
from tickgate.upstream.pool import SubscriptionPool
from tickgate.upstream.settings import UpstreamSettings

log = logging.getLogger("tickgate.gateway")

#: How long stop() waits for clients to take their close frames.
CLOSE_GRACE_S = 2.0


class Gateway:
    def __init__(self, config: GatewayConfig | None = None) -> None:
        self.config = config or GatewayConfig()
        self.processor = FeedProcessor(ItickAdapter.provider)
        self.zstd_dictionary = load_zstd_dictionary(self.config.zstd_dictionary)
        self.dispatcher = make_dispatcher(self.config, self.zstd_dictionary)
        # Updates flow adapter -> hub; interest flows hub -> pool -> adapter; refusals flow
        # adapter -> pool -> hub.
        self.pool = SubscriptionPool()
        self.hub = EdgeHub(self.config, self.dispatcher, self.pool, self.processor.epoch)
        self.pool.on_refused(self.hub.on_refused)
        self.simulator: Any = None  # tickgate.simulate.ItickSimulator when embedded
        self.upstream: ItickAdapter | None = None
        self._render_metrics = make_renderer(self.stats)
        self._servers: list[Any] = []
        self._uninstall_filter: Callable[[], None] | None = None
        self._stopped = asyncio.Event()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            # Whatever did start (simulator, upstream task) must not outlive a failed start.
            await self.stop()
            raise

    async def _start(self) -> None:
        cfg = self.config
        url, token = cfg.upstream_url, cfg.upstream_token
        if cfg.embedded_upstream:
            url, token = await self._start_simulator()
        assert url is not None
        settings = UpstreamSettings.from_config(cfg, url, token)
        self.upstream = ItickAdapter(settings, self.processor, self.hub.publish, self.pool.refused)
        self.pool.attach(self.upstream)
        await self.upstream.start()
        file_limit = raise_file_limit()
        if self.hub.max_connections is None:
            self.hub.max_connections = derive_max_connections(file_limit)
        if cfg.client_transport == "aiofastnet":  # uvloop's own server does not report EMFILE
            self._uninstall_filter = install_accept_error_filter(asyncio.get_running_loop())
        self.hub.liveness.start()
        router = make_router(self.hub, self.health, self._render_metrics, self.zstd_dictionary)
        for sock in open_listeners(cfg.host, cfg.port):
            server = await ws_create_server(
                router,
                sock=sock,
                max_frame_size=cfg.max_message_bytes,
                read_buffer_init_size=cfg.client_read_buffer_bytes,
                use_aiofastnet=cfg.client_transport == "aiofastnet",
                logger_name="tickgate.ws",
                # Half-open clients are found by the hub's one liveness sweep, not a timer each.
                enable_auto_ping=False,
            )
            self._servers.append(server)
        log.info("admitting up to %d clients (file limit %d)", self.hub.max_connections, file_limit)
        ws_log = logging.getLogger("picows.tickgate.ws")
        if ws_log.level == logging.NOTSET:  # per-connection INFO lines are noise at scale
            ws_log.setLevel(logging.WARNING)
        log.info("tickgate listening on %s (upstream %s)", self.url, url)

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
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.hub.close_all(WSCloseCode.GOING_AWAY, "gateway shutting down")
        if self.upstream is not None:
            await self.upstream.stop()
        for server in self._servers:
            server.close()
        for server in self._servers:
            try:
                await asyncio.wait_for(server.wait_closed(), CLOSE_GRACE_S)
            except TimeoutError:
                server.abort_clients()
        if self.simulator is not None:
            await self.simulator.stop()
        if self._uninstall_filter is not None:
            self._uninstall_filter()
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
        return self._servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        host = self.config.host
        return f"ws://{f'[{host}]' if ':' in host else host}:{self.port}/"

    # -- embedding --------------------------------------------------------------------------

    def feed(self, frame: bytes | str) -> int:
        """Pushes one provider (iTick-protocol) frame through the core and the fan-out, for
        services that bring their own feed; returns how many updates it held. Raises
        ``DecodeError`` for a malformed frame."""
        updates, _controls = self.processor.ingest(frame)
        if updates:
            self.hub.publish(updates)
        return len(updates)

    # -- observability ----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        up = (
            self.upstream.status()
            if self.upstream is not None
            else {
                "provider": ItickAdapter.name,
                "state": UpstreamState.IDLE.value,
                "reconnects": 0,
                "frames_in": 0,
                "decode_errors": 0,
            }
        )
        return {**self.hub.stats(), "upstream": up}

    def health(self) -> dict[str, Any]:
        s = self.stats()
        ready = s["upstream"]["state"] == UpstreamState.READY.value
        return {
            "status": "ok" if ready else "degraded",
            "epoch": self.processor.epoch,
            "upstream": s["upstream"],
            "connections": s["connections"],
            "subscriptions": {"channels": s["channels"], "pairs": s["subscriptions"]},
        }
