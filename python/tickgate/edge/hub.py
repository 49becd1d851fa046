"""``EdgeHub``: the small shared state every client connection is handed (the pattern of
uvicorn's ``ServerState``): the dispatcher, the settings, the registry of connections,
counters, and where interest in channels goes (the subscription pool). Connections never
see the gateway.

Data path: ``publish(updates)`` (the ingest's sink) -> the core's dispatcher -> at the end of
the event-loop turn, ``flush`` writes one buffer per connection that has something. Batch
deadlines and slow-consumer deadlines run on a ticker at ``batch_timer_resolution_ms``,
only while some connection is in batch mode or paused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from picows import WSCloseCode

from tickgate._core import DecodeError, Dispatcher, Update, split_channel
from tickgate.audit import AuditLog
from tickgate.bus.base import FeedState, IngestState, Interest
from tickgate.config import GatewayConfig
from tickgate.edge.admission import AddressRate
from tickgate.edge.auth import EdgeAuth, make_verifier
from tickgate.edge.liveness import Liveness
from tickgate.edge.replies import error_reply
from tickgate.edge.status import ChannelStatus
from tickgate.errors import ErrorCode
from tickgate.logs import LogThrottle
from tickgate.sessions import MemorySessions, SessionIds, SessionRecord
from tickgate.sessions.history import Found, FoundCallback
from tickgate.sessions.redis import RedisSessions
from tickgate.sessions.store import SessionStore

if TYPE_CHECKING:
    from tickgate.edge.connection import ClientConnection

log = logging.getLogger("tickgate.edge")

#: RFC 6455 "Try Again Later": the code a client closed for being too slow gets.
CLOSE_SLOW = WSCloseCode(1013)
#: The close code of a connection whose session was resumed on another one.
CLOSE_RESUMED = WSCloseCode(4000)
#: How often paused connections are checked against the lag deadline.
LAG_CHECK_S = 0.1


@dataclass(slots=True)
class EdgeCounters:
    connections_accepted: int = 0
    #: Clients turned away with 503 at the admission limit.
    connections_refused: int = 0
    client_errors: int = 0
    slow_consumers_closed: int = 0
    updates_in: int = 0
    resumes_recovered: int = 0
    resumes_failed: int = 0
    #: Commands refused for being over a connection's rate limit.
    rate_limited: int = 0
    #: Browser connections refused for their Origin.
    origins_refused: int = 0


class _NoInterest:
    """Before the bus is joined, interest has nowhere to go and there is no history to ask."""

    def add(self, channels: list[str]) -> None:
        pass

    def remove(self, channels: list[str]) -> None:
        pass

    def fetch(
        self, channels: list[str], since: dict[str, int], done: FoundCallback, admit: int | None = None
    ) -> bool:
        return False

    def taken(self, session: str, subject: str = "") -> None:
        pass


def make_dispatcher(config: GatewayConfig, zstd_dictionary: bytes | None = None) -> Dispatcher:
    return Dispatcher(
        soft_cap_bytes=config.slow_consumer_soft_cap_bytes,
        tick_cap=config.batch_tick_cap,
        lag_deadline_ms=int(config.slow_consumer_lag_timeout * 1000),
        wheel_tick_ms=config.batch_timer_resolution_ms,
        min_interval_ms=config.batch_interval_min_ms,
        max_interval_ms=config.batch_interval_max_ms,
        zstd_dictionary=zstd_dictionary,
    )


class EdgeHub:
    def __init__(
        self, config: GatewayConfig, dispatcher: Dispatcher, interest: Interest | None = None
    ) -> None:
        #: Settings, read-only.
        self.config = config
        #: The core's fan-out: subscriptions, outboxes, batches.
        self.dispatcher = dispatcher
        #: The bus's edge side (set once, before clients connect).
        self.interest: Interest = interest or _NoInterest()
        #: The sequence epoch clients see in replies: the ingest's, learned on joining it.
        self.epoch = ""
        #: Whether the bus joins this edge to a live ingest.
        self.ingest_up = False
        self.counters = EdgeCounters()
        #: Open connections (for shutdown and the connection gauge).
        self.connections: set[ClientConnection] = set()
        #: Set when the gateway stops: new connections are turned away.
        self.closing = False
        self.liveness = Liveness(self.connections, config.client_ping_interval, config.client_pong_timeout)
        #: The command token bucket's refill rate and size (floats, shared by every connection).
        self.command_rate = float(config.client_command_rate)
        self.command_burst = float(config.client_command_burst)
        #: Admission limit (see ``tickgate.edge.admission``); the gateway derives it at start.
        self.max_connections = config.max_connections or None
        #: New connections per source address.
        self.address_rate = AddressRate(
            config.connection_rate_per_address,
            config.connection_burst_per_address,
            config.connection_rate_exempt,
        )
        #: Who connected, was refused, subscribed, left (None: no audit log configured).
        self.audit = AuditLog(config.audit_dir, config.audit_keep_days) if config.audit_dir else None
        verifier = make_verifier(config)
        #: Client tokens (None: ``auth = "none"``, anyone may connect).
        self.auth = EdgeAuth(verifier, config, self.audit, self.connections) if verifier is not None else None
        self._refusal_log = LogThrottle(log)
        # Connections that need the ticker: in batch mode, or paused (lag deadline).
        self._timed: set[ClientConnection] = set()
        self._flush_pending = False
        self._ticker: asyncio.TimerHandle | None = None
        self._next_lag_check = 0.0
        self._resolution_s = config.batch_timer_resolution_ms / 1000
        #: What clients are told about their channels (stale, ok) and the load shedding.
        self.status = ChannelStatus(self)
        #: Sessions of clients that went away (and, in a shared store, connected clients'
        #: too); ids of connected ones are derived (``SessionIds``). A node's edge without
        #: Redis is given the ingest's (``use_sessions``).
        local = MemorySessions(config.session_ttl, config.session_max_detached)
        self.sessions: SessionStore = RedisSessions(config.redis_url, local) if config.redis_url else local
        self.session_ids = SessionIds()
        #: Symbols each connection brought to the upstream connection (counted against its
        #: share while it holds them; only connections that brought any are here).
        self.upstream_adds: dict[int, set[str]] = {}
        #: Connected clients holding a session they resumed (their id is not derived).
        self.resumed: dict[str, ClientConnection] = {}
        # Connections closed because their session was resumed elsewhere: it is not theirs to
        # keep any more (emptied as they detach).
        self._handed_over: set[ClientConnection] = set()
        # Connections reset with frames unsent (slow consumers): what was handed out for them
        # did not all reach them, so their sessions record no delivered seqs.
        self._reset: set[ClientConnection] = set()

    # -- data path ---------------------------------------------------------------------------

    def publish(self, updates: list[Update]) -> None:
        """The ingest's sink: one provider frame's updates, fanned out in the core."""
        self.counters.updates_in += len(updates)
        if self.dispatcher.publish(updates):
            self.schedule_flush()

    def publish_packed(self, record: bytes) -> None:
        """Updates from an ingest in another process, as a core bus record."""
        try:
            count, reached = self.dispatcher.publish_packed(record)
        except DecodeError as e:  # a corrupt record costs itself, never the edge
            log.error("dropped a bus record that does not decode: %s", e)
            return
        self.counters.updates_in += count
        if reached:
            self.schedule_flush()

    def on_ingest(self, state: IngestState) -> None:
        """The bus joined this edge to an ingest or lost it (a new ingest brings a new epoch)."""
        self.ingest_up = state.up
        if state.up:
            self.epoch = state.epoch
            if self.sessions.held_by_ingest:
                self.save_live_sessions()  # a restarted ingest knows none of them
        self.status.ingest(state.up, state.reason)

    def on_feed(self, state: FeedState) -> None:
        """The ingest's provider feed went down or came back."""
        self.status.feed_changed(state)

    def set_degradation(self, level: int) -> None:
        """The load-shedding level (``tickgate.edge.degrade``) to apply."""
        self.status.degrade(level)

    def schedule_flush(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Writes what the dispatcher has ready: one buffer per connection, each written by the
        core calling the connection's socket write (no Python per connection)."""
        self._flush_pending = False
        for conn, error in self.dispatcher.write_out():
            # One broken connection must not keep the others' frames queued.
            log.warning("write to %r failed (%r); dropping it", conn, error)
            conn.abort()

    # -- connections -------------------------------------------------------------------------

    def admits(self) -> bool:
        """Whether a new client may connect; counts a refusal and logs it, throttled."""
        limit = self.max_connections
        if limit is None or len(self.connections) < limit:
            return True
        self.counters.connections_refused += 1
        self._refusal_log.log(
            logging.WARNING,
            "at max_connections (%d): refusing new clients with 503 (%d refused so far)",
            limit,
            self.counters.connections_refused,
        )
        return False

    def attach(self, conn: ClientConnection) -> None:
        self.connections.add(conn)
        self.counters.connections_accepted += 1
        self._retime(conn)
        self.status.moved_in(conn)  # degraded to batches, if the edge is

    def session_of(self, conn: ClientConnection) -> str:
        return conn.session or self.session_ids.issue(conn.id)

    def live_connection(self, session: str) -> ClientConnection | None:
        """The connected client holding ``session``, if any."""
        conn = self.resumed.get(session)
        if conn is None:
            conn_id = self.session_ids.verify(session)
            handle = self.dispatcher.handle_of(conn_id) if conn_id is not None else None
            # A connection that took over another session no longer answers to its own id.
            conn = handle if handle is not None and handle.session is None else None
        return conn if conn is not None and not conn.closed else None

    def on_taken_elsewhere(self, session: str, subject: str = "") -> None:
        conn = self.live_connection(session)
        if conn is not None and (conn.subject or "") != subject:
            return  # someone else's session: the resume is refused where it was asked
        if conn is not None:
            self.hand_over(conn)
            self.sessions.released(session)
        else:
            # Its client left here; the other edge claims it from the store: make sure the store
            # has it, and keep no copy here that could later be resumed instead.
            self.sessions.taken_elsewhere(session)

    def hand_over(self, conn: ClientConnection) -> None:
        """Closes ``conn`` (4000): its session was resumed on another connection, which holds
        it from now on, so nothing of it is kept or written as ``conn`` goes."""
        self._handed_over.add(conn)
        conn.close(CLOSE_RESUMED, "session resumed on another connection")

    def query(
        self,
        conn: ClientConnection,
        channels: list[str],
        since: dict[str, int],
        done: FoundCallback,
        admit: bool = False,
    ) -> bool:
        """Runs ``done`` with what the ingest's history has for ``conn`` (None: unreachable),
        unless ``conn`` left meanwhile. ``admit``: the channels must first fit upstream, within
        ``conn``'s share (``Found.refused`` says why not). Returns whether it ran already (in
        one process) rather than later, when the answer comes over the bus."""
        answered = returned = False

        def answer(found: Found | None) -> None:
            nonlocal answered
            answered = True
            if not conn.closed:
                done(found)
            elif returned and not (found is not None and found.refused):
                # Over the bus the ingest routed the channels here for this client; let go of
                # those no other client here holds.
                held = set(self.dispatcher.channels())
                unused = [c for c in channels if c not in held]
                if unused:
                    self.interest.remove(unused)

        share = self.share_left(conn) if admit else None
        if not self.interest.fetch(channels, since, answer, share):
            answer(None)
        returned = True
        return answered

    def share_left(self, conn: ClientConnection) -> int:
        """How many more symbols new to the upstream connection ``conn`` may bring: its share,
        or with auth its subject's, over all the subject's connections here (more connections
        must not mean a bigger share)."""
        limit = self.config.upstream_symbols_per_connection
        peers = self.auth.connections_of(conn) if self.auth is not None else None
        if not peers:
            return max(0, limit - len(self.upstream_adds.get(conn.id, ())))
        brought: set[str] = set()
        for peer in peers:
            brought.update(self.upstream_adds.get(peer.id, ()))
        return max(0, limit - len(brought))

    def brought_upstream(self, conn: ClientConnection, symbols: list[str]) -> None:
        if symbols:
            self.upstream_adds.setdefault(conn.id, set()).update(symbols)

    def detach(self, conn: ClientConnection) -> None:
        """Forgets a connection and its subscriptions, keeping its session for the TTL if it
        held any; safe to call more than once."""
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        self._timed.discard(conn)
        session = self.session_of(conn)
        if conn.session is not None and self.resumed.get(conn.session) is conn:
            del self.resumed[conn.session]
        lossy = conn in self._reset
        self._reset.discard(conn)
        if conn in self._handed_over:
            self._handed_over.discard(conn)
        else:
            record = self.record_of(conn, gone=not lossy)
            # Also while shutting down: with Redis, clients resume their subscriptions after a
            # restart.
            if record.channels:
                self.sessions.put(session, record)
        self.upstream_adds.pop(conn.id, None)
        if self.auth is not None:
            self.auth.forget(conn)
        self.status.forget(conn)
        if self.audit is not None:
            code, reason = conn.ended or (1006, "connection lost")
            self.audit.record("disconnect", sub=conn.subject, addr=conn.peer, code=code, reason=reason)
        last = self.dispatcher.disconnect(conn.id)
        if last:
            self.interest.remove(last)

    def subscribe(self, conn: ClientConnection, channels: list[str]) -> None:
        first = self.dispatcher.subscribe(conn.id, channels)
        if first:
            self.interest.add(first)
        if self.audit is not None and channels:
            self.audit.record("subscribe", sub=conn.subject, addr=conn.peer, channels=channels)
        self._session_changed(conn)

    def unsubscribe(self, conn: ClientConnection, channels: list[str]) -> None:
        if self.audit is not None and channels:
            self.audit.record("unsubscribe", sub=conn.subject, addr=conn.peer, channels=channels)
        last = self.dispatcher.unsubscribe(conn.id, channels)
        if last:
            self.interest.remove(last)
        added = self.upstream_adds.get(conn.id)
        if added:  # symbols it no longer holds no longer count against its share
            added.intersection_update(split_channel(c)[0] for c in self.dispatcher.channels_of(conn.id))
            if not added:
                del self.upstream_adds[conn.id]
        self._session_changed(conn)

    def mode_changed(self, conn: ClientConnection) -> None:
        self._retime(conn)
        self.schedule_flush()  # leaving batch mode sends what was pending at once
        self._session_changed(conn)

    # -- sessions ----------------------------------------------------------------------------

    def use_sessions(self, store: SessionStore) -> None:
        """Where sessions go instead of this process's memory (before clients connect)."""
        self.sessions = store

    def record_of(self, conn: ClientConnection, *, gone: bool = False) -> SessionRecord:
        """``conn``'s session as it is now; ``gone``: as it leaves, with the last seq handed
        out to it per channel (not kept while it is connected: that changes every update)."""
        mode, interval = self.dispatcher.mode_of(conn.id) or ("immediate", 0)
        return SessionRecord(
            self.dispatcher.channels_of(conn.id),
            mode,
            interval,
            self.epoch,
            connected_ms=conn.since,
            seen_ms=int(time.time() * 1000),
            last_seq=self.dispatcher.delivered(conn.id) if gone else {},
            subject=conn.subject or "",
        )

    def _session_changed(self, conn: ClientConnection) -> None:
        """In a shared store a connected client's session is saved too (behind the data path),
        so it survives this process dying without a goodbye."""
        if self.sessions.shared and not conn.closed:
            record = self.record_of(conn)
            self.sessions.save_live(self.session_of(conn), record if record.channels else None)

    def save_live_sessions(self) -> None:
        """Saves every connected client's session: after joining an ingest that holds them,
        and every ``refresh_s`` for a store whose entries expire (Redis)."""
        if not self.sessions.shared or self.closing:
            return
        for conn in list(self.connections):
            if not conn.closed and self.dispatcher.channels_of(conn.id):
                self.sessions.save_live(self.session_of(conn), self.record_of(conn))

    def refresh_live_sessions(self) -> None:
        if self.sessions.refresh_s is None or self.closing:
            return
        self.save_live_sessions()
        asyncio.get_running_loop().call_later(self.sessions.refresh_s, self.refresh_live_sessions)

    def paused(self, conn: ClientConnection, paused: bool) -> None:
        """The connection's socket buffer crossed its high (``True``) or low watermark."""
        self.dispatcher.set_paused(conn.id, paused)
        conn.paused = paused
        self._retime(conn)
        if not paused:
            self.schedule_flush()

    def on_refused(self, channels: list[str], reason: str) -> None:
        """The provider refused ``channels``: drop them from their holders and tell each."""
        for conn, refused in self.dispatcher.drop_channels(channels):
            conn.send(
                error_reply(
                    ErrorCode.UPSTREAM_REJECTED, f"provider refused: {reason}", channels=sorted(refused)
                )
            )

    def close_all(self, code: WSCloseCode, reason: str) -> None:
        self.closing = True
        self.liveness.stop()
        self.status.stop()
        for conn in list(self.connections):
            conn.close(code, reason)
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    # -- timers ------------------------------------------------------------------------------

    def _retime(self, conn: ClientConnection) -> None:
        mode = self.dispatcher.mode_of(conn.id)
        if (mode is not None and mode[0] == "batch") or conn.paused:
            self._timed.add(conn)
            if self._ticker is None and not self.closing:
                self._ticker = asyncio.get_running_loop().call_later(self._resolution_s, self._tick)
        else:
            self._timed.discard(conn)

    def _tick(self) -> None:
        self._ticker = None
        self.flush()
        now = time.monotonic()
        if now >= self._next_lag_check:
            self._next_lag_check = now + LAG_CHECK_S
            for conn in self.dispatcher.lagging():
                self.close_slow(conn, f"over the soft cap for {self.config.slow_consumer_lag_timeout:g}s")
        if self._timed and not self.closing:
            self._ticker = asyncio.get_running_loop().call_later(self._resolution_s, self._tick)

    def close_slow(self, conn: ClientConnection, why: str) -> None:
        """Closes a client that does not keep up: 1013, reason ``slow_consumer: <why>``."""
        log.warning("%r closed as a slow consumer: %s", conn, why)
        self.counters.slow_consumers_closed += 1
        self._reset.add(conn)
        conn.close(CLOSE_SLOW, f"{ErrorCode.SLOW_CONSUMER}: {why}", reset_after=True)

    # -- observability -----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        s = self.dispatcher.stats()
        c = self.counters
        s.update(
            connections=len(self.connections),
            connections_accepted=c.connections_accepted,
            connections_refused=c.connections_refused,
            max_connections=self.max_connections or 0,
            client_errors=c.client_errors,
            slow_consumers_closed=c.slow_consumers_closed,
            unresponsive_closed=self.liveness.dropped,
            resumes_recovered=c.resumes_recovered,
            resumes_failed=c.resumes_failed,
            rate_limited=c.rate_limited,
            origins_refused=c.origins_refused,
            address_rate_refused=self.address_rate.refused,
            audit_written=self.audit.written if self.audit is not None else 0,
            audit_dropped=self.audit.dropped if self.audit is not None else 0,
            redis_writes=0,
            updates_in=c.updates_in,
            degradation_level=self.status.level,
            stale_channels=self.status.stale_channels(),
            stale_reason=self.status.edge_reason() or ("degraded" if self.status.level else ""),
        )
        s.update(self.sessions.figures())
        if self.auth is not None:
            s.update(self.auth.figures())
        return s
