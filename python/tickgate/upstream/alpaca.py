"""``AlpacaAdapter``: the Alpaca-style protocol over a ``ProviderConnection`` (a backup
provider: trades, top-of-book quotes, minute bars; US listings).

The token is ``KEY:SECRET``, sent as the ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY`` headers;
the connection is ready when the server says ``authenticated``. Channels map to its streams:
``tick`` -> trades, ``depth`` -> quotes (the book's top, one level), ``kline@1`` -> minute bars.
Anything else (``quote``: Alpaca has no last-price quote; other kline periods; non-US symbols)
is refused at once.
"""

from __future__ import annotations

from tickgate._core import ControlEvent, split_channel
from tickgate.upstream.connection import ProviderConnection, log

_STREAM_OF_KIND = {"tick": "trades", "depth": "quotes", "kline@1": "bars"}


def _stream(channel: str, symbol_map: dict[str, str]) -> tuple[str, str] | None:
    """``(stream, Alpaca symbol)`` for a channel it can serve, else None."""
    symbol, kind = split_channel(channel)
    stream = _STREAM_OF_KIND.get(kind)
    if stream is None:
        return None
    if symbol in symbol_map:
        return stream, symbol_map[symbol]
    code, _, region = symbol.rpartition("$")
    return (stream, code) if region == "US" else None


class AlpacaAdapter(ProviderConnection):
    name = "alpaca"
    provider = "alpaca"
    # For a failover's status: kinds served in full (bars are kline@1 only).
    served_kinds = frozenset({"tick", "depth"})

    def _url_and_headers(self) -> tuple[str, dict[str, str]]:
        key, _, secret = self.settings.token.partition(":")
        return self.settings.url, {"APCA-API-KEY-ID": key, "APCA-API-SECRET-KEY": secret}

    def _greet(self) -> None:
        pass  # the headers authenticate: ready at the server's "authenticated"

    unserved_reason = "alpaca serves US trades, quotes as depth, and kline@1 only"

    def serves(self, channel: str) -> bool:
        return _stream(channel, self.symbol_map) is not None

    def _on_control(self, event: ControlEvent) -> None:
        if event.kind == "auth":
            if event.ok:
                self._ready()
            elif self._transport is not None:
                self._kill(self._transport, f"auth failed: {event.message}")
        elif event.kind == "subscribe" and not event.ok:
            self.last_error = f"subscribe refused: {event.message}"
            log.warning("upstream %s refused a subscription: %s", self.name, event.message)
        else:
            super()._on_control(event)

    def _send_subscribe(self, channels: list[str]) -> None:
        self._send_streams("subscribe", channels)

    def _send_unsubscribe(self, channels: list[str]) -> None:
        self._send_streams("unsubscribe", channels)

    def _send_streams(self, action: str, channels: list[str]) -> None:
        streams: dict[str, list[str]] = {}
        for channel in channels:
            found = _stream(channel, self.symbol_map)
            if found is not None:
                streams.setdefault(found[0], []).append(found[1])
        if streams:
            self._send({"action": action, **streams})
