"""``ItickAdapter``: the iTick protocol over a ``ProviderConnection``.

It authenticates (header, query or message form), subscribes symbols x types in chunks, maps
each subscribe reply to the channels its request carried (iTick answers in order, without an
id), refuses what the provider refused, and pings with ``{"ac":"ping"}``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from urllib.parse import quote

from tickgate._core import ControlEvent, FeedProcessor, split_channel
from tickgate.upstream.base import FeedSink, RejectSink, UpdateSink
from tickgate.upstream.connection import ProviderConnection, log
from tickgate.upstream.settings import UpstreamSettings


class ItickAdapter(ProviderConnection):
    name = "itick"
    provider = "itick"

    def __init__(
        self,
        settings: UpstreamSettings,
        processor: FeedProcessor,
        on_updates: UpdateSink,
        on_rejected: RejectSink,
        on_feed: FeedSink | None = None,
    ) -> None:
        super().__init__(settings, processor, on_updates, on_rejected, on_feed)
        # iTick answers subscribes in order and without an id: the FIFO maps each reply to
        # the channels its request carried.
        self._pending: deque[list[str]] = deque()

    def _url_and_headers(self) -> tuple[str, dict[str, str]]:
        url, headers = self.settings.url, {}
        if self.settings.auth == "header":
            headers["token"] = self.settings.token
        elif self.settings.auth == "query":
            url += ("&" if "?" in url else "?") + "token=" + quote(self.settings.token, safe="")
        return url, headers

    def _greet(self) -> None:
        # Ready when the provider says authenticated (header and query forms say it unasked).
        if self.settings.auth == "message":
            self._send({"ac": "auth", "params": self.settings.token})

    def _ping_message(self) -> dict[str, str] | None:
        return {"ac": "ping", "params": str(int(time.time() * 1000))}

    def _connection_lost(self) -> None:
        self._pending.clear()

    def _on_control(self, event: ControlEvent) -> None:
        kind = event.kind
        if kind == "auth":
            if event.ok:
                self._ready()
            elif self._transport is not None:
                # Retried with backoff (a token fixed at the provider's end comes back by itself).
                self._kill(self._transport, f"auth failed: {event.message}")
        elif kind == "subscribe":
            channels = self._pending.popleft() if self._pending else []
            if not event.ok:
                # A channel that a later, still unanswered subscribe also carries belongs to
                # that request now (it was dropped and asked for again in between).
                later = {c for batch in self._pending for c in batch}
                refused = [c for c in channels if c in self._wanted and c not in later]
                self._wanted.difference_update(refused)
                self.last_error = f"subscribe refused: {event.message}"
                log.warning("upstream refused %d channels: %s", len(refused), event.message)
                if refused:
                    self._on_rejected(refused, event.message)
        else:
            super()._on_control(event)

    def _send_subscribe(self, channels: list[str]) -> None:
        for symbols, types, batch in _group_with_channels(channels, self.settings.subscribe_chunk):
            self._pending.append(batch)
            self._send({"ac": "subscribe", "params": ",".join(symbols), "types": ",".join(types)})

    def _send_unsubscribe(self, channels: list[str]) -> None:
        if self.settings.unsubscribe_mode == "message":
            for symbols, types, _ in _group_with_channels(channels, self.settings.subscribe_chunk):
                self._send({"ac": "unsubscribe", "params": ",".join(symbols), "types": ",".join(types)})
        else:
            # No unsubscribe in the provider's protocol: re-send the reduced set.
            self._send_subscribe(sorted(self._wanted))


def _group_with_channels(channels: Iterable[str], chunk: int) -> list[tuple[list[str], list[str], list[str]]]:
    """iTick subscribes symbols x types: group channels by their set of types so each message
    asks for exactly what is wanted, at most ``chunk`` symbols per message."""
    types_by_symbol: dict[str, set[str]] = {}
    for channel in channels:
        symbol, kind = split_channel(channel)
        types_by_symbol.setdefault(symbol, set()).add(kind)
    by_types: dict[tuple[str, ...], list[str]] = {}
    for symbol, kinds in types_by_symbol.items():
        by_types.setdefault(tuple(sorted(kinds)), []).append(symbol)
    out = []
    for kinds, symbols in sorted(by_types.items()):
        symbols.sort()
        for i in range(0, len(symbols), chunk):
            part = symbols[i : i + chunk]
            out.append((part, list(kinds), [f"{s}:{k}" for s in part for k in kinds]))
    return out
