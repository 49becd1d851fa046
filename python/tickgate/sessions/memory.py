"""``MemorySessions``: the sessions of clients that went away, kept for ``ttl_s`` (the embedded
default; Redis comes later). Bounded: past ``max_sessions`` the oldest go first."""

from __future__ import annotations

import time
from collections import OrderedDict

import msgspec


class SessionRecord(msgspec.Struct):
    """What a session holds while its client is away."""

    channels: list[str]
    mode: str
    interval_ms: int
    epoch: str
    #: When its last connection went (``time.monotonic()``).
    detached_at: float


class MemorySessions:
    def __init__(self, ttl_s: float, max_sessions: int) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        # Insertion order is detach order: with one TTL for all, the front expires first.
        self._records: OrderedDict[str, SessionRecord] = OrderedDict()
        self.expired = 0
        self.evicted = 0

    def put(self, session: str, record: SessionRecord) -> None:
        self._records.pop(session, None)
        self._records[session] = record
        self._expire()
        while len(self._records) > self.max_sessions:
            self._records.popitem(last=False)
            self.evicted += 1

    def take(self, session: str) -> SessionRecord | None:
        """The record, removed (its new connection holds the session now), if not expired."""
        self._expire()
        return self._records.pop(session, None)

    def _expire(self) -> None:
        cutoff = time.monotonic() - self.ttl_s
        records = self._records
        while records:
            session, record = next(iter(records.items()))
            if record.detached_at > cutoff:
                break
            del records[session]
            self.expired += 1

    def __len__(self) -> int:
        self._expire()
        return len(self._records)
