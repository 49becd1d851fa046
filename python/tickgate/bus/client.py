"""The edge's side of the local bus (``tickgate serve --workers N``).

``BusClient`` runs in an edge. It joins (``HELLO``, then all its channels in one ``ADD``),
re-joins after losing the ingest (backoff up to ``REJOIN_MAX_S``), and tells the edge when
the ingest goes or comes back, so the edge can tell its clients. Without Redis it is also the
edge's link to the node's sessions, which the ingest holds (``NodeSessions``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable
from typing import Any, cast

from tickgate._core import BUS_RECORD_VERSION, unpack_updates
from tickgate.bus.base import EdgeSink, FeedState, IngestState
from tickgate.bus.wire import (
    MAX_MESSAGE_BYTES,
    BusProtocolError,
    Kind,
    Reader,
    channels_message,
    headed_message,
    json_message,
    message,
    parse_headed,
)
from tickgate.sessions.history import Found, FoundCallback
from tickgate.sessions.node import ClaimCallback
from tickgate.sessions.record import SessionRecord, decode_record, encode_record
from tickgate.status import StaleReason

log = logging.getLogger("tickgate.bus")

REJOIN_INITIAL_S = 0.05
REJOIN_MAX_S = 1.0


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
        self._joined_event = asyncio.Event()
        self._stopping = False
        #: The node-wide view the ingest last sent (empty until the first one).
        self.node: dict[str, Any] = {}
        self.rejoins = 0
        self._fetches: dict[int, FoundCallback] = {}
        self._claims: dict[int, ClaimCallback] = {}
        self._request_ids = 0

    async def wait_joined(self, timeout: float) -> bool:
        """Whether an ingest welcomed this edge within ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._joined_event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # -- Interest ----------------------------------------------------------------------------

    def add(self, channels: list[str]) -> None:
        # While the ingest is away nothing is sent: joining again announces every channel.
        if self.joined:
            self._send(channels_message(Kind.ADD, channels))

    def remove(self, channels: list[str]) -> None:
        if self.joined:
            self._send(channels_message(Kind.REMOVE, channels))

    def fetch(
        self, channels: list[str], since: dict[str, int], done: FoundCallback, admit: int | None = None
    ) -> bool:
        """Asks the ingest for history; ``done`` runs when the answer arrives, in stream order
        (before any update that follows it), or with None if the ingest goes away first.
        False (and ``done`` never called) while no ingest is joined."""
        if not self.joined:
            return False
        self._request_ids += 1
        self._fetches[self._request_ids] = done
        request: dict[str, Any] = {"id": self._request_ids, "channels": channels, "since": since}
        if admit is not None:
            request["admit"] = admit
        self._send(json_message(Kind.FETCH, request))
        return True

    def taken(self, session: str, subject: str = "") -> None:
        """This edge's client resumed ``session``: every other edge closes its old connection
        (if it has the same token subject)."""
        if self.joined:
            # The subject goes last: one with a NUL in it splits wrong, so matches nothing.
            self._send(message(Kind.TAKEN, f"{session}\0{subject}".encode()))

    # -- SessionLink (the ingest holds the node's sessions) ----------------------------------

    def save_session(self, session: str, record: SessionRecord | None, live: bool) -> None:
        # Lost while the ingest is away (re-joining announces every connected client's again).
        if self.joined:
            value = encode_record(record) if record is not None else b""
            self._send(headed_message(Kind.SESSION, {"session": session, "live": live}, value))

    def claim_session(self, session: str, done: ClaimCallback) -> bool:
        if not self.joined:
            return False
        self._request_ids += 1
        self._claims[self._request_ids] = done
        self._send(json_message(Kind.CLAIM, {"id": self._request_ids, "session": session}))
        return True

    def _claimed(self, body: bytes) -> None:
        header, raw = parse_headed(body)
        done = self._claims.pop(header["id"], None)
        if done is not None:
            done(decode_record(raw) if raw else None, True)

    def _fetched(self, body: bytes) -> None:
        header, record = parse_headed(body)
        updates = unpack_updates(record)
        done = self._fetches.pop(header["id"], None)
        if done is not None:
            k = header["missed"]
            done(
                Found(
                    missed=updates[:k],
                    gaps=header["gaps"],
                    latest=updates[k:],
                    refused=header.get("refused", ""),
                    added=header.get("added", []),
                )
            )

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
                try:
                    self._received(kind, body)
                except (BusProtocolError, ValueError):
                    raise
                except Exception:
                    # The edge's handling of one message must not cost the link (every client
                    # here would go stale) nor the messages after it.
                    log.exception("handling a %s message from the ingest failed", kind.name)
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
            self._edge.on_ingest(IngestState(up=False, epoch="", reason=StaleReason.INGEST_DOWN))
        self.joined = False
        self._joined_event.clear()
        fetches, self._fetches = self._fetches, {}
        for done in fetches.values():
            done(None)
        claims, self._claims = self._claims, {}
        for answer in claims.values():
            answer(None, False)
        self._lost.set()

    def _received(self, kind: Kind, body: bytes) -> None:
        if kind is Kind.UPDATES:
            self._edge.publish_packed(body)
        elif kind is Kind.NODE:
            self.node = json.loads(body)
        elif kind is Kind.FETCHED:
            self._fetched(body)
        elif kind is Kind.FEED:
            self._edge.on_feed(_feed_state(json.loads(body)))
        elif kind is Kind.CLAIMED:
            self._claimed(body)
        elif kind is Kind.TAKEN_ELSEWHERE:
            session, _, subject = body.decode().rpartition("\0")
            self._edge.on_taken_elsewhere(session, subject)
        elif kind is Kind.REFUSED:
            refusal = json.loads(body)
            self._edge.on_refused(refusal["channels"], refusal["reason"])
        elif kind is Kind.WELCOME:
            welcome = json.loads(body)
            if self.node or self.rejoins:
                log.info("re-joined the ingest (epoch %s)", welcome["epoch"])
            self.rejoins += 1
            self.joined = True
            self._joined_event.set()
            channels = self._channels()
            if channels:
                self._send(channels_message(Kind.ADD, channels))
            self._report_stats()
            # The feed first: joining then tells clients one state, the node's as it is now.
            self._edge.on_feed(_feed_state(welcome.get("feed") or {"up": True, "reason": ""}))
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


def _feed_state(feed: dict[str, Any]) -> FeedState:
    return FeedState(
        up=bool(feed["up"]),
        reason=str(feed["reason"]),
        unserved=tuple(str(k) for k in feed.get("unserved", ())),
    )
