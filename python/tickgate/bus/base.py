"""The bus interface: what an edge hands the bus (``Interest``) and what the bus hands an edge
(``EdgeSink``). The ingest side is two calls every implementation has: ``publish(updates)``
and ``refused(channels, reason)`` (the latter via the subscription pool's refusal sinks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tickgate._core import Update
from tickgate.sessions.history import FoundCallback


class Interest(Protocol):
    """The bus as an edge uses it: where it reports channels gaining their first or losing
    their last receiver, asks the ingest's history for a client, and says a client took a
    session over."""

    def add(self, channels: list[str]) -> None: ...

    def remove(self, channels: list[str]) -> None: ...

    def fetch(
        self, channels: list[str], since: dict[str, int], done: FoundCallback, admit: int | None = None
    ) -> bool:
        """Asks for the latest of ``channels`` and what came after ``since``; ``done`` runs
        with the answer (at once in one process, in stream order over a bus), or with None if
        the ingest goes away first. False (``done`` not called): no ingest to ask. Over a bus,
        the asked channels are routed to this edge from the answer on. ``admit``: first check
        that they fit upstream, bringing at most that many new symbols (``Found.refused``:
        they do not, and nothing is routed or subscribed)."""
        ...

    def taken(self, session: str, subject: str = "") -> None:
        """A client of this edge (token subject ``subject``) resumed ``session``: other edges
        close its old connection, if it has the same subject."""
        ...


@dataclass(frozen=True, slots=True)
class IngestState:
    """Whether an edge is joined to a live ingest, and that ingest's sequence epoch."""

    up: bool
    epoch: str
    #: Why the ingest is not reachable (empty when up).
    reason: str = ""


@dataclass(frozen=True, slots=True)
class FeedState:
    """Whether the provider feed behind the ingest is delivering: clients' channels are
    ``stale`` with ``reason`` (``upstream_down``, ``provider_silent``, ...) while it is not."""

    up: bool
    reason: str = ""
    #: Kinds (``quote``, ``depth``, ...) not served while it is up (a backup provider that
    #: streams trades only): their channels stay stale, reason ``failing_over``.
    unserved: tuple[str, ...] = ()


class EdgeSink(Protocol):
    """What the bus delivers to an edge."""

    def publish(self, updates: list[Update]) -> None:
        """Updates as the core's objects (in-process)."""

    def publish_packed(self, record: bytes) -> None:
        """Updates as a bus record (``tickgate._core.pack_updates``), from another process."""

    def on_refused(self, channels: list[str], reason: str) -> None:
        """The provider refused ``channels``; the pool has already forgotten them."""

    def on_ingest(self, state: IngestState) -> None:
        """The edge joined an ingest, or lost it."""

    def on_feed(self, state: FeedState) -> None:
        """The ingest's provider feed went down or came back."""

    def on_taken_elsewhere(self, session: str, subject: str = "") -> None:
        """A client (of ``subject``) on another edge resumed ``session``: its connection here,
        if any and if it is the same subject's, goes."""
