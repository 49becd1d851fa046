"""The listening server: picows's WebSocket server protocol, with the client's address handed to
the router.

``picows.ws_create_server`` calls the router with the upgrade request alone. Refusing by
address (too many new connections from one address) and writing who was refused into the
audit log need the peer at that moment, so each connection's protocol here remembers its
peer as it is made and hands it to the router with the request. Everything else is
picows's own ``WSProtocol``, made with the arguments ``ws_create_server`` gives it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from functools import partial
from logging import LoggerAdapter
from socket import socket
from typing import Any

from picows import WSListener, WSUpgradeRequest, WSUpgradeResponseWithListener
from picows.picows import WSAutoPingStrategy, WSProtocol

__all__ = ["Peer", "Router", "serve_websocket"]

#: ``(host, port)`` of a client (None when the socket could not say).
Peer = tuple[str, int] | None
Router = Callable[[WSUpgradeRequest, Peer], WSListener | WSUpgradeResponseWithListener]


class _PeerProtocol(WSProtocol):
    __slots__ = ("peer",)

    def connection_made(self, transport: Any) -> None:
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0], peer[1]) if peer else None
        super().connection_made(transport)


async def serve_websocket(
    router: Router,
    sock: socket,
    *,
    logger: LoggerAdapter[Any],
    max_frame_size: int,
    read_buffer_init_size: int,
    use_aiofastnet: bool,
    ssl_context: ssl.SSLContext | None = None,
    handshake_timeout: float = 5.0,
) -> asyncio.Server:
    """Serves WebSocket clients on ``sock`` (TLS with ``ssl_context``); half-open clients are
    found by the hub's one liveness sweep, so picows's per-connection auto-ping is off."""

    def protocol() -> _PeerProtocol:
        proto: _PeerProtocol

        def route(request: WSUpgradeRequest) -> WSListener | WSUpgradeResponseWithListener:
            # picows drops this function after the handshake, and with it the cycle.
            return router(request, getattr(proto, "peer", None))

        proto = _PeerProtocol(
            None,  # host:port (client side only)
            None,  # path (client side only)
            False,  # server side
            route,
            logger,
            True,  # disconnect on an exception in a callback
            handshake_timeout,
            False,  # auto-ping
            20.0,
            20.0,
            WSAutoPingStrategy.PING_WHEN_IDLE,
            True,  # auto-pong
            max_frame_size,
            None,  # extra headers
            read_buffer_init_size,
        )
        return proto

    loop = asyncio.get_running_loop()
    if use_aiofastnet:
        import aiofastnet

        create: Any = partial(aiofastnet.create_server, loop)
    else:
        create = loop.create_server
    return await create(protocol, sock=sock, ssl=ssl_context)  # type: ignore[no-any-return]
