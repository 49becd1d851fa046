"""Sessions of a node of workers without Redis: the ingest holds them for every edge.

``NodeSessions`` is an edge's store: it keeps nothing itself and tells the ingest, over the
bus (a ``SessionLink``), each connected client's session as it changes and each that went;
a resume claims the session from the ingest. ``SessionHost`` is the ingest's side: each
session belongs to the edge whose client holds it (or to none, once its client went, for the
TTL). A claim hands it to the claiming edge, so a write the old edge sent before it heard
is ignored rather than bringing back a stale copy. When an edge's link drops (its process
died), its clients' sessions start their TTL, so those clients can resume on another worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from typing import Protocol

from tickgate.sessions.memory import MemorySessions
from tickgate.sessions.record import SessionRecord
from tickgate.sessions.store import SessionStoreUnavailable

#: How long a resume waits for the ingest before answering ``unknown_session``.
CLAIM_TIMEOUT_S = 1.0

#: Runs with ``(record or None, True)``: the ingest's answer; ``(None, False)``: it went first.
ClaimCallback = Callable[[SessionRecord | None, bool], None]


class SessionLink(Protocol):
    """The bus as ``NodeSessions`` uses it."""

    def save_session(self, session: str, record: SessionRecord | None, live: bool) -> None:
        """``live``: a connected client's session (None: it holds nothing); else its
        connection went and ``record`` starts its TTL."""

    def claim_session(self, session: str, done: ClaimCallback) -> bool:
        """Asks the ingest for ``session``'s record, taken; ``done`` runs with the answer (or
        ``(None, False)`` if the ingest goes first). False (``done`` not called): no ingest."""
        ...


class NodeSessions:
    shared = True
    held_by_ingest = True
    refresh_s: float | None = None  # the ingest keeps connected clients' sessions untimed

    def __init__(self, link: SessionLink, ttl_s: float) -> None:
        self._link = link
        self.ttl_s = ttl_s
        #: The ingest's figures, as last relayed (for this edge's view of the node).
        self.ingest_figures: dict[str, int] = {}

    def put(self, session: str, record: SessionRecord) -> None:
        self._link.save_session(session, record, live=False)

    def save_live(self, session: str, record: SessionRecord | None) -> None:
        self._link.save_session(session, record, live=True)

    def take(self, session: str) -> SessionRecord | None:
        return None  # nothing is kept here: ``claim``

    async def claim(self, session: str) -> SessionRecord | None:
        answer: asyncio.Future[tuple[SessionRecord | None, bool]] = asyncio.get_running_loop().create_future()

        def done(record: SessionRecord | None, answered: bool) -> None:
            if not answer.done():
                answer.set_result((record, answered))
            elif record is not None:
                # Answered after the claim gave up: the ingest handed it to this edge, where
                # no client will take it now; back to the ingest, for the TTL.
                self.put(session, record)

        if not self._link.claim_session(session, done):
            raise SessionStoreUnavailable("the ingest is away")
        try:
            record, answered = await asyncio.wait_for(asyncio.shield(answer), CLAIM_TIMEOUT_S)
        except TimeoutError:
            if not answer.done():
                answer.cancel()  # an answer from now on goes back to the ingest (``done``)
                raise SessionStoreUnavailable("the ingest did not answer in time") from None
            # Answered in the loop turn the wait gave up in (after a stall): the record is
            # this edge's now, so it is used rather than lost.
            record, answered = answer.result()
        if not answered:
            raise SessionStoreUnavailable("the ingest went away")
        return record

    def released(self, session: str) -> None:
        pass  # the ingest ignores what this edge may still send of it

    def taken_elsewhere(self, session: str) -> None:
        pass  # the ingest holds it already

    def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def figures(self) -> dict[str, int]:
        # Held by the ingest: the node's figures come from there.
        return {"sessions_detached": 0, "sessions_expired": 0, "redis_up": -1}


class SessionHost:
    """The ingest's sessions for a node. ``edge`` is any hashable naming an edge's link."""

    def __init__(self, ttl_s: float, max_detached: int) -> None:
        #: Sessions whose client went, for the TTL (bounded).
        self.detached = MemorySessions(ttl_s, max_detached)
        #: Connected clients' sessions and the edge holding each (bounded by the edges'
        #: connections: one session per connection).
        self._live: dict[str, tuple[Hashable, SessionRecord]] = {}
        self._by_edge: dict[Hashable, set[str]] = {}
        self.claims = 0

    def save(self, edge: Hashable, session: str, record: SessionRecord | None, live: bool) -> None:
        held = self._live.get(session)
        if held is not None and held[0] != edge:
            return  # claimed by another edge since: this edge's word on it is stale
        if live and record is not None:
            if held is None:
                self.detached.released(session)
                self._by_edge.setdefault(edge, set()).add(session)
            self._live[session] = (edge, record)
            return
        self._drop(session)
        if not live and record is not None:
            self.detached.put(session, record)

    def claim(self, edge: Hashable, session: str) -> SessionRecord | None:
        """The record (the client's last known state), now held by ``edge``."""
        held = self._live.get(session)
        record = held[1] if held is not None else self.detached.take(session)
        if record is None:
            return None
        self.claims += 1
        if held is not None:
            self._drop(session)
        # Until the edge saves it as its client has it: kept so it survives that edge dying.
        self._live[session] = (edge, record)
        self._by_edge.setdefault(edge, set()).add(session)
        return record

    def edge_lost(self, edge: Hashable) -> None:
        """An edge's link dropped: its clients' sessions start their TTL."""
        for session in self._by_edge.pop(edge, ()):
            _, record = self._live.pop(session)
            record.seen_ms = int(time.time() * 1000)
            self.detached.put(session, record)

    def _drop(self, session: str) -> None:
        held = self._live.pop(session, None)
        if held is not None:
            sessions = self._by_edge.get(held[0])
            if sessions is not None:
                sessions.discard(session)
                if not sessions:
                    del self._by_edge[held[0]]

    def figures(self) -> dict[str, int]:
        return {
            "sessions_live": len(self._live),
            "sessions_detached": len(self.detached),
            "sessions_expired": self.detached.expired,
        }
