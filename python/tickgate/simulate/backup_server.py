"""``BackupSimulator``: what the backup-protocol simulators (Finnhub-style, Alpaca-style) share:
a picows listener, one emitter task, the live sessions, and the freeze fault. Each protocol
supplies ``_accept`` (the upgrade: a session, or a refusal), ``_run`` (the emitter) and ``url``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from typing import Any

from picows import WSListener, WSTransport, WSUpgradeRequest, WSUpgradeResponseWithListener, ws_create_server

from .market import MarketModel

log = logging.getLogger("tickgate.simulate")

_MAX_MESSAGE_BYTES = 64 * 1024
#: How long ``stop`` waits for the listener to close.
_STOP_GRACE_S = 2.0


class BackupSimulator(ABC):
    #: Names the protocol in logs and the emitter task.
    protocol = ""

    def __init__(self, host: str, port: int, seed: int) -> None:
        self._host, self._port = host, port
        #: Live sessions; each has a ``transport`` (None until connected).
        self.sessions: set[Any] = set()
        self.frozen = False
        self._model = MarketModel(seed)
        self._server: asyncio.AbstractServer | None = None
        self._emitter: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._server = await ws_create_server(
            self._accept,
            self._host,
            self._port,
            max_frame_size=_MAX_MESSAGE_BYTES,
            enable_auto_pong=True,
            logger_name="tickgate.simulate",
        )
        self._emitter = asyncio.get_running_loop().create_task(self._run(), name=f"{self.protocol}-simulator")
        log.info("%s-style simulator listening on %s", self.protocol, self.url)

    async def stop(self) -> None:
        if self._emitter is not None:
            self._emitter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._emitter
            self._emitter = None
        for transport in self._transports():
            transport.disconnect(graceful=False)
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), _STOP_GRACE_S)
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    @abstractmethod
    def url(self) -> str: ...

    def freeze(self) -> None:
        """Like a stopped process: connections stay open, nothing is read or sent."""
        self.frozen = True
        for transport in self._transports():
            transport.underlying_transport.pause_reading()

    def thaw(self) -> None:
        self.frozen = False
        for transport in self._transports():
            transport.underlying_transport.resume_reading()

    def _transports(self) -> list[WSTransport]:
        return [s.transport for s in list(self.sessions) if s.transport is not None]

    @abstractmethod
    def _accept(self, request: WSUpgradeRequest) -> WSListener | WSUpgradeResponseWithListener: ...

    @abstractmethod
    async def _run(self) -> None: ...
