"""The worker processes of a node (``tickgate serve --workers N``), started by the supervisor
(``tickgate.node.supervisor``) with multiprocessing's spawn. Each gets the one config object
the supervisor read, the bus socket's path, and a pipe to say it is ready.

A worker stops on SIGTERM (the supervisor's; an edge closes its clients with 1001 first) and
ignores SIGINT: a Ctrl-C in a terminal reaches the whole process group, and the supervisor
alone decides the order of shutdown. If the supervisor dies, the kernel sends its workers
SIGTERM (``PR_SET_PDEATHSIG``), so no orphan keeps the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
from multiprocessing.connection import Connection
from typing import Any

from tickgate.config import GatewayConfig
from tickgate.logs import redact_url
from tickgate.node.loop import run

log = logging.getLogger("tickgate.node")

_PR_SET_PDEATHSIG = 1
#: How long a stopping ingest waits for edges stopping at the same time to leave the bus.
EDGES_GRACE_S = 3.0
#: How long a starting edge waits for the ingest's welcome before it takes clients anyway.
JOIN_TIMEOUT_S = 10.0


def _prepare(config: GatewayConfig, name: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A hangup means "reload" (an edge handles it once its loop runs); it never stops a worker.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # Not on Linux, this fails; the supervisor's own stop still works there.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    logging.basicConfig(
        level=config.log_level, format=f"%(asctime)s %(levelname)s {name} %(name)s: %(message)s"
    )
    if config.log_level != "DEBUG":
        logging.getLogger("picows").setLevel(logging.WARNING)


def run_ingest(config: GatewayConfig, bus_path: str, ready: Connection) -> None:
    _prepare(config, "ingest")
    run(lambda stop: _ingest(config, bus_path, ready, stop), signals=(signal.SIGTERM,))


async def _ingest(config: GatewayConfig, bus_path: str, ready: Connection, stop: asyncio.Event) -> None:
    from tickgate.bus.server import BusServer
    from tickgate.node.ingest import Ingest
    from tickgate.node.view import process_figures
    from tickgate.sessions.node import SessionHost

    ingest = Ingest(config)
    # Without Redis, the ingest holds the node's sessions, so clients resume on any worker.
    sessions = None if config.redis_url else SessionHost(config.session_ttl, config.session_max_detached)

    def figures() -> dict[str, Any]:
        held = sessions.figures() if sessions is not None else {}
        return {
            "upstream": ingest.upstream_status(),
            "channels": len(ingest.pool.channels()),
            "ingest": {**process_figures(), **held},
        }

    server = BusServer(
        bus_path,
        ingest.pool,
        ingest.epoch,
        figures,
        buffer_bytes=config.bus_buffer_bytes,
        view_interval_s=config.node_view_interval,
        history=ingest.history,
        sessions=sessions,
    )
    await server.start()
    await ingest.start(server.publish, server.feed)
    log.info("ingest up (epoch %s, upstream %s)", ingest.epoch, redact_url(ingest.upstream_url))
    ready.send("ready")
    await stop.wait()
    await server.stop(edges_grace_s=EDGES_GRACE_S)
    await ingest.stop()


def run_edge(config: GatewayConfig, bus_path: str, worker: str, port: int, ready: Connection) -> None:
    _prepare(config, worker)
    run(lambda stop: _edge(config, bus_path, worker, port, ready, stop), signals=(signal.SIGTERM,))


async def _edge(
    config: GatewayConfig, bus_path: str, worker: str, port: int, ready: Connection, stop: asyncio.Event
) -> None:
    from tickgate.bus.client import BusClient
    from tickgate.edge.metrics import make_renderer
    from tickgate.node.edge import Edge
    from tickgate.node.view import health_of, node_stats, process_figures
    from tickgate.sessions.node import NodeSessions

    edge = Edge(config)

    def own() -> dict[str, Any]:
        return {**edge.hub.stats(), **process_figures()}

    bus = BusClient(
        bus_path,
        worker,
        edge.hub,
        edge.dispatcher.channels,
        own,
        stats_interval_s=config.node_view_interval,
    )
    edge.join(bus, None if config.redis_url else NodeSessions(bus, config.session_ttl))

    def stats() -> dict[str, Any]:
        return node_stats(worker, own(), bus.node, bus.joined)

    bus.start()
    # Clients are taken once the ingest has said its epoch: a welcome names it (docs/protocol.md),
    # and a resume is judged against it. The supervisor started the ingest first, so this is a
    # matter of milliseconds; an ingest that does not answer is the bus's to re-join meanwhile.
    if not await bus.wait_joined(JOIN_TIMEOUT_S):
        log.warning(
            "edge %s: no ingest on the bus after %.0f s; taking clients anyway", worker, JOIN_TIMEOUT_S
        )
    await edge.start(
        lambda: health_of(stats(), edge.hub.epoch), make_renderer(stats), port=port, reuse_port=True
    )
    log.info("edge %s listening on %s", worker, edge.url)
    ready.send("ready")
    await stop.wait()
    await edge.stop()
    await bus.stop()
