"""``SessionStore``: where an edge keeps sessions. Three implementations, one interface:

- ``MemorySessions``: this process alone (one gateway process, the embedded default).
- ``NodeSessions``: the ingest holds them for a node of workers (no Redis), over the bus.
- ``RedisSessions``: Redis, so a session outlives any process of the node and its restarts.

A connected client's session is its connection. Stores that share sessions beyond the
process (``shared``) are also told a connected client's state (``save_live``), so that a
client whose worker died, or whose old connection is still open elsewhere, can resume.
"""

from __future__ import annotations

from typing import Protocol

from tickgate.sessions.record import SessionRecord


class SessionStoreUnavailable(Exception):
    """The store holding shared sessions did not answer (Redis down or slow, ingest away)."""


class SessionStore(Protocol):
    ttl_s: float
    #: Whether ``claim`` can find sessions ``take`` does not (another process's).
    shared: bool
    #: Whether the node's ingest holds them (saved again when an edge re-joins it).
    held_by_ingest: bool
    #: How often connected clients' sessions must be saved again (None: never).
    refresh_s: float | None

    def put(self, session: str, record: SessionRecord) -> None:
        """``session``'s connection went: keep ``record`` for the TTL."""

    def save_live(self, session: str, record: SessionRecord | None) -> None:
        """A connected client's session as it is now (None: nothing to keep, no channels)."""

    def take(self, session: str) -> SessionRecord | None:
        """This process's record of ``session``, removed; None: ask ``claim``."""

    async def claim(self, session: str) -> SessionRecord | None:
        """The record from beyond this process, taken so that no other connection gets it;
        None if there is none. Raises ``SessionStoreUnavailable`` if the store did not answer."""

    def released(self, session: str) -> None:
        """``session``'s connection here was handed over: write nothing more of it."""

    def taken_elsewhere(self, session: str) -> None:
        """A client resumed ``session`` on another edge while its record was only here: hand
        it to the shared store now and keep no copy."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...

    def figures(self) -> dict[str, int]:
        """``sessions_detached``, ``sessions_expired``, ``redis_up`` (and what else it has)."""
        ...
