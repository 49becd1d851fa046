"""``Node``: ``tickgate serve --workers N``. One ingest process (the one upstream connection
per provider token, whatever N) and N edge processes that share the listening port with
SO_REUSEPORT (the kernel spreads new clients over them), joined by the local bus.

The supervisor reads the config once and hands the object to every worker. It restarts a
worker that dies (quickly at first, backing off to ``RESTART_MAX_S`` if it keeps dying):
the clients of the other edges notice nothing; while the ingest is away, edges keep their
clients, tell them their channels are stale, and re-join the new ingest by themselves. On
stop (SIGTERM) the edges drain first (every client closed with 1001), then the ingest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from tickgate.config import GatewayConfig
from tickgate.node import worker
from tickgate.node.edge import client_url, on_sighup

log = logging.getLogger("tickgate.node")

#: How long a worker may take to start (imports, binding, the ingest's upstream connect is
#: not waited for).
START_TIMEOUT_S = 30.0
RESTART_INITIAL_S = 0.2
RESTART_MAX_S = 5.0
#: A worker that lived this long before dying is restarted at once again.
STABLE_AFTER_S = 10.0
#: How long each role gets to drain at stop before it is killed.
STOP_GRACE_S = 10.0


@dataclass(slots=True)
class _Worker:
    name: str
    process: Any = None  # multiprocessing.Process (spawn context)
    ready: Connection | None = None
    started_at: float = 0.0
    restarts: int = 0
    delay: float = RESTART_INITIAL_S
    history: list[int] = field(default_factory=list)  # exit codes, most recent last


class Node:
    def __init__(self, config: GatewayConfig, workers: int) -> None:
        if workers < 1:
            raise ValueError("a node needs at least one edge worker")
        self.config = config
        self.edge_count = workers
        self._ctx = multiprocessing.get_context("spawn")
        self._dir = ""
        self.bus_path = ""
        self.port = config.port
        self._reserved: socket.socket | None = None
        self.ingest = _Worker("ingest")
        self.edges = [_Worker(f"edge-{i + 1}") for i in range(workers)]
        self._stopping = False
        self._stopped = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            self._dir = tempfile.mkdtemp(prefix="tickgate-node-")
            self.bus_path = os.path.join(self._dir, "bus.sock")
            if self.port == 0:
                self.port = self._reserve_port()
            await self._spawn(self.ingest)
            for edge in self.edges:
                await self._spawn(edge)
        except BaseException:
            await self.stop()
            raise
        on_sighup(self.reload)
        log.info("node up: ingest and %d edge workers on %s", self.edge_count, self.url)

    def reload(self) -> None:
        """SIGHUP: each edge worker reads its token keys and TLS certificate again."""
        for w in self.edges:
            if w.process is not None and w.process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.process.pid, signal.SIGHUP)

    def _reserve_port(self) -> int:
        """Picks a free port for every edge to share: a bound socket in the SO_REUSEPORT group
        holds it (it never listens, so it never takes a client)."""
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((self.config.host, 0))
        self._reserved = sock
        return sock.getsockname()[1]

    async def _spawn(self, w: _Worker) -> None:
        ours, theirs = self._ctx.Pipe(duplex=False)
        if w is self.ingest:
            target, args = worker.run_ingest, (self.config, self.bus_path, theirs)
        else:
            target, args = worker.run_edge, (self.config, self.bus_path, w.name, self.port, theirs)
        process = self._ctx.Process(target=target, args=args, name=f"tickgate-{w.name}", daemon=False)
        process.start()
        theirs.close()
        w.process, w.ready, w.started_at = process, ours, time.monotonic()
        asyncio.get_running_loop().add_reader(process.sentinel, self._exited, w)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ours.poll():
            if not process.is_alive():
                raise RuntimeError(f"{w.name} exited with {process.exitcode} while starting")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{w.name} did not start within {START_TIMEOUT_S:g}s")
            await asyncio.sleep(0.02)
        with contextlib.suppress(EOFError, OSError):
            ours.recv()
        log.info("%s started (pid %d)", w.name, process.pid)

    def _exited(self, w: _Worker) -> None:
        process = w.process
        loop = asyncio.get_running_loop()
        loop.remove_reader(process.sentinel)
        process.join(1)  # the sentinel fires as it exits; reaping it takes a moment more
        w.history = [*w.history[-9:], process.exitcode]
        if self._stopping:
            return
        lived = time.monotonic() - w.started_at
        w.delay = RESTART_INITIAL_S if lived >= STABLE_AFTER_S else min(w.delay * 2, RESTART_MAX_S)
        log.error(
            "%s (pid %d) exited with %s; restarting in %.1fs", w.name, process.pid, process.exitcode, w.delay
        )
        loop.call_later(w.delay, lambda: loop.create_task(self._restart(w)))

    async def _restart(self, w: _Worker) -> None:
        if self._stopping:
            return
        w.restarts += 1
        try:
            await self._spawn(w)
        except (RuntimeError, OSError) as e:
            log.error("restarting %s failed: %s", w.name, e)  # its exit schedules the next try

    async def stop(self) -> None:
        """Drains the edges (clients closed with 1001), then the ingest; kills what lingers."""
        if self._stopping:
            return
        self._stopping = True
        await self._terminate([e for e in self.edges if e.process is not None])
        if self.ingest.process is not None:
            await self._terminate([self.ingest])
        if self._reserved is not None:
            self._reserved.close()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._stopped.set()
        log.info("node stopped")

    async def _terminate(self, workers: list[_Worker]) -> None:
        live = [w.process for w in workers if w.process.is_alive()]
        for p in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while any(p.is_alive() for p in live) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for p in live:
            if p.is_alive():
                log.error("%s did not stop within %gs; killing it", p.name, STOP_GRACE_S)
                p.kill()
            p.join(1)

    async def serve_forever(self) -> None:
        await self._stopped.wait()

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- facts -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return client_url(self.config.host, self.port, tls=bool(self.config.tls_cert))

    def pids(self) -> dict[str, int]:
        """Live workers' process ids by name."""
        out = {}
        for w in (self.ingest, *self.edges):
            if w.process is not None and w.process.is_alive():
                out[w.name] = w.process.pid
        return out
