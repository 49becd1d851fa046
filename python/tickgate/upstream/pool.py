"""``SubscriptionPool``: the global subscription pool.

Upstream is subscribed to the union of what clients want. Each edge reports only its own
first and last receivers of a channel (the core's dispatcher finds those edges); the pool
ref-counts them across edges, so a channel is subscribed upstream when the first edge wants
it and dropped when the last lets go. Two clients asking for ``AAPL$US:quote`` cost one
upstream subscription and one decode per update.
"""

from __future__ import annotations

from collections.abc import Callable

from tickgate._core import split_channel
from tickgate.upstream.base import UpstreamAdapter

#: Told which channels the provider refused and why (each edge tells its clients).
RefusalSink = Callable[[list[str], str], None]


#: Why ``admit`` refused (the ``capacity`` error's detail).
OVER_SHARE = "share"
OVER_LIMIT = "provider_limit"


class SubscriptionPool:
    def __init__(self, max_symbols: int = 0) -> None:
        self.upstream: UpstreamAdapter | None = None
        #: The provider's symbol limit for the upstream connection (0: none known).
        self.max_symbols = max_symbols
        self._refcount: dict[str, int] = {}
        # Symbol -> how many of its channels the union holds (the provider counts symbols).
        self._symbols: dict[str, int] = {}
        self._refusal_sinks: list[RefusalSink] = []
        self._dropped_sinks: list[Callable[[list[str]], None]] = []

    def attach(self, upstream: UpstreamAdapter) -> None:
        """Streams the pool's union through ``upstream`` (subscribing what is wanted already)."""
        self.upstream = upstream
        if self._refcount:
            upstream.subscribe(sorted(self._refcount))

    def on_refused(self, sink: RefusalSink) -> None:
        """Registers an edge to be told about refusals."""
        self._refusal_sinks.append(sink)

    def on_dropped(self, sink: Callable[[list[str]], None]) -> None:
        """Registers who is told of channels that stop being streamed upstream (the last
        holder left, or the provider refused them): their stream has a hole from now on."""
        self._dropped_sinks.append(sink)

    def _dropped(self, channels: list[str]) -> None:
        for sink in self._dropped_sinks:
            sink(channels)

    def admit(self, channels: list[str], may_add: int) -> tuple[str, list[str]]:
        """Whether ``channels`` fit upstream: ``("", symbols new to it)`` if so, else the
        reason (``OVER_SHARE``: more new symbols than ``may_add``, the asking client's share
        left; ``OVER_LIMIT``: past the provider's limit) and those symbols. Adds nothing."""
        new = sorted({split_channel(c)[0] for c in channels} - self._symbols.keys())
        if len(new) > may_add:
            return OVER_SHARE, new
        if new and self.max_symbols and len(self._symbols) + len(new) > self.max_symbols:
            return OVER_LIMIT, new
        return "", new

    def add(self, channels: list[str]) -> None:
        """An edge gained its first receiver of ``channels``."""
        first = []
        for channel in channels:
            n = self._refcount.get(channel, 0)
            self._refcount[channel] = n + 1
            if n == 0:
                first.append(channel)
                symbol = split_channel(channel)[0]
                self._symbols[symbol] = self._symbols.get(symbol, 0) + 1
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
                    self._forget_symbol_of(channel)
            else:
                self._refcount[channel] = n - 1
        if last:
            self._dropped(last)
            if self.upstream is not None:
                self.upstream.unsubscribe(last)

    def refused(self, channels: list[str], reason: str) -> None:
        """The provider refused ``channels``: forget them, and have every edge drop them from
        its clients and tell them, so what clients hold matches what upstream streams."""
        for channel in channels:
            if self._refcount.pop(channel, None) is not None:
                self._forget_symbol_of(channel)
        self._dropped(channels)
        for sink in self._refusal_sinks:
            sink(channels, reason)

    def _forget_symbol_of(self, channel: str) -> None:
        symbol = split_channel(channel)[0]
        n = self._symbols.get(symbol, 0)
        if n <= 1:
            self._symbols.pop(symbol, None)
        else:
            self._symbols[symbol] = n - 1

    def channels(self) -> list[str]:
        return sorted(self._refcount)

    def symbol_count(self) -> int:
        return len(self._symbols)

    def holds_symbol(self, symbol: str) -> bool:
        """Whether any channel of ``symbol`` is streamed upstream."""
        return symbol in self._symbols
