"""Snapshots and resume: what a client is sent from the ingest's history rather than live.

- ``snapshots``: right after a subscribe, the latest update of each channel new to the client,
  marked ``"snapshot": true`` (``ServerMessage.snapshot`` in Protobuf).
- ``resume``: a client back on a new connection takes over its session (the old connection,
  if still there, is closed with 4000), gets its subscriptions and mode back, then every update
  it missed per channel, in order, before the reply; live updates follow with no gap and no
  duplicate, since all of it happens in one event-loop turn. It is all or nothing: if any
  channel's history no longer reaches back, or the epoch changed, nothing is replayed, the
  reply says ``"recovered": false`` with the reason, and snapshots follow instead.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import msgspec

from tickgate._core import InvalidModeError, split_channel
from tickgate.edge.replies import Message, Reply, error_reply
from tickgate.errors import ErrorCode
from tickgate.sessions.history import Found
from tickgate.sessions.record import SessionRecord
from tickgate.sessions.store import SessionStoreUnavailable
from tickgate.upstream.pool import OVER_SHARE

if TYPE_CHECKING:
    from tickgate.edge.commands import Resume
    from tickgate.edge.connection import ClientConnection
    from tickgate.edge.hub import EdgeHub

log = logging.getLogger("tickgate.edge")


def subscribe_with_snapshots(
    conn: ClientConnection, hub: EdgeHub, channels: list[str], reply: Reply, request_id: Any
) -> tuple[Message | None, bytes | None]:
    """Subscribes ``conn`` to ``channels`` (new to it) once the ingest has admitted them
    upstream and its history has answered: ``reply``, then the snapshots, and live updates
    after them in order; or a ``capacity`` error and nothing applied. Returns them (in one
    process), or ``(None, None)`` and sends them when the answer comes over the bus."""
    out: list[tuple[Message, bytes | None]] = []
    sync = True

    def done(found: Found | None) -> None:
        answer: Message
        snaps = None
        if found is not None and found.refused:
            hub.counters.client_errors += 1
            answer = error_reply(
                ErrorCode.CAPACITY, _capacity_message(hub, found), request_id, channels=sorted(channels)
            )
        else:
            # With no ingest to ask (None), the channels go upstream when it is back.
            hub.subscribe(conn, channels)
            if found is not None:
                hub.brought_upstream(conn, found.added)
                if found.latest:
                    snaps = hub.dispatcher.frames_for(conn.id, found.latest, snapshot=True)
            snaps = hub.status.with_stale_status(conn, snaps, channels)
            answer = reply
        if sync:
            out.append((answer, snaps))
            return
        if isinstance(answer, Reply):
            answer.id = request_id
        conn.respond_later(answer, snaps)

    sync = hub.query(conn, channels, {}, done, admit=True)
    return out[0] if out else (None, None)


def _capacity_message(hub: EdgeHub, found: Found) -> str:
    new = len(found.added)
    if found.refused == OVER_SHARE:
        share = hub.config.upstream_symbols_per_connection
        return (
            f"these channels need {new} symbols new to the provider connection; one client may bring "
            f"at most {share} (upstream_symbols_per_connection)"
        )
    return (
        f"these channels need {new} symbols new to the provider connection, which is at its limit "
        f"of {hub.config.upstream_max_symbols} symbols (upstream_max_symbols)"
    )


def resume(cmd: Resume, conn: ClientConnection, hub: EdgeHub) -> tuple[Reply | None, bytes | None]:
    session = cmd.session
    if session == hub.session_of(conn):
        return _reply(hub, session, 0, "already_attached"), None
    old = hub.live_connection(session)
    if old is not None and old.subject != conn.subject:
        # Someone else's session: answered as if it did not exist (ids are not to be probed).
        hub.counters.resumes_failed += 1
        return _reply(hub, session, 0, "unknown_session"), None
    if old is not None:
        # Its state as it goes, delivered seqs included, is the session this one carries on.
        record: SessionRecord | None = hub.record_of(old, gone=True)
        hub.hand_over(old)
    else:
        hub.interest.taken(session, conn.subject or "")  # it may be open on another edge of the node
        record = hub.sessions.take(session)
        if record is None and hub.sessions.shared:
            # Not this process's: another worker's, or from before a restart. Claim it from
            # the store, and answer when it has (the reply and what follows are sent then).
            task = asyncio.get_running_loop().create_task(_resume_from(cmd, conn, hub))
            _pending.add(task)
            task.add_done_callback(_pending.discard)
            return None, None
    return _restore(cmd, conn, hub, record)


#: Resumes waiting on their store (held so they are not collected mid-flight).
_pending: set[asyncio.Task[None]] = set()


async def _resume_from(cmd: Resume, conn: ClientConnection, hub: EdgeHub) -> None:
    missing = "unknown_session"
    try:
        record = await hub.sessions.claim(cmd.session)
    except SessionStoreUnavailable as e:
        log.warning("resume of %s: %s", cmd.session, e)
        record, missing = None, "sessions_unavailable"
    if conn.closed:
        if record is not None:  # claimed for a client that left meanwhile: kept for it
            hub.sessions.put(cmd.session, record)
        return
    reply, then = _restore(cmd, conn, hub, record, missing)
    if reply is not None:
        reply.id = cmd.id
    conn.respond_later(reply, then)


def _restore(
    cmd: Resume,
    conn: ClientConnection,
    hub: EdgeHub,
    record: SessionRecord | None,
    missing: str = "unknown_session",
) -> tuple[Reply | None, bytes | None]:
    """Takes the session over and restores it once the history has answered: now in one
    process (returns the reply), or later over the bus (sends it then, returns None).
    ``missing``: the reason given if there is no ``record``."""
    session = cmd.session
    if record is not None and record.subject != (conn.subject or ""):
        hub.sessions.put(session, record)  # someone else's: kept for them, and not revealed
        record, missing = None, "unknown_session"
    if record is None:
        hub.counters.resumes_failed += 1
        return _reply(hub, session, 0, missing), None
    entitled = conn.identity.entitlements if conn.identity is not None else None
    if entitled is not None:
        # A token narrower than the one the session was made with: what it no longer allows
        # is left out of the restored session.
        allowed = [c for c in record.channels if entitled.allows(split_channel(c)[0])]
        if len(allowed) != len(record.channels):
            record = msgspec.structs.replace(record, channels=allowed)
    previous = hub.session_of(conn)
    if conn.session is not None and hub.resumed.get(conn.session) is conn:
        del hub.resumed[conn.session]
    if hub.sessions.shared and previous != session:
        hub.sessions.save_live(previous, None)  # this connection no longer holds it
    conn.session = session
    conn.since = record.connected_ms or conn.since
    hub.resumed[session] = conn
    channels = record.channels
    # The client's own last seqs are the authority (what the network lost as the old
    # connection dropped, only it knows); without any, what the session recorded as handed out.
    epoch = cmd.epoch or record.epoch
    last_seq = cmd.last_seq or (record.last_seq if record.epoch == epoch else {})
    same_epoch = epoch == hub.epoch
    since = {c: last_seq[c] for c in channels if c in last_seq} if same_epoch else {}
    out: list[tuple[Reply, bytes | None]] = []
    sync = True

    def done(found: Found | None) -> None:
        snaps = None
        if found is not None and found.refused:
            # Its symbols no longer fit upstream (the provider's limit filled meanwhile):
            # nothing is subscribed, and the session is kept for a later try.
            hub.counters.resumes_failed += 1
            hub.sessions.put(session, record)
            if hub.resumed.get(session) is conn:  # not taken over after all
                del hub.resumed[session]
                conn.session = None
            reply = _reply(hub, session, 0, "capacity")
        else:
            reply, snaps = _reattach(cmd, conn, hub, record, found, since, same_epoch)
        if sync:
            out.append((reply, snaps))
            return
        reply.id = cmd.id
        conn.respond_later(reply, snaps)

    sync = hub.query(conn, channels, since, done, admit=True)
    return out[0] if out else (None, None)


def _reattach(
    cmd: Resume,
    conn: ClientConnection,
    hub: EdgeHub,
    record: SessionRecord,
    found: Found | None,
    since: dict[str, int],
    same_epoch: bool,
) -> tuple[Reply, bytes | None]:
    """Subscribes ``conn`` to the session's channels and mode, writes what it missed, and
    returns the reply and the snapshots that follow it."""
    channels = record.channels
    hub.subscribe(conn, channels)
    if found is not None:
        hub.brought_upstream(conn, found.added)
    if record.mode == "batch":
        try:
            hub.dispatcher.set_mode(conn.id, "batch", record.interval_ms)
            hub.mode_changed(conn)
        except (InvalidModeError, OverflowError):  # the limits changed since: immediate it is
            log.warning("session %s: batch interval %d ms no longer allowed", cmd.session, record.interval_ms)
    if not same_epoch:
        reason = "epoch_changed"
    elif found is None:
        reason = "history_unavailable"
    elif found.gaps:
        reason = "history_gone"
    else:
        reason = ""
    missed = found.missed if found is not None and not reason else []
    # Channels the client never got an update on (or all, if not recovered): snapshots.
    fresh = set(channels) if reason else {c for c in channels if c not in since}
    latest = [u for u in found.latest if u.channel in fresh] if found is not None else []
    if reason:
        hub.counters.resumes_failed += 1
    else:
        hub.counters.resumes_recovered += 1
    replay = hub.dispatcher.frames_for(conn.id, missed) if missed else None
    if replay:
        conn.write(replay)  # before the reply: the reply says it is all there
    snaps = hub.dispatcher.frames_for(conn.id, latest, snapshot=True) if latest else None
    snaps = hub.status.with_stale_status(conn, snaps, channels)
    return _reply(hub, cmd.session, len(missed), reason), snaps


def _reply(hub: EdgeHub, session: str, replayed: int, reason: str) -> Reply:
    reply = Reply(
        type="success",
        action="resume",
        session=session,
        epoch=hub.epoch,
        recovered=not reason,
        replayed=replayed,
    )
    if reason:
        reply.reason = reason
    return reply
