"""``InProcessBus``: ingest and one edge in one process, joined by plain calls."""

from __future__ import annotations

from tickgate._core import Update
from tickgate.bus.base import EdgeSink, FeedState, IngestState
from tickgate.sessions.history import Found, FoundCallback, History
from tickgate.upstream.pool import SubscriptionPool


class InProcessBus:
    def __init__(self, pool: SubscriptionPool, history: History) -> None:
        self._pool = pool
        self._history = history
        self._edge: EdgeSink | None = None

    def join(self, edge: EdgeSink, epoch: str) -> None:
        """Connects the one edge: it gets updates and refusals from now on."""
        self._edge = edge
        self._pool.on_refused(edge.on_refused)
        edge.on_ingest(IngestState(up=True, epoch=epoch))

    # edge -> ingest
    def add(self, channels: list[str]) -> None:
        self._pool.add(channels)

    def remove(self, channels: list[str]) -> None:
        self._pool.remove(channels)

    def fetch(
        self, channels: list[str], since: dict[str, int], done: FoundCallback, admit: int | None = None
    ) -> bool:
        if admit is not None:
            refused, added = self._pool.admit(channels, admit)
            if refused:
                done(Found(refused=refused, added=added))
                return True
        else:
            added = []
        found = self._history.find(channels, since)
        found.added = added
        done(found)  # subscribing them (the pool's add) follows at once, in this call
        return True

    def taken(self, session: str, subject: str = "") -> None:
        pass  # one edge: its hub closed the old connection itself

    # ingest -> edge
    def publish(self, updates: list[Update]) -> None:
        if self._edge is not None:
            self._edge.publish(updates)

    def feed(self, state: FeedState) -> None:
        if self._edge is not None:
            self._edge.on_feed(state)
