"""``MemorySessions``: the sessions of clients that went away, kept for ``ttl_s`` in this
process (the embedded default, and the local part of every other store). Bounded: past
``max_sessions`` the oldest go first."""

from __future__ import annotations

import time
from collections import OrderedDict

from tickgate.sessions.record import SessionRecord


class MemorySessions:
    #: Sessions live in this process alone: nothing to ask elsewhere, nothing to save for
    #: connected clients (their connection is their session).
    shared = False
    held_by_ingest = False
    refresh_s: float | None = None

    def __init__(self, ttl_s: float, max_sessions: int) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        # session -> (when it was put, monotonic; record). Insertion order is put order: with
        # one TTL for all, the front expires first.
        self._records: OrderedDict[str, tuple[float, SessionRecord]] = OrderedDict()
        self.expired = 0
        self.evicted = 0

    def put(self, session: str, record: SessionRecord) -> None:
        """``session``'s connection went: keep ``record`` for the TTL."""
        self._records.pop(session, None)
        self._records[session] = (time.monotonic(), record)
        self._expire()
        while len(self._records) > self.max_sessions:
            self._records.popitem(last=False)
            self.evicted += 1

    def take(self, session: str) -> SessionRecord | None:
        """The record, removed (its new connection holds the session now), if not expired."""
        self._expire()
        entry = self._records.pop(session, None)
        return entry[1] if entry is not None else None

    def save_live(self, session: str, record: SessionRecord | None) -> None:
        pass

    def released(self, session: str) -> None:
        self._records.pop(session, None)

    def taken_elsewhere(self, session: str) -> None:
        self._records.pop(session, None)  # nowhere to hand it to: it is the other edge's now

    async def claim(self, session: str) -> SessionRecord | None:
        return None

    def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def figures(self) -> dict[str, int]:
        return {"sessions_detached": len(self), "sessions_expired": self.expired, "redis_up": -1}

    def _expire(self) -> None:
        cutoff = time.monotonic() - self.ttl_s
        records = self._records
        while records:
            session, (at, _) = next(iter(records.items()))
            if at > cutoff:
                break
            del records[session]
            self.expired += 1

    def __len__(self) -> int:
        self._expire()
        return len(self._records)
