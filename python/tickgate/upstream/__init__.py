"""Provider connections and the global subscription pool."""

from tickgate.upstream.base import UpstreamAdapter, UpstreamState
from tickgate.upstream.itick import ItickAdapter
from tickgate.upstream.pool import SubscriptionPool

__all__ = ["ItickAdapter", "SubscriptionPool", "UpstreamAdapter", "UpstreamState"]
