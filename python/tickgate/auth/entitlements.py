"""What a token entitles its holder to see: the ``symbols`` claim.

Market data is licensed per user and per market, so a token may carry
``"symbols": ["*$US", "700$HK"]``: every US symbol, and 700$HK. ``"*"`` is everything; a
token without the claim is entitled to everything (the issuer decides by leaving it out).
Patterns are matched against canonical symbols (``CODE$REGION``); a pattern the gateway does
not understand refuses the token rather than guessing.
"""

from __future__ import annotations

from tickgate._core import DecodeError, normalize_symbol

__all__ = ["EntitlementError", "Entitlements"]

#: Patterns one claim may hold.
MAX_PATTERNS = 1000


class EntitlementError(ValueError):
    pass


class Entitlements:
    __slots__ = ("_regions", "_symbols", "patterns")

    def __init__(self, patterns: list[str]) -> None:
        self.patterns = patterns
        self._symbols: set[str] = set()
        self._regions: set[str] = set()
        for pattern in patterns:
            if pattern.startswith("*$") and pattern[2:].isalnum():
                self._regions.add(pattern[2:].upper())
            else:
                try:
                    self._symbols.add(normalize_symbol(pattern))
                except DecodeError:
                    raise EntitlementError(
                        f"symbols claim: {pattern[:40]!r} is not a symbol, *$REGION or *"
                    ) from None

    @classmethod
    def from_claim(cls, claim: object) -> Entitlements | None:
        """None (everything) for an absent claim or one holding ``*``."""
        if claim is None:
            return None
        if isinstance(claim, str):
            claim = [p for p in claim.split(",") if p.strip()]
        if not isinstance(claim, list) or not all(isinstance(p, str) for p in claim):
            raise EntitlementError("symbols claim must be a list of strings")
        if len(claim) > MAX_PATTERNS:
            raise EntitlementError(f"symbols claim holds over {MAX_PATTERNS} patterns")
        patterns = [p.strip() for p in claim]
        if "*" in patterns:
            return None
        return cls(patterns)

    def allows(self, symbol: str) -> bool:
        """``symbol`` canonical (``AAPL$US``)."""
        if symbol in self._symbols:
            return True
        _, _, region = symbol.rpartition("$")
        return region in self._regions

    def refused(self, symbols: list[str]) -> list[str]:
        """The symbols in ``symbols`` this does not allow."""
        return [s for s in symbols if not self.allows(s)]

    def __repr__(self) -> str:
        return f"Entitlements({self.patterns!r})"
