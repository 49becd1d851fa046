"""``ChannelStatus``: what clients are told about their channels apart from their sockets (the
model of LSEG RTDS item status): ``stale`` with a reason, or ``ok`` again after a refresh.

Three things make channels stale. The first two hit every channel of the edge: its ingest is
away (``ingest_down``, in a node) or the provider feed behind it is not delivering
(``upstream_down``, ``provider_silent``). The third is this edge shedding load
(``degraded``, see ``tickgate.edge.degrade``): level 1 hits depth and klines of immediate-mode
clients, levels 2 and 3 every channel. On each change every client is told once, for the
channels whose reason changed: ``stale`` for those that went stale, and for those that are
whole again a refresh of each (their current state) and then ``ok``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from tickgate._core import split_channel
from tickgate.bus.base import FeedState
from tickgate.edge.replies import StatusMessage, encode_reply
from tickgate.sessions.history import Found
from tickgate.status import StaleReason

if TYPE_CHECKING:
    from tickgate.edge.connection import ClientConnection
    from tickgate.edge.hub import EdgeHub

#: Kinds left out at degradation level 1 (quotes and ticks are the core data).
NON_CORE = ("depth", "kline")
DEGRADED = StaleReason.DEGRADED
FAILING_OVER = StaleReason.FAILING_OVER


def _non_core(channel: str) -> bool:
    return split_channel(channel)[1].startswith(NON_CORE)


def _kind(channel: str) -> str:
    """``tick``, ``quote``, ``depth`` or ``kline`` (whatever its period)."""
    return split_channel(channel)[1].split("@")[0]


class ChannelStatus:
    def __init__(self, hub: EdgeHub) -> None:
        self._hub = hub
        self.ingest_up = False
        self._ingest_reason = ""
        self.feed = FeedState(up=True)
        #: The degradation level in force (0..3).
        self.level = 0
        # Connections moved from immediate mode to batches at level 2 (restored below it).
        self._moved: set[ClientConnection] = set()
        self._snapshot_timer: asyncio.TimerHandle | None = None
        # What clients were last told: the edge-wide reason, the level, the unserved kinds.
        self._told: tuple[str, int, tuple[str, ...]] = ("", 0, ())

    # -- state changes -----------------------------------------------------------------------

    def ingest(self, up: bool, reason: str) -> None:
        self.ingest_up, self._ingest_reason = up, reason
        self._tell()

    def feed_changed(self, state: FeedState) -> None:
        self.feed = state
        self._tell()

    def degrade(self, level: int) -> None:
        """Applies degradation ``level`` (0..3) and tells the clients it affects."""
        hub = self._hub
        self.level = level
        hub.dispatcher.set_shedding(level)
        if level >= 2:
            for conn in list(hub.connections):
                self.moved_in(conn)
        else:
            for conn in list(self._moved):
                self._moved.discard(conn)
                if not conn.closed:
                    hub.dispatcher.set_mode(conn.id, "immediate")
                    hub.mode_changed(conn)
        if level >= 3 and self._snapshot_timer is None:
            self._snapshot_timer = asyncio.get_running_loop().call_later(
                hub.config.degrade_snapshot_interval_s, self._snapshots
            )
        self._tell()

    def moved_in(self, conn: ClientConnection) -> None:
        """At level 2 and above, an immediate-mode client gets coarse batches instead."""
        hub = self._hub
        if self.level < 2 or conn.closed or conn in self._moved:
            return
        mode = hub.dispatcher.mode_of(conn.id)
        if mode is not None and mode[0] == "immediate":
            self._moved.add(conn)
            hub.dispatcher.set_mode(conn.id, "batch", hub.config.degrade_batch_interval_ms)
            hub.mode_changed(conn)

    def forget(self, conn: ClientConnection) -> None:
        self._moved.discard(conn)

    def chose_mode(self, conn: ClientConnection) -> None:
        """The client set its mode itself: its choice stands when the level is left."""
        self._moved.discard(conn)

    # -- what clients are told ---------------------------------------------------------------

    def edge_reason(self) -> str:
        """Why every channel of this edge is stale now ("" while data flows)."""
        if not self.ingest_up:
            return self._ingest_reason or StaleReason.INGEST_DOWN
        return "" if self.feed.up else self.feed.reason

    def _now(self) -> tuple[str, int, tuple[str, ...]]:
        return (self.edge_reason(), self.level, self.feed.unserved if self.feed.up else ())

    def _reasons(
        self, conn: ClientConnection, edge_reason: str, level: int, unserved: tuple[str, ...]
    ) -> dict[str, str]:
        channels = self._hub.dispatcher.channels_of(conn.id)
        if edge_reason:
            return dict.fromkeys(channels, edge_reason)
        if level >= 2:
            return dict.fromkeys(channels, DEGRADED)
        out: dict[str, str] = {}
        if unserved:  # a backup provider serves the rest
            out = {c: FAILING_OVER for c in channels if _kind(c) in unserved}
        if level == 1:
            mode = self._hub.dispatcher.mode_of(conn.id)
            if conn in self._moved or (mode is not None and mode[0] == "immediate"):
                out.update({c: DEGRADED for c in channels if _non_core(c) and c not in out})
        return out

    def stale_channels(self) -> int:
        """How many of this edge's channels are stale for some client now."""
        dispatcher = self._hub.dispatcher
        if self.edge_reason() or self.level >= 2:
            return dispatcher.channel_count
        unserved = self._now()[2]
        return sum(
            1 for c in dispatcher.channels() if _kind(c) in unserved or (self.level == 1 and _non_core(c))
        )

    def reason_for(self, conn: ClientConnection, channel: str) -> str:
        return self._reasons(conn, *self._now()).get(channel, "")

    def _tell(self) -> None:
        now = self._now()
        if now == self._told:
            return
        was, self._told = self._told, now
        hub = self._hub
        restored: dict[ClientConnection, list[str]] = {}
        for conn in list(hub.connections):
            if conn.closed:
                continue
            before = self._reasons(conn, *was)
            after = self._reasons(conn, *now)
            stale: dict[str, list[str]] = {}
            for channel, reason in after.items():
                if before.get(channel) != reason:
                    stale.setdefault(reason, []).append(channel)
            for reason, channels in stale.items():
                conn.send(StatusMessage(state="stale", reason=reason, channels=sorted(channels)))
            back = sorted(c for c in before if c not in after)
            if back:
                restored[conn] = back
        if restored:
            self._refresh(restored, ok=True)

    def _refresh(self, wanted: dict[ClientConnection, list[str]], *, ok: bool) -> None:
        """Each client's ``channels``' current state (``refresh``), then ``ok`` if ``ok``."""
        hub = self._hub
        channels = sorted({c for cs in wanted.values() for c in cs})
        asked_in = self._told

        def done(found: Found | None) -> None:
            if found is None or self._told != asked_in:
                return  # the ingest went away, or the state changed again: told since
            latest = {u.channel: u for u in found.latest}
            for conn, held in wanted.items():
                if conn.closed:
                    continue
                updates = [latest[c] for c in held if c in latest]
                frames = hub.dispatcher.frames_for(conn.id, updates, refresh=True) if updates else None
                if frames:
                    conn.write(frames)
                if ok:
                    conn.send(StatusMessage(state="ok", reason="", channels=held))

        if not hub.interest.fetch(channels, {}, done):
            # No ingest to ask (in a node, it just went): ok without the refresh, if still so.
            for conn, held in wanted.items():
                if ok and not conn.closed and self._told == asked_in:
                    conn.send(StatusMessage(state="ok", reason="", channels=held))

    def _snapshots(self) -> None:
        """Level 3: nothing live; every client's channels are refreshed every interval."""
        self._snapshot_timer = None
        hub = self._hub
        if self.level < 3 or hub.closing:
            return
        wanted = {c: hub.dispatcher.channels_of(c.id) for c in list(hub.connections) if not c.closed}
        wanted = {c: chs for c, chs in wanted.items() if chs}
        if wanted:
            self._refresh(wanted, ok=False)
        self._snapshot_timer = asyncio.get_running_loop().call_later(
            hub.config.degrade_snapshot_interval_s, self._snapshots
        )

    def with_stale_status(
        self, conn: ClientConnection, frames: bytes | None, channels: list[str]
    ) -> bytes | None:
        """``frames`` (a new subscriber's snapshots) followed, for those of ``channels`` that are
        stale, by the status saying so: their values are the last known, not live."""
        reasons = self._reasons(conn, *self._now())
        stale: dict[str, list[str]] = {}
        for channel in channels:
            if channel in reasons:
                stale.setdefault(reasons[channel], []).append(channel)
        out = frames
        for reason, chs in stale.items():
            status = StatusMessage(state="stale", reason=reason, channels=sorted(chs))
            out = (out or b"") + encode_reply(self._hub.dispatcher, conn.format, status)
        return out

    def stop(self) -> None:
        if self._snapshot_timer is not None:
            self._snapshot_timer.cancel()
            self._snapshot_timer = None
