"""``FinnhubAdapter``: the Finnhub-style protocol over a ``ProviderConnection`` (a backup
provider: trades only).

The token goes in the URL (``?token=``); there is no auth message, so the connection is ready
once open. Subscriptions are one symbol per message with no reply. Only tick channels can be
served: any other kind is refused at once (the edges tell the clients who asked,
``upstream_rejected``). The server's ``{"type":"ping"}`` heartbeats keep a quiet line alive;
there are no application pings, so a dead line is found by protocol pings and the silence rules.
"""

from __future__ import annotations

from urllib.parse import quote

from tickgate._core import split_channel
from tickgate.upstream.connection import ProviderConnection

#: What a Finnhub-style feed serves.
SERVED_KIND = "tick"


def finnhub_symbol(canonical: str) -> str:
    """``AAPL$US`` -> ``AAPL``, ``700$HK`` -> ``700.HK`` (how Finnhub spells them)."""
    code, _, region = canonical.rpartition("$")
    return code if region == "US" else f"{code}.{region}"


class FinnhubAdapter(ProviderConnection):
    name = "finnhub"
    provider = "finnhub"
    served_kinds = frozenset({SERVED_KIND})

    def _url_and_headers(self) -> tuple[str, dict[str, str]]:
        url = self.settings.url
        sep = "&" if "?" in url else "?"
        return f"{url}{sep}token={quote(self.settings.token, safe='')}", {}

    unserved_reason = "finnhub streams trades only (tick channels)"

    def serves(self, channel: str) -> bool:
        return split_channel(channel)[1] == SERVED_KIND

    def _spelling(self, channel: str) -> str:
        symbol = split_channel(channel)[0]
        return self.symbol_map.get(symbol) or finnhub_symbol(symbol)

    def _send_subscribe(self, channels: list[str]) -> None:
        for channel in channels:
            self._send({"type": "subscribe", "symbol": self._spelling(channel)})

    def _send_unsubscribe(self, channels: list[str]) -> None:
        for channel in channels:
            self._send({"type": "unsubscribe", "symbol": self._spelling(channel)})
