"""``Client``: one gateway connection that stays up by itself.

    async with tickgate.client.connect("ws://127.0.0.1:8080/", token=...) as c:
        await c.subscribe(["AAPL$US", "700$HK"], types=["quote", "tick"])
        async for update in c:          # Quote | Tick | Depth | Kline
            ...

When the connection drops it reconnects (exponential backoff with full jitter) and resumes its
session with the last seq it delivered per channel, so the caller sees every update once, in
order: replayed updates fill the gap, duplicates of what it already had are dropped. Where the
gateway cannot fill the gap (its history is gone, it restarted), the caller gets snapshots and a
``not_recovered`` event; nothing else of the reconnect shows except through ``events()`` /
``on_event``. Requests made while it reconnects wait for it, and a request cut off by a drop is
sent again (subscribe and unsubscribe are idempotent).

Memory is bounded: at most ``max_pending`` updates wait for the caller; past that the socket
is not read (the gateway then conflates for this client, as for any slow reader), and reading
resumes once the caller has taken half of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import random
import ssl
import urllib.request
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import msgspec
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect
from picows.common import WSError, WSInvalidStatusError

from tickgate.client.types import ConnectionEvent, Update, decode_batch, decode_push, from_json, from_proto

__all__ = ["AuthRefused", "Client", "ClientError", "connect"]

log = logging.getLogger("tickgate.client")

Token = str | Callable[[], str | Awaitable[str]] | None
PROTOCOLS = ("json", "proto", "proto+zstd")
#: Resume answers after which the connection holds the session of its welcome, not the old one.
SESSION_NOT_TAKEN = frozenset({"unknown_session", "sessions_unavailable", "capacity"})
_decode_json = msgspec.json.Decoder().decode
_encode_json = msgspec.json.Encoder().encode


class ClientError(Exception):
    """The gateway refused a request: ``code`` is from its catalogue (``not_entitled``...)."""

    def __init__(self, code: str, msg: str, channels: list[str] | None = None) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.channels = channels or []


class AuthRefused(ClientError):
    """The gateway refused the token (HTTP 401 or close 4001): retrying will not help."""


class _Disconnected(Exception):
    pass


class _Listener(WSListener):
    """picows's callbacks, handed straight to the client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
            self.client._on_message(self, frame.get_payload_as_bytes(), kind is WSMsgType.BINARY)
        elif kind is WSMsgType.CLOSE:
            self.client._on_close(self, int(frame.get_close_code()), frame.get_close_message() or b"")
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.client._on_disconnected(self)


class Client:
    def __init__(
        self,
        url: str,
        *,
        token: Token = None,
        protocol: str = "json",
        mode: str = "immediate",
        interval_ms: int | None = None,
        reconnect: bool = True,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        max_pending: int = 10_000,
        request_timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        on_event: Callable[[ConnectionEvent], None] | None = None,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)} (got {protocol!r})")
        self.url = url
        self.protocol = protocol
        self._token = token
        self._query = {"mode": mode, **({"interval_ms": str(interval_ms)} if interval_ms else {})}
        self._reconnect = reconnect
        self._backoff = (backoff_initial, backoff_max)
        self._max_pending = max_pending
        self._timeout = request_timeout
        self._ssl = ssl_context
        self._on_event = on_event
        #: ``live``, ``reconnecting``, ``recovered``, ``not_recovered`` or ``closed``.
        self.state = "connecting"
        #: The session and sequence epoch the gateway gave (kept across reconnects).
        self.session: str | None = None
        self.epoch: str | None = None
        #: Channels the caller asked for (what a reconnect restores).
        self.channels: set[str] = set()
        self._last_seq: dict[str, int] = {}
        self._updates: deque[Update] = deque()
        self._updates_ready = asyncio.Event()
        self._events: deque[ConnectionEvent] = deque(maxlen=1000)
        self._events_ready = asyncio.Event()
        self._paused = False
        self._listener: _Listener | None = None
        self._transport: WSTransport | None = None
        self._welcome: asyncio.Future[dict[str, Any]] | None = None
        self._gone: asyncio.Future[str] | None = None
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._ready = asyncio.Event()
        # Set whenever waiting requests should look again (ready, or stopped for good).
        self._wake = asyncio.Event()
        self._renewing: asyncio.Task[None] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self._failure: BaseException | None = None
        self._decompress: Callable[[bytes], bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connects (raising what stops the first connection: refused, 401, ...), then keeps
        the connection up in the background."""
        if self.protocol == "proto+zstd":
            self._decompress = await asyncio.to_thread(_zstd_decompressor, self.url, self._ssl)
        await self._connect()
        self._set_state("live")
        self._runner = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._ready.clear()
        self._wake.set()  # requests waiting for the connection give up now
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        if self._transport is not None:
            self._transport.send_close()
            self._transport.disconnect()
        self._set_state("closed")

    async def _run(self) -> None:
        try:
            await self._keep_up()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug must end the stream visibly, not leave it hanging
            log.exception("the connection loop failed")
            self._finish(e)

    async def _keep_up(self) -> None:
        attempt = 0
        while not self._closing:
            assert self._gone is not None
            reason = await self._gone
            self._ready.clear()
            self._fail_requests()
            if self._closing:
                return
            if not self._reconnect:
                self._finish(ConnectionError(f"disconnected: {reason}"))
                return
            self._set_state("reconnecting", reason)
            while not self._closing:
                attempt += 1
                delay = random.uniform(0, min(self._backoff[1], self._backoff[0] * 2**attempt))
                await asyncio.sleep(delay)
                try:
                    await self._connect()
                    attempt = 0
                    break
                except AuthRefused as e:
                    self._finish(e)
                    return
                except (OSError, WSError, TimeoutError, _Disconnected, ClientError) as e:
                    log.info("reconnect to %s failed: %s", self.url, e)
                except Exception as e:  # the token callable failing, say: tried again later
                    log.warning("reconnect to %s failed: %r", self.url, e)

    def _finish(self, failure: BaseException) -> None:
        """Stops for good: the caller's ``async for`` ends with ``failure``."""
        self._failure = failure
        self._closing = True
        self._ready.clear()
        self._wake.set()
        self._set_state("closed", str(failure))

    # -- connecting --------------------------------------------------------------------------

    async def _connect(self) -> None:
        headers = {}
        token = await self._token_value()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if self.protocol != "json":
            headers["Sec-WebSocket-Protocol"] = f"tickgate.v1.{self.protocol}"
        loop = asyncio.get_running_loop()
        self._welcome, self._gone = loop.create_future(), loop.create_future()
        parts = urlsplit(self.url)
        url = urlunsplit(parts._replace(query=urlencode(self._query)))

        def listener() -> _Listener:
            # The current one from the start: the welcome may come with the handshake's answer.
            self._listener = _Listener(self)
            return self._listener

        try:
            transport, _ = await ws_connect(
                listener,
                url,
                ssl_context=self._ssl,
                extra_headers=headers,
                websocket_handshake_timeout=self._timeout,
                max_frame_size=64 * 1024 * 1024,
            )
        except WSInvalidStatusError as e:
            status = e.response.status if e.response is not None else 0
            body = (e.raw_body or b"").decode(errors="replace").strip()
            if status == 401:
                raise AuthRefused("unauthenticated", body) from None
            raise ClientError("refused", f"HTTP {status}: {body}") from None
        self._transport = transport
        try:
            welcome = await asyncio.wait_for(asyncio.shield(self._welcome), self._timeout)
            await self._restore(welcome)
        except BaseException:
            transport.disconnect()  # half set up: not left open behind the next attempt
            raise
        self._ready.set()
        self._wake.set()

    async def _restore(self, welcome: dict[str, Any]) -> None:
        """After a reconnect: takes the session back, with what was missed, and makes the
        gateway's subscriptions the caller's again."""
        if self.session is None:
            self.session, self.epoch = welcome["session"], welcome["epoch"]
            return
        held = {c: s for c, s in self._last_seq.items() if c in self.channels}
        old_epoch = self.epoch or ""
        if welcome["epoch"] != self.epoch:
            # The gateway restarted: numbering began anew. Forgotten now, before the snapshots
            # that follow the resume reply (often in the same read) are checked against it.
            self._last_seq.clear()
            self.epoch = welcome["epoch"]
        reply = await self._call(
            {"action": "resume", "session": self.session, "epoch": old_epoch, "last_seq": held}
        )
        if reply.get("reason") in SESSION_NOT_TAKEN:
            # The connection kept the session it was welcomed with: that one is ours now (the
            # old one is gone, or will be tried no more).
            self.session = welcome["session"]
        recovered = reply.get("recovered", False)
        self._set_state("recovered" if recovered else "not_recovered", reply.get("reason", ""))
        have = set((await self._call({"action": "query_subscribe"})).get("channels", []))
        missing, extra = self.channels - have, have - self.channels
        for types, symbols in _by_type(missing):
            try:
                await self._call({"action": "subscribe", "symbols": symbols, "types": types})
            except ClientError as e:
                # Refused now (a narrower token, the provider's limit): said, not retried forever.
                dropped = [f"{symbol}:{kind}" for symbol in symbols for kind in types]
                self.channels.difference_update(dropped)
                self._emit(ConnectionEvent(kind=e.code, reason=e.msg, channels=dropped))
        for types, symbols in _by_type(extra):
            await self._call({"action": "unsubscribe", "symbols": symbols, "types": types})

    async def _token_value(self) -> str | None:
        token = self._token
        if token is None or isinstance(token, str):
            return token
        value = token()
        return await value if inspect.isawaitable(value) else value

    # -- requests ----------------------------------------------------------------------------

    async def subscribe(self, symbols: Iterable[str], types: Iterable[str] = ("quote",)) -> list[str]:
        """Subscribes; returns the channels now held for them. Raises ``ClientError``."""
        reply = await self.request({"action": "subscribe", "symbols": list(symbols), "types": list(types)})
        self.channels.update(reply.get("channels", []))
        return list(reply.get("channels", []))

    async def unsubscribe(self, symbols: Iterable[str], types: Iterable[str] | None = None) -> list[str]:
        message: dict[str, Any] = {"action": "unsubscribe", "symbols": list(symbols)}
        if types is not None:
            message["types"] = list(types)
        reply = await self.request(message)
        gone = reply.get("channels", [])
        self.channels.difference_update(gone)
        for channel in gone:  # nothing more comes for it after the reply
            self._last_seq.pop(channel, None)
        return list(gone)

    async def set_mode(self, mode: str, interval_ms: int | None = None) -> None:
        message: dict[str, Any] = {"action": "set_mode", "mode": mode}
        if interval_ms is not None:
            message["interval_ms"] = interval_ms
        await self.request(message)
        self._query = {"mode": mode, **({"interval_ms": str(interval_ms)} if interval_ms else {})}

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Sends a command once connected and returns its reply (sent again if the connection
        drops before the reply comes)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout * 6
        while True:
            while not self._ready.is_set():
                if self._closing:
                    raise self._failure or ConnectionError("client closed")
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError(f"not connected to {self.url} within {self._timeout * 6:g} s")
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), left)
            try:
                return await self._call(message)
            except _Disconnected:
                continue

    async def _call(self, message: dict[str, Any]) -> dict[str, Any]:
        transport = self._transport
        if transport is None:
            raise _Disconnected("not connected")
        if self._paused:  # the reply must be read, whatever waits unread before it
            self._paused = False
            transport.underlying_transport.resume_reading()
        request_id = f"c{next(self._ids)}"
        future = asyncio.get_running_loop().create_future()
        self._replies[request_id] = future
        try:
            transport.send(WSMsgType.TEXT, _encode_json({**message, "id": request_id}))
            reply = await asyncio.wait_for(future, self._timeout)
        finally:
            self._replies.pop(request_id, None)
        if reply.get("type") == "error":
            raise ClientError(reply.get("code", ""), reply.get("msg", ""), reply.get("channels"))
        return reply

    def _fail_requests(self) -> None:
        for future in self._replies.values():
            if not future.done():
                future.set_exception(_Disconnected("connection lost"))
        self._replies.clear()

    # -- what comes in -----------------------------------------------------------------------

    def _on_message(self, listener: _Listener, payload: bytes, binary: bool) -> None:
        if listener is not self._listener:
            return  # a connection being replaced
        try:
            if binary:
                self._on_proto(self._decompress(payload) if self._decompress else payload)
            elif not self._on_json_push(payload):
                self._on_json(_decode_json(payload))
        except (msgspec.DecodeError, KeyError, TypeError, ValueError) as e:
            log.warning("a message from the gateway could not be read: %s", e)

    def _on_json_push(self, payload: bytes) -> bool:
        """Market data straight into typed updates (the gateway writes ``type`` first); False:
        not a push, or a kind this SDK does not know (read as a dict instead)."""
        try:
            if payload.startswith(b'{"type":"stock_quote"'):
                push = decode_push(payload)
                data = msgspec.structs.replace(push.data, snapshot=True) if push.snapshot else push.data
                self._deliver(data, push.refresh)
                return True
            if payload.startswith(b'{"type":"batch"'):
                for update in decode_batch(payload).updates:
                    self._deliver(update)
                return True
        except msgspec.ValidationError:
            pass
        return False

    def _on_json(self, m: dict[str, Any]) -> None:
        kind = m.get("type")
        if kind == "stock_quote":
            self._deliver(from_json(m["data"], m.get("snapshot", False)), m.get("refresh", False))
        elif kind == "batch":
            for entry in m["updates"]:
                self._deliver(from_json(entry))
        else:
            self._on_reply(m)

    def _on_proto(self, payload: bytes) -> None:
        from tickgate import proto

        m = proto.ServerMessage.FromString(payload)
        which = m.WhichOneof("message")
        if which == "update":
            self._deliver(from_proto(m.update))
        elif which in ("snapshot", "refresh"):
            self._deliver(from_proto(getattr(m, which), True), which == "refresh")
        elif which == "batch":
            for u in m.batch.updates:
                self._deliver(from_proto(u))
        elif which == "reply":
            r = m.reply
            self._on_reply(
                {
                    "type": r.type,
                    "action": r.action,
                    "channels": list(r.channels),
                    "epoch": r.epoch,
                    "session": r.session,
                    "recovered": r.recovered,
                    "reason": r.reason,
                    **({"id": r.id} if r.HasField("id") else {}),
                }
            )
        elif which == "error":
            e = m.error
            error = {"type": "error", "code": e.code, "msg": e.msg, "channels": list(e.channels)}
            self._on_reply({**error, **({"id": e.id} if e.HasField("id") else {})})
        elif which == "status":
            s = m.status
            self._on_reply(
                {"type": "status", "state": s.state, "reason": s.reason, "channels": list(s.channels)}
            )

    def _on_reply(self, m: dict[str, Any]) -> None:
        kind = m.get("type")
        request_id = m.get("id")
        if request_id is not None:
            if kind in ("success", "subscriptions") and m.get("action") != "resume" and m.get("epoch"):
                self.epoch = m[
                    "epoch"
                ]  # an ingest restarted under a live connection: the next resume says so
            future = self._replies.get(str(request_id))
            if future is not None and not future.done():
                future.set_result(m)
            return
        if kind == "welcome":
            if self._welcome is not None and not self._welcome.done():
                self._welcome.set_result(m)
        elif kind == "status":
            self._emit(ConnectionEvent(kind=m["state"], reason=m.get("reason", ""), channels=m["channels"]))
        elif kind == "error":
            code = m.get("code", "")
            if code == "token_expired":
                self._emit(ConnectionEvent(kind="token_expired"))
                if callable(self._token) and (self._renewing is None or self._renewing.done()):
                    self._renewing = asyncio.get_running_loop().create_task(self._renew())
            elif code in ("not_entitled", "upstream_rejected") and m.get("channels"):
                self.channels.difference_update(m["channels"])  # the gateway dropped them
                self._emit(ConnectionEvent(kind=code, reason=m.get("msg", ""), channels=m["channels"]))

    async def _renew(self) -> None:
        try:
            await self._call({"action": "auth", "token": await self._token_value()})
        except Exception as e:  # the callable too: the gateway closes us if none comes
            log.warning("token renewal failed: %r", e)

    def _deliver(self, update: Update | None, refresh: bool = False) -> None:
        if update is None:
            return
        channel = update.channel
        last = self._last_seq.get(channel)
        # Already had it (a resume's replay overlapping what arrived before the drop); a
        # refresh may repeat the last seq on purpose: it replaces the caller's state.
        # A refresh is the channel's state from now on, whatever its seq (after an ingest
        # restart, numbering starts anew on the same connection).
        if last is not None and not refresh and update.seq <= last:
            return
        self._last_seq[channel] = update.seq
        self._updates.append(update)
        self._updates_ready.set()
        if (
            len(self._updates) >= self._max_pending
            and not self._paused
            and not self._replies  # a reply being waited for must still be read
            and self._transport is not None
        ):
            self._paused = True
            self._transport.underlying_transport.pause_reading()

    def _on_close(self, listener: _Listener, code: int, reason: bytes) -> None:
        if listener is self._listener and code == 4001:
            self._finish(AuthRefused("unauthenticated", reason.decode(errors="replace")))

    def _on_disconnected(self, listener: _Listener) -> None:
        if listener is not self._listener:
            return
        self._transport = self._listener = None
        self._paused = False
        self._ready.clear()
        self._fail_requests()  # at once, not after their timeout
        if self._welcome is not None and not self._welcome.done():
            self._welcome.set_exception(_Disconnected("connection lost before the welcome"))
            self._welcome.exception()  # retrieved: _connect may have stopped waiting for it
        if self._gone is not None and not self._gone.done():
            self._gone.set_result("connection lost")
        self._updates_ready.set()  # a waiting caller looks at whether it is over

    # -- what the caller reads ---------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Update]:
        return self

    async def __anext__(self) -> Update:
        while not self._updates:
            if self._closing:
                if self._failure is not None:
                    raise self._failure
                raise StopAsyncIteration
            self._updates_ready.clear()
            await self._updates_ready.wait()
        update = self._updates.popleft()
        if self._paused and len(self._updates) <= self._max_pending // 2 and self._transport is not None:
            self._paused = False
            self._transport.underlying_transport.resume_reading()
        return update

    async def events(self) -> AsyncIterator[ConnectionEvent]:
        """The connection's events as they happen (see ``ConnectionEvent``); ends at close."""
        while True:
            while self._events:
                yield self._events.popleft()
            if self.state == "closed":
                return
            self._events_ready.clear()
            await self._events_ready.wait()

    def _set_state(self, state: str, reason: str = "") -> None:
        self.state = state
        self._emit(ConnectionEvent(kind=state, reason=reason))
        if state == "closed":
            self._updates_ready.set()

    def _emit(self, event: ConnectionEvent) -> None:
        self._events.append(event)
        self._events_ready.set()
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                log.exception("on_event callback failed")


def _by_type(channels: set[str]) -> list[tuple[list[str], list[str]]]:
    """Channels grouped into requests: ``([type], [symbols])`` per type."""
    groups: dict[str, list[str]] = {}
    for channel in sorted(channels):
        symbol, _, kind = channel.rpartition(":")
        groups.setdefault(kind, []).append(symbol)
    return [([kind], symbols) for kind, symbols in groups.items()]


def _zstd_decompressor(url: str, context: ssl.SSLContext | None) -> Callable[[bytes], bytes]:
    """zstd with the gateway's dictionary (fetched once from ``/v1/zstd-dictionary``; a gateway
    without one answers 404 and sends plain zstd frames)."""
    import zstandard

    parts = urlsplit(url)
    http = urlunsplit(
        parts._replace(
            scheme="https" if parts.scheme == "wss" else "http", path="/v1/zstd-dictionary", query=""
        )
    )
    try:
        with urllib.request.urlopen(http, timeout=10, context=context) as r:
            raw = r.read()
        dctx = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(raw))
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise
        dctx = zstandard.ZstdDecompressor()
    return dctx.decompress


def connect(url: str, **options: Any) -> Client:
    """``async with connect(url, token=..., protocol="json"|"proto"|"proto+zstd") as c:``
    (see ``Client`` for the options)."""
    return Client(url, **options)
