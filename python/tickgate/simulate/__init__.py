"""Provider simulators: local, seeded stand-ins for upstream market-data feeds.

``ItickSimulator`` speaks the iTick WebSocket protocol over picows; ``MarketModel`` is the deterministic
market behind it, usable on its own. The simulators never use the core's decoder or encoders: they build
provider frames independently, so tests that feed them through the gateway check the core rather than
echo it.
"""

from .itick_server import ItickSimulator, SimulatorConfig
from .market import (
    Bar,
    DepthBook,
    DepthLevel,
    MarketModel,
    Quote,
    Symbol,
    SymbolMarket,
    Tick,
    parse_symbol,
)

__all__ = [
    "Bar",
    "DepthBook",
    "DepthLevel",
    "ItickSimulator",
    "MarketModel",
    "Quote",
    "SimulatorConfig",
    "Symbol",
    "SymbolMarket",
    "Tick",
    "parse_symbol",
]
