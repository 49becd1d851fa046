"""The local bus: one ingest process and the edge processes of a node, over a Unix domain
socket (``tickgate serve --workers N``).

``BusServer`` runs in the ingest. Each edge's link holds the channels that edge has receivers
of; the subscription pool ref-counts them across links, so upstream holds the union. Updates
published in one event-loop turn are packed once each (``pack_updates``: the core's encodings,
copied, not redone) and every edge gets one message with the records of the updates it has
receivers of. A link whose unsent bytes pass ``bus_buffer_bytes`` (an edge that stopped
reading) is dropped, so the ingest's memory stays bounded; that edge re-joins by itself.

``BusClient`` runs in an edge. It joins (``HELLO``, then all its channels in one ``ADD``),
re-joins after losing the ingest (backoff up to ``REJOIN_MAX_S``), and tells the edge when
the ingest goes or comes back, so the edge can tell its clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable
from typing import Any, cast

from tickgate._core import BUS_RECORD_VERSION, Update, pack_updates, unpack_updates
from tickgate.bus.base import EdgeSink, IngestState
from tickgate.bus.wire import (
    BusProtocolError,
    Kind,
    Reader,
    channels_message,
    json_message,
    message,
    parse_channels,
)
from tickgate.sessions.history import Found, FoundCallback, History
from tickgate.upstream.pool import SubscriptionPool

log = logging.getLogger("tickgate.bus")

#: Largest message either side accepts (a record of one event-loop turn's updates is far
#: smaller; anything bigger is a corrupt stream).
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
REJOIN_INITIAL_S = 0.05
REJOIN_MAX_S = 1.0


class _EdgeLink(asyncio.Protocol):
    """The ingest's end of one edge's connection."""

    def __init__(self, server: BusServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.worker = "?"
        self.pid = 0
        self.joined = False
        self.channels: set[str] = set()
        self.stats: dict[str, Any] = {}
        self._reader = Reader(MAX_MESSAGE_BYTES)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            for kind, body in self._reader.feed(data):
                self.server.received(self, kind, body)
        except (BusProtocolError, ValueError) as e:
            log.error("bus link %s sent garbage (%s); dropping it", self.worker, e)
            self.drop()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.lost(self, exc)

    def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        if transport.get_write_buffer_size() > self.server.buffer_bytes:
            log.error(
                "edge %s is %d bytes behind on the bus (limit %d); dropping its link",
                self.worker,
                transport.get_write_buffer_size(),
                self.server.buffer_bytes,
            )
            self.drop()

    def drop(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class BusServer:
    """The ingest side of the local bus. ``publish`` is the ingest's sink."""

    def __init__(
        self,
        path: str,
        pool: SubscriptionPool,
        epoch: str,
        node_figures: Callable[[], dict[str, Any]],
        *,
        buffer_bytes: int,
        view_interval_s: float,
        history: History | None = None,
    ) -> None:
        self.path = path
        #: What edges fetch for their clients' snapshots and resumes.
        self.history = history
        self.pool = pool
        self.epoch = epoch
        #: Ingest-side figures for the node view (upstream state, pool size).
        self._node_figures = node_figures
        self.buffer_bytes = buffer_bytes
        self._view_interval_s = view_interval_s
        self.links: set[_EdgeLink] = set()
        self._pending: list[Update] = []
        self._flush_scheduled = False
        self._server: asyncio.AbstractServer | None = None
        self._view_timer: asyncio.TimerHandle | None = None
        pool.on_refused(self._refused)

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # left by an ingest that died
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: _EdgeLink(self), self.path)
        self._view_timer = loop.call_later(self._view_interval_s, self._send_view)

    async def stop(self, edges_grace_s: float = 0.0) -> None:
        """Stops serving. With ``edges_grace_s``, first waits that long for the edges to leave
        (a whole process group told to stop at once: the edges close their clients without
        first telling them the ingest went away)."""
        deadline = asyncio.get_running_loop().time() + edges_grace_s
        while self.links and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        if self._view_timer is not None:
            self._view_timer.cancel()
        if self._server is not None:
            self._server.close()
        for link in list(self.links):
            link.drop()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    # -- ingest -> edges ----------------------------------------------------------------------

    def publish(self, updates: list[Update]) -> None:
        self._pending.extend(updates)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        links = [link for link in self.links if link.joined and link.channels]
        if not links:
            return
        packed: dict[int, bytes] = {}
        for link in links:
            held = link.channels
            parts = []
            for i, update in enumerate(pending):
                if update.channel in held:
                    record = packed.get(i)
                    if record is None:
                        record = packed[i] = pack_updates([update])
                    parts.append(record)
            if parts:
                link.send(message(Kind.UPDATES, b"".join(parts)))

    def _refused(self, channels: list[str], reason: str) -> None:
        # The pool has forgotten them; so do the links, and each edge tells its clients.
        for link in self.links:
            link.channels.difference_update(channels)
        data = json_message(Kind.REFUSED, {"channels": channels, "reason": reason})
        for link in self.links:
            link.send(data)

    def _send_view(self) -> None:
        loop = asyncio.get_running_loop()
        self._view_timer = loop.call_later(self._view_interval_s, self._send_view)
        if self.links:
            data = json_message(Kind.NODE, self.view())
            for link in list(self.links):
                link.send(data)

    def view(self) -> dict[str, Any]:
        """The node as the ingest sees it: its own figures and each edge's latest."""
        workers = {link.worker: link.stats for link in self.links if link.joined and link.stats}
        return {**self._node_figures(), "epoch": self.epoch, "workers": workers}

    # -- edges -> ingest ----------------------------------------------------------------------

    def received(self, link: _EdgeLink, kind: Kind, body: bytes) -> None:
        if kind is Kind.HELLO:
            hello = json.loads(body)
            if hello.get("version") != BUS_RECORD_VERSION:
                log.error("edge speaks bus version %s, not %s", hello.get("version"), BUS_RECORD_VERSION)
                link.drop()
                return
            link.worker, link.pid, link.joined = str(hello["worker"]), int(hello["pid"]), True
            self.links.add(link)
            link.send(json_message(Kind.WELCOME, {"version": BUS_RECORD_VERSION, "epoch": self.epoch}))
            log.info("edge %s (pid %d) joined the bus", link.worker, link.pid)
        elif not link.joined:
            raise BusProtocolError(f"{kind.name} before HELLO")
        elif kind is Kind.ADD:
            channels = [c for c in parse_channels(body) if c not in link.channels]
            link.channels.update(channels)
            if channels:
                self.pool.add(channels)
        elif kind is Kind.REMOVE:
            channels = [c for c in parse_channels(body) if c in link.channels]
            link.channels.difference_update(channels)
            if channels:
                self.pool.remove(channels)
        elif kind is Kind.STATS:
            link.stats = json.loads(body)
        elif kind is Kind.FETCH:
            self._fetch(link, json.loads(body))
        elif kind is Kind.TAKEN:
            told = message(Kind.TAKEN_ELSEWHERE, body)
            for other in self.links:
                if other is not link:
                    other.send(told)
        else:
            raise BusProtocolError(f"{kind.name} is not sent by an edge")

    def _fetch(self, link: _EdgeLink, request: dict[str, Any]) -> None:
        """Answers in stream order: whatever was published before goes out first, and from now
        on the asked channels are routed to this edge, so what the edge gets in the answer and
        what follows it join without a gap or a duplicate."""
        if self._pending:
            self._flush()
        channels = [c for c in request["channels"] if isinstance(c, str)]
        new = [c for c in channels if c not in link.channels]
        link.channels.update(new)
        if new:
            self.pool.add(new)
        found = Found() if self.history is None else self.history.find(channels, request.get("since") or {})
        header = json.dumps({"id": request["id"], "gaps": found.gaps, "missed": len(found.missed)}).encode()
        record = pack_updates(found.missed + found.latest)
        link.send(message(Kind.FETCHED, len(header).to_bytes(4, "little") + header + record))

    def lost(self, link: _EdgeLink, exc: Exception | None = None) -> None:
        if link in self.links:
            self.links.discard(link)
            # A clean close is an edge stopping (or its process gone: the supervisor reports that).
            level = logging.WARNING if exc is not None else logging.INFO
            log.log(
                level, "edge %s (pid %d) left the bus%s", link.worker, link.pid, f" ({exc})" if exc else ""
            )
        if link.channels:
            self.pool.remove(sorted(link.channels))
            link.channels.clear()


class BusClient(asyncio.Protocol):
    """The edge side of the local bus; the edge hub's ``Interest``."""

    def __init__(
        self,
        path: str,
        worker: str,
        edge: EdgeSink,
        channels: Callable[[], list[str]],
        stats: Callable[[], dict[str, Any]],
        *,
        stats_interval_s: float,
    ) -> None:
        self.path = path
        self.worker = worker
        self._edge = edge
        #: The edge's channels with receivers: what it (re-)announces on joining.
        self._channels = channels
        self._stats = stats
        self._stats_interval_s = stats_interval_s
        self._transport: asyncio.Transport | None = None
        self._reader = Reader(MAX_MESSAGE_BYTES)
        self._lost: asyncio.Event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stats_timer: asyncio.TimerHandle | None = None
        self.joined = False
        self._stopping = False
        #: The node-wide view the ingest last sent (empty until the first one).
        self.node: dict[str, Any] = {}
        self.rejoins = 0
        self._fetches: dict[int, FoundCallback] = {}
        self._fetch_ids = 0

    # -- Interest ----------------------------------------------------------------------------

    def add(self, channels: list[str]) -> None:
        # While the ingest is away nothing is sent: joining again announces every channel.
        if self.joined:
            self._send(channels_message(Kind.ADD, channels))

    def remove(self, channels: list[str]) -> None:
        if self.joined:
            self._send(channels_message(Kind.REMOVE, channels))

    def fetch(self, channels: list[str], since: dict[str, int], done: FoundCallback) -> bool:
        """Asks the ingest for history; ``done`` runs when the answer arrives, in stream order
        (before any update that follows it), or with None if the ingest goes away first.
        False (and ``done`` never called) while no ingest is joined."""
        if not self.joined:
            return False
        self._fetch_ids += 1
        self._fetches[self._fetch_ids] = done
        self._send(json_message(Kind.FETCH, {"id": self._fetch_ids, "channels": channels, "since": since}))
        return True

    def taken(self, session: str) -> None:
        """This edge's client resumed ``session``: every other edge closes its old connection."""
        if self.joined:
            self._send(message(Kind.TAKEN, session.encode()))

    def _fetched(self, body: bytes) -> None:
        size = int.from_bytes(body[:4], "little")
        header = json.loads(body[4 : 4 + size])
        updates = unpack_updates(body[4 + size :])
        done = self._fetches.pop(header["id"], None)
        if done is not None:
            k = header["missed"]
            done(Found(missed=updates[:k], gaps=header["gaps"], latest=updates[k:]))

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True  # leaving on purpose: nothing to tell the edge's clients
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._stats_timer is not None:
            self._stats_timer.cancel()
        if self._transport is not None:
            self._transport.close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = REJOIN_INITIAL_S
        while True:
            try:
                await loop.create_unix_connection(lambda: self, self.path)
            except OSError as e:
                log.debug("bus not reachable at %s: %s", self.path, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, REJOIN_MAX_S)
                continue
            delay = REJOIN_INITIAL_S
            await self._lost.wait()
            self._lost.clear()

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._reader = Reader(MAX_MESSAGE_BYTES)
        hello = {"version": BUS_RECORD_VERSION, "worker": self.worker, "pid": os.getpid()}
        self._transport.write(json_message(Kind.HELLO, hello))

    def data_received(self, data: bytes) -> None:
        try:
            for kind, body in self._reader.feed(data):
                self._received(kind, body)
        except (BusProtocolError, ValueError) as e:
            log.error("the ingest sent garbage on the bus (%s); re-joining", e)
            if self._transport is not None:
                self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._stats_timer is not None:
            self._stats_timer.cancel()
            self._stats_timer = None
        if self.joined and not self._stopping:
            log.warning("lost the ingest on the bus (%s); re-joining", exc or "closed")
            self._edge.on_ingest(IngestState(up=False, epoch="", reason="ingest_down"))
        self.joined = False
        fetches, self._fetches = self._fetches, {}
        for done in fetches.values():
            done(None)
        self._lost.set()

    def _received(self, kind: Kind, body: bytes) -> None:
        if kind is Kind.UPDATES:
            self._edge.publish_packed(body)
        elif kind is Kind.NODE:
            self.node = json.loads(body)
        elif kind is Kind.FETCHED:
            self._fetched(body)
        elif kind is Kind.TAKEN_ELSEWHERE:
            self._edge.on_taken_elsewhere(body.decode())
        elif kind is Kind.REFUSED:
            refusal = json.loads(body)
            self._edge.on_refused(refusal["channels"], refusal["reason"])
        elif kind is Kind.WELCOME:
            welcome = json.loads(body)
            if self.node or self.rejoins:
                log.info("re-joined the ingest (epoch %s)", welcome["epoch"])
            self.rejoins += 1
            self.joined = True
            channels = self._channels()
            if channels:
                self._send(channels_message(Kind.ADD, channels))
            self._report_stats()
            self._edge.on_ingest(IngestState(up=True, epoch=welcome["epoch"]))
        else:
            raise BusProtocolError(f"{kind.name} is not sent by the ingest")

    def _send(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _report_stats(self) -> None:
        self._send(json_message(Kind.STATS, self._stats()))
        loop = asyncio.get_running_loop()
        self._stats_timer = loop.call_later(self._stats_interval_s, self._report_stats)
