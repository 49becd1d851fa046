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
from typing import TYPE_CHECKING

from picows import WSCloseCode

from tickgate.edge.replies import Reply
from tickgate.sessions.memory import SessionRecord
from tickgate.sessions.redis import RedisSessions

if TYPE_CHECKING:
    from tickgate.edge.commands import Resume
    from tickgate.edge.connection import ClientConnection
    from tickgate.edge.hub import EdgeHub

log = logging.getLogger("tickgate.edge")

#: The close code of a connection whose session was resumed on another one.
CLOSE_RESUMED = WSCloseCode(4000)


def snapshots(conn: ClientConnection, hub: EdgeHub, channels: list[str]) -> bytes | None:
    if not channels or hub.history is None:
        return None
    latest = hub.history.latest(channels)
    return hub.dispatcher.frames_for(conn.id, latest, snapshot=True) if latest else None


def resume(cmd: Resume, conn: ClientConnection, hub: EdgeHub) -> tuple[Reply | None, bytes | None]:
    session = cmd.session
    if session == hub.session_of(conn):
        return _reply(hub, session, 0, "already_attached"), None
    old = hub.live_connection(session)
    if old is not None:
        # Closing it keeps its session (detach), which this connection then takes.
        old.close(CLOSE_RESUMED, "session resumed on another connection")
    record = hub.sessions.take(session)
    if record is None and isinstance(hub.sessions, RedisSessions):
        # Not this process's: another worker's, or from before a restart. Ask Redis, and
        # answer when it has (the reply and what follows are sent then).
        task = asyncio.get_running_loop().create_task(_resume_from(hub.sessions, cmd, conn, hub))
        _pending.add(task)
        task.add_done_callback(_pending.discard)
        return None, None
    return _restore(cmd, conn, hub, record)


#: Resumes waiting on Redis (held so they are not collected mid-flight).
_pending: set[asyncio.Task[None]] = set()


async def _resume_from(store: RedisSessions, cmd: Resume, conn: ClientConnection, hub: EdgeHub) -> None:
    record = await store.fetch(cmd.session)
    if conn.closed:
        return
    reply, then = _restore(cmd, conn, hub, record)
    reply.id = cmd.id
    conn.send(reply)
    if then:
        conn.write(then)


def _restore(
    cmd: Resume, conn: ClientConnection, hub: EdgeHub, record: SessionRecord | None
) -> tuple[Reply, bytes | None]:
    session = cmd.session
    if record is None:
        hub.counters.resumes_failed += 1
        return _reply(hub, session, 0, "unknown_session"), None

    if conn.session is not None and hub.resumed.get(conn.session) is conn:
        del hub.resumed[conn.session]
    conn.session = session
    hub.resumed[session] = conn
    channels = record.channels
    hub.subscribe(conn, channels)
    if record.mode == "batch":
        hub.dispatcher.set_mode(conn.id, "batch", record.interval_ms)
        hub.mode_changed(conn)

    reason = ""
    missed = []
    # Channels the client never got an update on: nothing to replay, a snapshot instead.
    fresh = [c for c in channels if c not in cmd.last_seq]
    if cmd.epoch != hub.epoch:
        reason = "epoch_changed"
    elif hub.history is None:
        reason = "history_unavailable"
    else:
        for channel in channels:
            if channel in cmd.last_seq:
                got = hub.history.since(channel, cmd.last_seq[channel])
                if got is None:
                    reason = "history_gone"
                    break
                missed.extend(got)
    if reason:
        hub.counters.resumes_failed += 1
        missed, fresh = [], channels
    else:
        hub.counters.resumes_recovered += 1
    replay = hub.dispatcher.frames_for(conn.id, missed) if missed else None
    if replay:
        conn.write(replay)  # before the reply: the reply says it is all there
    return _reply(hub, session, len(missed), reason), snapshots(conn, hub, fresh)


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
