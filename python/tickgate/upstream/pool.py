"""``SubscriptionPool``: the global subscription pool.

Upstream is subscribed to the union of what clients want. Each edge reports only its own
first and last receivers of a channel (the core's dispatcher finds those edges); the pool
ref-counts them across edges, so a channel is subscribed upstream when the first edge wants
it and dropped when the last lets go. Two clients asking for ``AAPL$US:quote`` cost one
upstream subscription and one decode per update.
"""

from __future__ import annotations

from collections.abc import Callable

from tickgate.upstream.base import UpstreamAdapter

#: Told which channels the provider refused and why (each edge tells its clients).
RefusalSink = Callable[[list[str], str], None]


class SubscriptionPool:
    def __init__(self) -> None:
        self.upstream: UpstreamAdapter | None = None
        self._refcount: dict[str, int] = {}
        self._refusal_sinks: list[RefusalSink] = []

    def attach(self, upstream: UpstreamAdapter) -> None:
        """Streams the pool's union through ``upstream`` (subscribing what is wanted already)."""
        self.upstream = upstream
        if self._refcount:
            upstream.subscribe(sorted(self._refcount))

    def on_refused(self, sink: RefusalSink) -> None:
        """Registers an edge to be told about refusals."""
        self._refusal_sinks.append(sink)

    def add(self, channels: list[str]) -> None:
        """An edge gained its first receiver of ``channels``."""
        first = []
        for channel in channels:
            n = self._refcount.get(channel, 0)
            self._refcount[channel] = n + 1
            if n == 0:
                first.append(channel)
        if first and self.upstream is not None:
            self.upstream.subscribe(first)

    def remove(self, channels: list[str]) -> None:
        """An edge lost its last receiver of ``channels``."""
        last = []
        for channel in channels:
            n = self._refcount.get(channel, 0)
            if n <= 1:
                if self._refcount.pop(channel, None) is not None:
                    last.append(channel)
            else:
                self._refcount[channel] = n - 1
        if last and self.upstream is not None:
            self.upstream.unsubscribe(last)

    def refused(self, channels: list[str], reason: str) -> None:
        """The provider refused ``channels``: forget them, and have every edge drop them from
        its clients and tell them, so what clients hold matches what upstream streams."""
        for channel in channels:
            self._refcount.pop(channel, None)
        for sink in self._refusal_sinks:
            sink(channels, reason)

    def channels(self) -> list[str]:
        return sorted(self._refcount)
