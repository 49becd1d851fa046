"""The ingest's side of the local bus: one ingest process and the edge processes of a node,
over a Unix domain socket (``tickgate serve --workers N``).

``BusServer`` runs in the ingest. Each edge's link holds the channels that edge has receivers
of; the subscription pool ref-counts them across links, so upstream holds the union. Updates
published in one event-loop turn are packed once each (``pack_updates``: the core's encodings,
copied, not redone) and every edge gets one message with the records of the updates it has
receivers of. A link whose unsent bytes pass ``bus_buffer_bytes`` (an edge that stopped
reading) is dropped, so the ingest's memory stays bounded; that edge re-joins by itself.
Without Redis it also holds the node's sessions (``SessionHost``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable
from typing import Any, cast

from tickgate._core import BUS_RECORD_VERSION, Update, pack_updates
from tickgate.bus.base import FeedState
from tickgate.bus.wire import (
    MAX_MESSAGE_BYTES,
    BusProtocolError,
    Kind,
    Reader,
    headed_message,
    json_message,
    message,
    parse_channels,
    parse_headed,
)
from tickgate.sessions.history import Found, History
from tickgate.sessions.node import SessionHost
from tickgate.sessions.record import decode_record, encode_record
from tickgate.upstream.pool import SubscriptionPool

log = logging.getLogger("tickgate.bus")


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
        sessions: SessionHost | None = None,
    ) -> None:
        self.path = path
        #: The node's sessions, when the ingest holds them (no Redis).
        self.sessions = sessions
        #: What edges fetch for their clients' snapshots and resumes.
        self.history = history
        self.pool = pool
        self.epoch = epoch
        #: Ingest-side figures for the node view (upstream state, pool size).
        self._node_figures = node_figures
        self.buffer_bytes = buffer_bytes
        self._view_interval_s = view_interval_s
        self.links: set[_EdgeLink] = set()
        #: The provider feed's state, as edges are told (on joining, and on each change).
        self.feed_state = FeedState(up=True)
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

    def feed(self, state: FeedState) -> None:
        """The ingest's feed sink: every edge is told, in stream order."""
        if self._pending:
            self._flush()
        self.feed_state = state
        data = json_message(
            Kind.FEED, {"up": state.up, "reason": state.reason, "unserved": list(state.unserved)}
        )
        for link in list(self.links):
            link.send(data)

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
            state = self.feed_state
            feed = {"up": state.up, "reason": state.reason, "unserved": list(state.unserved)}
            link.send(
                json_message(Kind.WELCOME, {"version": BUS_RECORD_VERSION, "epoch": self.epoch, "feed": feed})
            )
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
        elif kind is Kind.SESSION and self.sessions is not None:
            saved, raw = parse_headed(body)
            record = decode_record(raw) if raw else None
            self.sessions.save(link, str(saved["session"]), record, bool(saved["live"]))
        elif kind is Kind.CLAIM and self.sessions is not None:
            claim = json.loads(body)
            record = self.sessions.claim(link, str(claim["session"]))
            value = encode_record(record) if record is not None else b""
            link.send(headed_message(Kind.CLAIMED, {"id": claim["id"]}, value))
        else:
            raise BusProtocolError(f"{kind.name} is not sent by an edge")

    def _fetch(self, link: _EdgeLink, request: dict[str, Any]) -> None:
        """Answers in stream order: whatever was published before goes out first, and from now
        on the asked channels are routed to this edge, so what the edge gets in the answer and
        what follows it join without a gap or a duplicate."""
        if self._pending:
            self._flush()
        channels = [c for c in request["channels"] if isinstance(c, str)]
        refused, added = "", []
        if isinstance(request.get("admit"), int):
            refused, added = self.pool.admit(channels, request["admit"])
            if refused:  # nothing routed, nothing subscribed upstream
                header = {"id": request["id"], "gaps": [], "missed": 0, "refused": refused, "added": added}
                link.send(headed_message(Kind.FETCHED, header, pack_updates([])))
                return
        new = [c for c in channels if c not in link.channels]
        link.channels.update(new)
        if new:
            self.pool.add(new)
        found = Found() if self.history is None else self.history.find(channels, request.get("since") or {})
        header = {"id": request["id"], "gaps": found.gaps, "missed": len(found.missed), "added": added}
        link.send(headed_message(Kind.FETCHED, header, pack_updates(found.missed + found.latest)))

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
        if self.sessions is not None:
            self.sessions.edge_lost(link)
