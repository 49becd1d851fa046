"""``RedisSessions``: sessions of clients that went away, in Redis as well as in memory, so a
client can resume on another worker of the node, or after the gateway restarted (its
subscriptions come back; the replay cannot, the epoch changed).

Writes never wait on Redis: ``put`` keeps the record in memory (``MemorySessions``, which
answers resumes in this process at once) and queues it; one task writes what is queued every
``FLUSH_S`` in one pipeline (``SET key value EX ttl``). While Redis is unreachable nothing is
lost or blocked: records stay queued (bounded like the memory store, latest wins) and are
written when it answers again; ``up`` is False meanwhile, for ``/healthz`` and ``/metrics``.
A resume whose session is not in this process claims it from Redis (``GETDEL``, so a session is
taken once). Claims made meanwhile go together in one pipeline, so a storm of resumes (every
client of a dead worker at once) is a few round trips on one connection, not a connection each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tickgate.logs import LogThrottle
from tickgate.sessions.memory import MemorySessions
from tickgate.sessions.record import SessionRecord, decode_record, encode_record
from tickgate.sessions.store import SessionStoreUnavailable

log = logging.getLogger("tickgate.sessions")

KEY_PREFIX = "tickgate:session:"
#: How often queued writes go out.
FLUSH_S = 0.1
#: How long stopping waits to write the last sessions out.
STOP_FLUSH_S = 2.0
#: How long a resume waits for Redis before answering ``sessions_unavailable``.
LOOKUP_TIMEOUT_S = 1.0


class RedisSessions:
    shared = True
    held_by_ingest = False

    def __init__(self, url: str, local: MemorySessions) -> None:
        self.url = url
        self.local = local
        self.ttl_s = local.ttl_s
        #: Connected clients' sessions are written again before their TTL runs out.
        self.refresh_s: float | None = local.ttl_s / 3
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=LOOKUP_TIMEOUT_S, socket_connect_timeout=1.0
        )
        # session -> record to write (None: delete), in the order they came.
        self._queued: dict[str, SessionRecord | None] = {}
        self._task: asyncio.Task[None] | None = None
        # Claims waiting for the next GETDEL pipeline, and the task sending them.
        self._claims: list[tuple[str, asyncio.Future[bytes | None]]] = []
        self._claimer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self._errors = LogThrottle(log)
        self.up = False
        self.writes = 0
        self.failures = 0

    # -- the store interface ------------------------------------------------------------------

    def put(self, session: str, record: SessionRecord) -> None:
        self.local.put(session, record)
        self._queue(session, record)

    def save_live(self, session: str, record: SessionRecord | None) -> None:
        """A connected client's session as it is now (None: the key goes)."""
        self._queue(session, record)

    def released(self, session: str) -> None:
        """Its connection here was handed over to another worker: a write still queued here
        would overwrite what the new connection writes, and a copy kept here is stale."""
        self._queued.pop(session, None)
        self.local.take(session)

    def taken_elsewhere(self, session: str) -> None:
        """Its client left here and is resuming on another worker: the record goes to Redis
        now if it is still queued (the claim there tries again shortly), no copy stays."""
        self.local.take(session)
        if session in self._queued:
            self._wake.set()

    def take(self, session: str) -> SessionRecord | None:
        """This process's record (deleted from Redis too), or None: then ask ``claim``."""
        record = self.local.take(session)
        if record is not None:
            self._queue(session, None)
        return record

    async def claim(self, session: str) -> SessionRecord | None:
        """The record from Redis, taken (so no second connection gets it), or None. Not found
        at first, it is asked again once after a flush period: the worker its client left may
        still be writing it (it was told to, ``taken_elsewhere``)."""
        raw = await self._claim_once(session)
        if raw is None:
            await asyncio.sleep(2 * FLUSH_S)
            raw = await self._claim_once(session)
        if raw is None:
            return None
        record = decode_record(raw)
        if record is None:
            log.error("session %s in Redis does not decode; ignoring it", session)
        return record

    async def _claim_once(self, session: str) -> bytes | None:
        answer: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._claims.append((session, answer))
        if self._claimer is None or self._claimer.done():
            self._claimer = asyncio.get_running_loop().create_task(self._send_claims())
        try:
            return await asyncio.wait_for(asyncio.shield(answer), LOOKUP_TIMEOUT_S)
        except TimeoutError:
            answer.cancel()  # so an answer coming later is put back, not lost
            raise SessionStoreUnavailable("Redis did not answer in time") from None

    async def _send_claims(self) -> None:
        while self._claims:
            # Claims whose caller gave up are not sent: a retry elsewhere may find them.
            batch = [(s, a) for s, a in self._claims if not a.done()]
            self._claims = []
            if not batch:
                continue
            try:
                # No timeout of its own: a cancelled command could take a session and lose it.
                # The socket timeout bounds it; a claimant gone meanwhile gets it put back.
                async with self._redis.pipeline(transaction=False) as pipe:
                    for session, _ in batch:
                        pipe.getdel(KEY_PREFIX + session)
                    values = await pipe.execute()
            except (RedisError, OSError, TimeoutError) as e:
                self._failed(e)
                for _, answer in batch:
                    if not answer.done():
                        answer.set_exception(SessionStoreUnavailable(f"Redis: {e}"))
                continue
            for (session, answer), raw in zip(batch, values, strict=True):
                if not answer.done():
                    answer.set_result(raw)
                elif raw is not None and (record := decode_record(raw)) is not None:
                    self.put(session, record)

    def figures(self) -> dict[str, int]:
        return {**self.local.figures(), "redis_up": int(self.up), "redis_writes": self.writes}

    # -- writing ------------------------------------------------------------------------------

    def _queue(self, session: str, record: SessionRecord | None) -> None:
        self._queued.pop(session, None)
        self._queued[session] = record
        while len(self._queued) > self.local.max_sessions:  # bounded while Redis is away
            del self._queued[next(iter(self._queued))]
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        # The writer is told to finish, not cancelled: redis-py may turn a cancellation in the
        # middle of a command into a connection error, which the writer would retry forever.
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                # What the last clients left, if Redis answers soon: stopping never hangs on it.
                await asyncio.wait_for(self._task, STOP_FLUSH_S)
            except TimeoutError:
                log.error("%d sessions not written to Redis at stop", len(self._queued))
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await asyncio.wait_for(self._redis.aclose(), STOP_FLUSH_S)

    async def _run(self) -> None:
        try:
            await self._redis.ping()
            self.up = True
            log.info("sessions in Redis at %s", self.url)
        except (RedisError, OSError) as e:
            self._failed(e)
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._flush()
            except (RedisError, OSError) as e:
                self._failed(e)
                if self._closing:
                    return
                await asyncio.sleep(1.0)  # queued records stay; try again
                self._wake.set()
                continue
            if self._closing:
                return
            await asyncio.sleep(FLUSH_S)

    async def _flush(self) -> None:
        if not self._queued:
            return
        batch, self._queued = self._queued, {}
        ttl = max(1, int(self.local.ttl_s))
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for session, record in batch.items():
                    key = KEY_PREFIX + session
                    if record is None:
                        pipe.delete(key)
                    else:
                        pipe.set(key, encode_record(record), ex=ttl)
                await pipe.execute()
        except BaseException:
            # Put them back (newer ones queued meanwhile win).
            self._queued = {**batch, **self._queued}
            raise
        self.writes += len(batch)
        if not self.up:
            log.warning("Redis at %s answers again; %d session writes caught up", self.url, len(batch))
        self.up = True

    def _failed(self, error: BaseException) -> None:
        self.failures += 1
        if self.up or self.failures == 1:
            log.error(
                "Redis at %s unreachable (%s); sessions kept in memory until it answers", self.url, error
            )
        else:
            self._errors.log(logging.WARNING, "Redis at %s still unreachable (%s)", self.url, error)
        self.up = False
