"""``Edge``: the role that holds clients. The listener (WebSocket clients, ``/healthz``,
``/metrics``, the zstd dictionary) on one or more listening sockets, the ``EdgeHub`` and the
core's ``Dispatcher``. It gets updates and ingest state from the bus (it is the bus's
``EdgeSink`` through its hub) and reports interest to it."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Callable
from typing import Any

from picows import WSCloseCode

from tickgate.bus.base import Interest
from tickgate.config import ConfigError, GatewayConfig
from tickgate.edge.admission import (
    derive_max_connections,
    install_accept_error_filter,
    open_listeners,
    raise_file_limit,
)
from tickgate.edge.degrade import Degradation, degrade_settings
from tickgate.edge.hub import EdgeHub, make_dispatcher
from tickgate.edge.listener import make_router
from tickgate.edge.server import serve_websocket
from tickgate.edge.zstd_dictionary import load_zstd_dictionary
from tickgate.logs import ThrottledAdapter
from tickgate.sessions.store import SessionStore

log = logging.getLogger("tickgate.edge")

#: picows's lines about client connections.
WS_LOGGER = "picows.tickgate.ws"
#: How long stopping waits for clients to take their close frames.
CLOSE_GRACE_S = 2.0


class Edge:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.zstd_dictionary = load_zstd_dictionary(config.zstd_dictionary)
        self.dispatcher = make_dispatcher(config, self.zstd_dictionary)
        self.hub = EdgeHub(config, self.dispatcher)
        self.degradation = Degradation(degrade_settings(config), self._paused_share, self.hub.set_degradation)
        self._servers: list[Any] = []
        self._uninstall_filter: Callable[[], None] | None = None
        self.tls = tls_context(config)

    def join(self, interest: Interest, sessions: SessionStore | None = None) -> None:
        """Where interest goes: the bus's edge side; and ``sessions``, where sessions go if not
        to this process's memory or Redis (the ingest's, in a node). Call before ``start``."""
        self.hub.interest = interest
        if sessions is not None:
            self.hub.use_sessions(sessions)

    async def start(
        self,
        health: Callable[[], dict[str, Any]],
        metrics: Callable[[], bytes],
        *,
        port: int | None = None,
        reuse_port: bool = False,
    ) -> None:
        """Listens on the configured host and ``port`` (the configured one by default);
        ``reuse_port`` shares it with the node's other edges (SO_REUSEPORT)."""
        cfg = self.config
        file_limit = raise_file_limit()
        if self.hub.max_connections is None:
            self.hub.max_connections = derive_max_connections(file_limit)
        if cfg.client_transport == "aiofastnet":  # uvloop's own server does not report EMFILE
            self._uninstall_filter = install_accept_error_filter(asyncio.get_running_loop())
        self.hub.liveness.start()
        if self.hub.auth is not None:
            self.hub.auth.start()
        if self.hub.audit is not None:
            self.hub.audit.start()
        on_sighup(self.reload)
        self.degradation.start()
        self.hub.sessions.start()
        if self.hub.sessions.refresh_s is not None:
            asyncio.get_running_loop().call_later(self.hub.sessions.refresh_s, self.hub.refresh_live_sessions)
        router = make_router(self.hub, health, metrics, self.zstd_dictionary)
        ws_log = logging.getLogger(WS_LOGGER)
        if ws_log.level == logging.NOTSET:  # per-connection INFO lines are noise at scale
            ws_log.setLevel(logging.WARNING)
        # Given a Logger, picows makes a child Logger for every connection (about 0.5 KB
        # each, for lines we keep at WARNING); given an adapter, it uses it as is.
        ws_logger = ThrottledAdapter(ws_log)
        for sock in open_listeners(cfg.host, cfg.port if port is None else port, reuse_port=reuse_port):
            server = await serve_websocket(
                router,
                sock,
                logger=ws_logger,
                max_frame_size=cfg.max_message_bytes,
                read_buffer_init_size=cfg.client_read_buffer_bytes,
                use_aiofastnet=cfg.client_transport == "aiofastnet",
                ssl_context=self.tls,
            )
            self._servers.append(server)
        log.info("admitting up to %d clients (file limit %d)", self.hub.max_connections, file_limit)
        if self.hub.auth is None:
            log.warning(
                "auth = none: anyone who can reach %s gets data (set auth = jwt; docs/security.md)", self.url
            )

    def reload(self) -> None:
        """SIGHUP: the token keys and the TLS certificate are read again (new connections use
        the new certificate; a file that does not load leaves the old one in use)."""
        if self.hub.auth is not None:
            try:
                self.hub.auth.reload()
            except Exception:  # the certificate below is still reloaded
                log.exception("reloading the token keys failed")
        if self.tls is not None and self.config.tls_cert and self.config.tls_key:
            try:
                self.tls.load_cert_chain(self.config.tls_cert, self.config.tls_key)
                log.info("TLS certificate reloaded from %s", self.config.tls_cert)
            except (OSError, ssl.SSLError) as e:
                log.error("keeping the previous TLS certificate: %s", e)

    def _paused_share(self) -> float:
        """The share of clients whose sockets back up (egress pressure)."""
        connections = len(self.hub.connections)
        return self.dispatcher.stats()["paused_connections"] / connections if connections else 0.0

    async def stop(self) -> None:
        """Closes every client with 1001 and stops listening."""
        self.degradation.stop()
        self.hub.close_all(WSCloseCode.GOING_AWAY, "gateway shutting down")
        for server in self._servers:
            server.close()
        for server in self._servers:
            try:
                await asyncio.wait_for(server.wait_closed(), CLOSE_GRACE_S)
            except TimeoutError:
                server.abort_clients()
        if self._uninstall_filter is not None:
            self._uninstall_filter()
            self._uninstall_filter = None
        if self.hub.auth is not None:
            self.hub.auth.stop()
        await self.hub.sessions.stop()
        if self.hub.audit is not None:
            self.hub.audit.stop()

    @property
    def port(self) -> int:
        return self._servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return client_url(self.config.host, self.port, tls=self.tls is not None)


def client_url(host: str, port: int, *, tls: bool = False) -> str:
    """Where clients connect: ``ws://host:port/`` (``wss://`` with TLS; an IPv6 host in
    brackets)."""
    return f"{'wss' if tls else 'ws'}://{f'[{host}]' if ':' in host else host}:{port}/"


def tls_context(config: GatewayConfig) -> ssl.SSLContext | None:
    """The server's TLS context (None: plain ws://); TLS 1.2 at least."""
    if not config.tls_cert or not config.tls_key:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"tls_cert/tls_key: {e}") from None
    return ctx


def on_sighup(reload: Callable[[], None]) -> None:
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)
    except (RuntimeError, ValueError, NotImplementedError):  # not the main thread (embedded)
        log.debug("SIGHUP not handled here: the key file is still polled for changes")
