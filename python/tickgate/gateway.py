"""``Gateway``: the embeddable gateway object the CLI is a thin shell over.

    async with Gateway(GatewayConfig(port=0)) as gw:
        print(gw.url)            # clients connect here
        await gw.serve_forever()

One update's path: provider frame -> ``ItickAdapter`` -> core (decode, normalize, derive,
sequence) -> ``Update`` -> ``SubscriptionIndex.receivers`` -> the same framed bytes written to
each receiver. A service that has its own feed calls ``feed(frame)`` to push provider
frames through the same path.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from picows import WSCloseCode, ws_create_server

from tickgate._core import FeedProcessor, SubscriptionIndex, Update
from tickgate.config import GatewayConfig
from tickgate.errors import ErrorCode
from tickgate.server.connection import ClientConnection
from tickgate.server.listener import make_router
from tickgate.server.metrics import make_registry
from tickgate.server.protocol import CommandHandler, error_message
from tickgate.upstream.base import UpstreamState
from tickgate.upstream.itick import ItickAdapter
from tickgate.upstream.pool import SubscriptionPool

log = logging.getLogger("tickgate.gateway")

#: How long stop() waits for clients to take their close frames.
CLOSE_GRACE_S = 2.0


class Gateway:
    def __init__(self, config: GatewayConfig | None = None) -> None:
        self.config = config or GatewayConfig()
        self.processor = FeedProcessor("itick")
        self.index = SubscriptionIndex()
        self.simulator: Any = None  # tickgate.simulate.ItickSimulator when embedded
        self.upstream: ItickAdapter | None = None
        self.pool: SubscriptionPool | None = None
        self.commands: CommandHandler | None = None
        self.metrics_registry = make_registry(self.stats)
        self._server: Any = None
        self._connections: set[ClientConnection] = set()
        self._stopped = asyncio.Event()
        self._receivers = self.index.receivers
        self._dirty: list[ClientConnection] = []
        self.updates_in = 0
        self.messages_out = 0
        self.slow_consumers_dropped = 0

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
        self.upstream = ItickAdapter(
            url,
            token,
            self.processor,
            self.publish,
            self._on_upstream_refused,
            auth=cfg.upstream_auth,
            unsubscribe_mode=cfg.upstream_unsubscribe,
            ping_interval=cfg.upstream_ping_interval,
            pong_timeout=cfg.upstream_pong_timeout,
            idle_timeout=cfg.upstream_idle_timeout,
            data_timeout=cfg.upstream_data_timeout,
            connect_timeout=cfg.upstream_connect_timeout,
            backoff_initial=cfg.upstream_backoff_initial,
            backoff_max=cfg.upstream_backoff_max,
            subscribe_chunk=cfg.upstream_subscribe_chunk,
        )
        self.pool = SubscriptionPool(self.index, self.upstream, self._notify_refused)
        self.commands = CommandHandler(
            self.pool, epoch=self.processor.epoch, max_channels_per_connection=cfg.max_channels_per_connection
        )
        await self.upstream.start()
        self._server = await ws_create_server(
            make_router(self),
            cfg.host,
            cfg.port,
            max_frame_size=cfg.max_message_bytes,
            logger_name="tickgate.ws",
            # Finds half-open clients that send nothing: their sockets and subscriptions are freed.
            enable_auto_ping=True,
            auto_ping_idle_timeout=cfg.client_ping_interval,
            auto_ping_reply_timeout=cfg.client_pong_timeout,
        )
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
        for conn in list(self._connections):
            conn.close(WSCloseCode.GOING_AWAY, "gateway shutting down")
        if self.upstream is not None:
            await self.upstream.stop()
        if self._server is not None:
            self._server.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), CLOSE_GRACE_S)
            except TimeoutError:
                self._server.abort_clients()
        if self.simulator is not None:
            await self.simulator.stop()
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
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        host = self.config.host
        return f"ws://{f'[{host}]' if ':' in host else host}:{self.port}/"

    # -- data path --------------------------------------------------------------------------

    def publish(self, update: Update) -> int:
        """Fans one decoded update out to its channel's receivers; returns how many. The
        frames are written when the current event-loop turn ends."""
        self.updates_in += 1
        receivers = self._receivers(update.channel)
        if receivers:
            frame = update.json_frame
            for conn in receivers:
                conn.push(frame)
            self.messages_out += len(receivers)
        return len(receivers)

    def _mark_dirty(self, conn: ClientConnection) -> None:
        if not self._dirty:
            asyncio.get_running_loop().call_soon(self._flush)
        self._dirty.append(conn)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            try:
                conn.flush()
            except Exception:
                # One broken connection must not keep the others' frames queued.
                log.exception("flush to %r failed; dropping it", conn)
                conn.abort()

    def feed(self, frame: bytes | str) -> int:
        """Pushes one provider (iTick-protocol) frame through the core and the fan-out, for
        services that bring their own feed. Raises ``DecodeError`` for a malformed frame."""
        sent = 0
        for event in self.processor.ingest(frame):
            if type(event) is Update:
                sent += self.publish(event)
        return sent

    # -- clients ----------------------------------------------------------------------------

    def _on_client_connected(self, conn: ClientConnection) -> None:
        if self._stopped.is_set():
            conn.close(WSCloseCode.GOING_AWAY, "gateway shutting down")
            return
        self._connections.add(conn)

    def _on_client_message(self, conn: ClientConnection, payload: bytes) -> None:
        assert self.commands is not None
        self.commands.handle(conn, payload)

    def _on_client_disconnected(self, conn: ClientConnection) -> None:
        self._release_client(conn)

    def _release_client(self, conn: ClientConnection) -> None:
        """Forgets a client and its subscriptions; safe to call more than once."""
        self._connections.discard(conn)
        if self.pool is not None:
            self.pool.remove(conn)

    def _on_upstream_refused(self, channels: list[str], reason: str) -> None:
        assert self.pool is not None
        self.pool.on_upstream_refused(channels, reason)

    def _notify_refused(self, conn: Any, channels: list[str], reason: str) -> None:
        conn.send_message(
            error_message(
                ErrorCode.UPSTREAM_REJECTED, f"provider refused: {reason}", channels=sorted(channels)
            )
        )

    # -- observability ----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        up = (
            self.upstream.status()
            if self.upstream is not None
            else {
                "provider": "itick",
                "state": UpstreamState.IDLE.value,
                "reconnects": 0,
                "frames_in": 0,
                "decode_errors": 0,
            }
        )
        return {
            "connections": len(self._connections),
            "channels": self.index.channel_count,
            "subscriptions": len(self.index),
            "updates_in": self.updates_in,
            "messages_out": self.messages_out,
            "client_errors": self.commands.errors_sent if self.commands else 0,
            "slow_consumers_dropped": self.slow_consumers_dropped,
            "upstream": up,
        }

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
