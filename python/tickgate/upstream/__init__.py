"""Provider connections and the global subscription pool."""

from tickgate.upstream.alpaca import AlpacaAdapter
from tickgate.upstream.base import UpstreamAdapter, UpstreamState
from tickgate.upstream.connection import ProviderConnection
from tickgate.upstream.finnhub import FinnhubAdapter
from tickgate.upstream.itick import ItickAdapter
from tickgate.upstream.pool import SubscriptionPool

#: The adapter for each ``upstream_provider``.
ADAPTERS: dict[str, type[ProviderConnection]] = {
    "itick": ItickAdapter,
    "finnhub": FinnhubAdapter,
    "alpaca": AlpacaAdapter,
}

__all__ = [
    "ADAPTERS",
    "AlpacaAdapter",
    "FinnhubAdapter",
    "ItickAdapter",
    "ProviderConnection",
    "SubscriptionPool",
    "UpstreamAdapter",
    "UpstreamState",
]
