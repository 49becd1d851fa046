"""``Failover``: a primary provider and a backup, one of them feeding the gateway at a time.

A circuit breaker around the primary: when it has been down for ``failover_after`` seconds,
the channels move to the backup (clients see ``stale`` / ``failing_over``, then a refresh and
``ok`` once the backup delivers). The primary keeps reconnecting meanwhile, its updates set
aside; once it has delivered for ``failback_after`` seconds without a break (hysteresis, so a
flapping primary does not drag clients back and forth), the channels move back the same way.

Both providers decode into one ``FeedProcessor``, so a channel's seqs carry on across a switch
(with one skipped where the switch left a hole). The provider not feeding the gateway decodes
into a private processor whose updates are dropped, so nothing it sends is numbered. The
backup is connected only while it is needed (a cold standby). Kinds the backup cannot serve (a
trades-only feed has no quotes) stay stale, with reason ``failing_over``, until the primary is
back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from tickgate._core import FeedProcessor, Update
from tickgate.status import StaleReason
from tickgate.upstream.base import RejectSink, UpstreamState
from tickgate.upstream.connection import ProviderConnection

log = logging.getLogger("tickgate.upstream")

#: ``(up, reason, unserved kinds)``: what the feed sink is told.
FailoverFeedSink = Callable[[bool, str, tuple[str, ...]], None]

ALL_KINDS = ("tick", "quote", "depth", "kline")


class Failover:
    def __init__(
        self,
        primary: ProviderConnection,
        backup: ProviderConnection,
        processor: FeedProcessor,
        on_updates: Callable[[list[Update]], None],
        on_rejected: RejectSink,
        on_feed: FailoverFeedSink,
        *,
        failover_after_s: float,
        failback_after_s: float,
    ) -> None:
        self.primary = primary
        self.backup = backup
        self._processor = processor
        self._publish = on_updates
        self._on_rejected = on_rejected
        self._tell = on_feed
        self._failover_after_s = failover_after_s
        self._failback_after_s = failback_after_s
        #: Which provider feeds the gateway now.
        self.active: ProviderConnection = primary
        self.switches = 0
        self._wanted: set[str] = set()
        self._primary_up = False
        self._awaiting_data = False
        self._timer: asyncio.TimerHandle | None = None
        self.ready_event = primary.ready_event
        primary.wire(self._updates_of(primary), self._rejected_of(primary), self._feed_of(primary))
        backup.wire(self._updates_of(backup), self._rejected_of(backup), self._feed_of(backup))
        backup.use_processor(FeedProcessor(backup.provider))

    # -- the adapter interface (the pool's and the ingest's) ----------------------------------

    @property
    def state(self) -> UpstreamState:
        return self.active.state

    @property
    def url(self) -> str:
        return self.primary.url

    async def start(self) -> None:
        await self.primary.start()

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        await self.primary.stop()
        await self.backup.stop()

    def subscribe(self, channels: Iterable[str]) -> None:
        channels = list(channels)
        self._wanted.update(channels)
        self.primary.subscribe(channels)
        if self.active is self.backup:
            self.backup.subscribe(self._served(channels))

    def unsubscribe(self, channels: Iterable[str]) -> None:
        channels = list(channels)
        self._wanted.difference_update(channels)
        self.primary.unsubscribe(channels)
        self.backup.unsubscribe(channels)

    def status(self) -> dict[str, Any]:
        return {
            **self.active.status(),
            "failover": {
                "active": self.active.name,
                "primary": self.primary.status()["state"],
                "backup": self.backup.status()["state"],
                "switches": self.switches,
            },
        }

    # -- what each provider reports -----------------------------------------------------------

    def _served(self, channels: Iterable[str]) -> list[str]:
        return [c for c in channels if self.backup.serves(c)]

    def _unserved_kinds(self) -> tuple[str, ...]:
        kinds = self.backup.served_kinds
        return () if kinds is None else tuple(k for k in ALL_KINDS if k not in kinds)

    def _updates_of(self, source: ProviderConnection) -> Callable[[list[Update]], None]:
        def updates(batch: list[Update]) -> None:
            if source is not self.active:
                return  # decoded into its private processor: set aside
            self._publish(batch)
            if self._awaiting_data:
                self._awaiting_data = False
                self._tell(True, "", self._unserved_kinds() if source is self.backup else ())

        return updates

    def _rejected_of(self, source: ProviderConnection) -> RejectSink:
        def rejected(channels: list[str], reason: str) -> None:
            if source is self.primary:  # the backup's refusals cost no client its channels
                self._on_rejected(channels, reason)

        return rejected

    def _feed_of(self, source: ProviderConnection) -> Callable[[bool, str], None]:
        def feed(up: bool, reason: str) -> None:
            if source is self.primary:
                self._primary_feed(up, reason)
            elif source is self.active and not up:
                self._tell(False, reason, ())  # the backup failed too: ok again at its data
                self._awaiting_data = True

        return feed

    def _primary_feed(self, up: bool, reason: str) -> None:
        self._primary_up = up
        self._cancel_timer()
        if self.active is self.primary:
            if up:
                self._tell(True, "", ())
            else:
                self._tell(False, reason, ())
                self._timer = asyncio.get_running_loop().call_later(self._failover_after_s, self._fail_over)
        elif up:  # back while the backup serves: taken back once it has held
            self._timer = asyncio.get_running_loop().call_later(self._failback_after_s, self._fail_back)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- switching ------------------------------------------------------------------------------

    def _switch(self, to: ProviderConnection, other: ProviderConnection) -> None:
        self.switches += 1
        other.use_processor(FeedProcessor(other.provider))
        to.use_processor(self._processor)
        self.active = to
        # A switch is a hole in every channel's stream: what neither sent is lost.
        self._processor.mark_gap(sorted(self._wanted))
        self._awaiting_data = True
        self._tell(False, StaleReason.FAILING_OVER, ())

    def _fail_over(self) -> None:
        self._timer = None
        if self._primary_up or self.active is self.backup:
            return
        log.warning(
            "primary %s down for %.0f s: failing over to %s",
            self.primary.name,
            self._failover_after_s,
            self.backup.name,
        )
        self._switch(self.backup, self.primary)
        self.backup.subscribe(self._served(self._wanted))
        asyncio.get_running_loop().create_task(self.backup.start())

    def _fail_back(self) -> None:
        self._timer = None
        if not self._primary_up or self.active is self.primary:
            return
        log.warning("primary %s back for %.0f s: taking it back", self.primary.name, self._failback_after_s)
        self._switch(self.primary, self.backup)
        asyncio.get_running_loop().create_task(self._rest_backup())

    async def _rest_backup(self) -> None:
        await self.backup.stop()
        self.backup.unsubscribe(list(self.backup.wanted))
