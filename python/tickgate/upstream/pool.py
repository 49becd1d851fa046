"""``SubscriptionPool``: the global subscription pool.

Upstream is subscribed to the union of what clients want, ref-counted per channel
(symbol x type) by the core's ``SubscriptionIndex``: a channel's first subscriber subscribes
it upstream, its last leaving unsubscribes it. Two clients asking for ``AAPL$US:quote`` cost
one upstream subscription and one decode per update.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from tickgate._core import SubscriptionIndex
from tickgate.upstream.base import UpstreamAdapter

#: Told, per connection, which of its channels the provider refused and why.
RefusalNotice = Callable[[Hashable, list[str], str], None]


class SubscriptionPool:
    def __init__(
        self, index: SubscriptionIndex, upstream: UpstreamAdapter, on_refused: RefusalNotice
    ) -> None:
        self.index = index
        self.upstream = upstream
        self._on_refused = on_refused

    def subscribe(self, conn: Hashable, channels: list[str]) -> None:
        first = self.index.subscribe(conn, channels)
        if first:
            self.upstream.subscribe(first)

    def unsubscribe(self, conn: Hashable, channels: list[str]) -> None:
        last = self.index.unsubscribe(conn, channels)
        if last:
            self.upstream.unsubscribe(last)

    def remove(self, conn: Hashable) -> None:
        last = self.index.remove(conn)
        if last:
            self.upstream.unsubscribe(last)

    def on_upstream_refused(self, channels: list[str], reason: str) -> None:
        """The provider refused ``channels``: tell the clients holding them and drop them,
        so what clients see as subscribed matches what upstream streams."""
        by_conn: dict[int, tuple[Hashable, list[str]]] = {}
        for channel in channels:
            for conn in self.index.receivers(channel):
                by_conn.setdefault(id(conn), (conn, []))[1].append(channel)
        for conn, refused in by_conn.values():
            self.index.unsubscribe(conn, refused)
            self._on_refused(conn, refused, reason)
