"""``Degradation``: the seed's three levels of graceful degradation under overload, entered and
left with hysteresis.

The signal is the edge's own distress: how late its event loop runs timers (the worst of the
last few samples; CPU saturation shows there first: every socket, every batch, every ping
waits behind it) and the share of its
clients whose sockets back up (egress pressure). Every ``degrade_sample_s`` the worse of the
two gives a target level; a higher level is entered once the target has stayed at or above it
for ``degrade_enter_s``, and a level is left, one at a time, once the target has stayed below
it for ``degrade_exit_s``. The hub applies the level (``EdgeHub.set_degradation``):

1. depth and klines are left out for immediate-mode clients (quotes and ticks still flow);
2. immediate-mode clients are also moved to conflated batches every
   ``degrade_batch_interval_ms`` (the fan-out's work then follows the number of clients, not
   the update rate);
3. nothing live: clients get a refresh of their channels every ``degrade_snapshot_interval_s``.

Clients are told with a status message (``stale``, reason ``degraded``) for the channels a
level affects, and get a refresh, then ``ok``, when it is left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from tickgate.config import GatewayConfig

log = logging.getLogger("tickgate.edge")

#: Samples whose worst lag counts (a sliding maximum).
RECENT_SAMPLES = 4


@dataclass(frozen=True, slots=True)
class DegradeSettings:
    """Event-loop lag (ms) and paused-client share at which each level is wanted."""

    lag_ms: tuple[float, float, float]
    paused_share: tuple[float, float, float]
    sample_s: float
    enter_s: float
    exit_s: float


def degrade_settings(config: GatewayConfig) -> DegradeSettings:
    return DegradeSettings(
        lag_ms=(config.degrade_level1_lag_ms, config.degrade_level2_lag_ms, config.degrade_level3_lag_ms),
        paused_share=(
            config.degrade_level1_paused_share,
            config.degrade_level2_paused_share,
            config.degrade_level3_paused_share,
        ),
        sample_s=config.degrade_sample_s,
        enter_s=config.degrade_enter_s,
        exit_s=config.degrade_exit_s,
    )


class Degradation:
    def __init__(
        self,
        settings: DegradeSettings,
        paused_share: Callable[[], float],
        apply: Callable[[int], None],
    ) -> None:
        self.settings = settings
        self._paused_share = paused_share
        self._apply = apply
        #: The level in force, 0..3.
        self.level = 0
        #: Times each level was entered (index 1..3).
        self.entered = [0, 0, 0, 0]
        #: The last measured event-loop lag (ms) and the target it gave.
        self.lag_ms = 0.0
        self.target = 0
        self._above_since: float | None = None
        self._below_since: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0
        # The last few samples' lag: a loop busy in bursts runs some timers on time; the worst
        # of the last few is what its clients wait.
        self._recent: deque[float] = deque(maxlen=RECENT_SAMPLES)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._due = loop.time() + self.settings.sample_s
        self._timer = loop.call_at(self._due, self._sample)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._recent.append(max(0.0, (now - self._due) * 1000))
        self.lag_ms = max(self._recent)
        self._due = now + self.settings.sample_s
        self._timer = loop.call_at(self._due, self._sample)
        try:
            self.observe(self.lag_ms, self._paused_share(), time.monotonic())
        except Exception:  # a fault here must not stop the sampling, nor the loop
            log.exception("degradation sample failed")

    def observe(self, lag_ms: float, paused_share: float, now: float) -> None:
        """One sample: moves the level if the target held long enough."""
        s = self.settings
        by_lag = sum(lag_ms >= t for t in s.lag_ms)
        by_paused = sum(paused_share >= t for t in s.paused_share)
        self.target = target = max(by_lag, by_paused)
        if target > self.level:
            self._below_since = None
            if self._above_since is None:
                self._above_since = now
            elif now - self._above_since >= s.enter_s:
                self._set(target)
        elif target < self.level:
            self._above_since = None
            if self._below_since is None:
                self._below_since = now
            elif now - self._below_since >= s.exit_s:
                self._set(self.level - 1)  # down one level at a time
                self._below_since = now
        else:
            self._above_since = self._below_since = None

    def _set(self, level: int) -> None:
        old, self.level = self.level, level
        self._above_since = None
        if level > old:
            self.entered[level] += 1
            log.warning("overloaded (loop lag %.0f ms): degradation level %d", self.lag_ms, level)
        else:
            log.warning("load eased: degradation level %d", level)
        self._apply(level)
