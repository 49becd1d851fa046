"""Reconnect delays: exponential with full jitter, never giving up.

Full jitter (a uniform draw between 0 and the exponential cap) spreads the reconnects of many
gateway nodes that lost the same provider at the same moment, instead of having them retry
in lockstep.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(
        self, initial: float, maximum: float, *, factor: float = 2.0, rng: random.Random | None = None
    ):
        if initial <= 0 or maximum < initial or factor < 1:
            raise ValueError("need 0 < initial <= maximum and factor >= 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        cap = min(self.maximum, self.initial * self.factor**self.attempt)
        if cap < self.maximum:  # stop growing once capped: factor**attempt would overflow
            self.attempt += 1
        # Never below the initial delay's tenth: a zero delay would busy-loop on a dead host.
        return max(self.initial / 10, self._rng.uniform(0, cap))

    def reset(self) -> None:
        self.attempt = 0
