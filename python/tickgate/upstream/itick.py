"""``ItickAdapter``: one WebSocket connection to an iTick-protocol provider.

It authenticates (header, query or message form), subscribes the gateway's channels in
chunks, pings, detects a dead or silent connection, and reconnects with backoff forever,
re-subscribing everything after each authentication. Frames go through the core
(``FeedProcessor``) once; each frame's updates go to the sink as one list (the fan-out takes
them from there without Python per delivery), control events drive this adapter's state
machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Iterable
from urllib.parse import quote

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from tickgate._core import ControlEvent, DecodeError, FeedProcessor, split_channel
from tickgate.framing import MessageAssembler, MessageTooLarge
from tickgate.status import StaleReason
from tickgate.upstream.backoff import Backoff
from tickgate.upstream.base import FeedSink, RejectSink, UpdateSink, UpstreamState
from tickgate.upstream.settings import UpstreamSettings

log = logging.getLogger("tickgate.upstream.itick")

#: A connection that stayed authenticated this long resets the backoff.
STABLE_AFTER_S = 10.0
#: After (re-)authenticating, the feed counts as delivering at its first market data, or this
#: long after, whichever comes first (channels that happen to be quiet must not stay stale).
FEED_UP_GRACE_S = 2.0
#: Kill reasons that mean the provider went quiet rather than away.
_SILENT = ("no pong", "nothing received", "no market data")


class _Listener(WSListener):
    """picows callbacks, forwarded to the adapter; reassembles fragmented messages."""

    def __init__(self, adapter: ItickAdapter) -> None:
        self._adapter = adapter
        self._assembler = MessageAssembler(adapter.settings.max_message_bytes)

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._adapter._on_connected(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY or kind is WSMsgType.CONTINUATION:
            try:
                message = self._assembler.add(frame)
            except MessageTooLarge:
                self._adapter._refuse_oversize()
                return
            if message is not None:
                self._adapter._on_frame(message)
        elif kind is WSMsgType.CLOSE:
            code = frame.get_close_code()
            log.info("provider closed the connection: %s %s", code, frame.get_close_message())
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()

    def pause_writing(self) -> None:  # commands are tiny; nothing to throttle
        pass

    def resume_writing(self) -> None:
        pass


class ItickAdapter:
    name = "itick"
    #: The core's decoder for this protocol (``FeedProcessor(provider)``).
    provider = "itick"

    def __init__(
        self,
        settings: UpstreamSettings,
        processor: FeedProcessor,
        on_updates: UpdateSink,
        on_rejected: RejectSink,
        on_feed: FeedSink | None = None,
    ) -> None:
        self.settings = settings
        self.url = settings.url
        self._processor = processor
        self._on_updates = on_updates
        self._on_rejected = on_rejected
        self._on_feed = on_feed
        #: What the feed sink was last told: (up, reason); None before anything was.
        self._feed: tuple[bool, str] | None = None
        self._backoff = Backoff(settings.backoff_initial, settings.backoff_max)

        self._state = UpstreamState.IDLE
        self._wanted: set[str] = set()
        # iTick answers subscribes in order and without an id: the FIFO maps each reply to
        # the channels its request carried.
        self._pending: deque[list[str]] = deque()
        self._transport: WSTransport | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready_at = 0.0
        self._connected_at = 0.0
        self._last_rx = 0.0
        self._last_data = 0.0
        self._last_ping = 0.0
        self._pong_due: float | None = None
        self.reconnects = 0
        self.frames_in = 0
        self.decode_errors = 0
        self.last_error = ""
        self._kill_reason = ""
        self.ready_event = asyncio.Event()

    # -- public API -------------------------------------------------------------------------

    @property
    def state(self) -> UpstreamState:
        return self._state

    @property
    def wanted(self) -> frozenset[str]:
        return frozenset(self._wanted)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tickgate-upstream-itick")

    async def stop(self) -> None:
        self._state = UpstreamState.CLOSED
        if self._transport is not None:
            with contextlib.suppress(Exception):
                self._transport.send_close(WSCloseCode.GOING_AWAY, b"gateway shutting down")
                self._transport.disconnect()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def subscribe(self, channels: Iterable[str]) -> None:
        new = [c for c in channels if c not in self._wanted]
        self._wanted.update(new)
        if new and self._state is UpstreamState.READY:
            self._send_subscribe(new)

    def unsubscribe(self, channels: Iterable[str]) -> None:
        gone = [c for c in channels if c in self._wanted]
        self._wanted.difference_update(gone)
        if not gone or self._state is not UpstreamState.READY:
            return
        if self.settings.unsubscribe_mode == "message":
            for symbols, types, _ in _group_with_channels(gone, self.settings.subscribe_chunk):
                self._send({"ac": "unsubscribe", "params": ",".join(symbols), "types": ",".join(types)})
        else:
            # No unsubscribe in the provider's protocol: re-send the reduced set.
            self._send_subscribe(sorted(self._wanted))

    def status(self) -> dict[str, object]:
        return {
            "provider": self.name,
            "url": self.url,
            "state": self._state.value,
            "channels": len(self._wanted),
            "reconnects": self.reconnects,
            "frames_in": self.frames_in,
            "decode_errors": self.decode_errors,
            # Updates the core dropped as implausible, by reason (price, volume, time).
            "dropped": self._processor.stats()["dropped"],
            "last_error": self.last_error,
        }

    def drop_connection(self) -> None:
        """Abandons the current connection (as a dead-peer detector would); it reconnects."""
        if self._transport is not None:
            self._transport.disconnect(graceful=False)

    # -- connection loop --------------------------------------------------------------------

    async def _run(self) -> None:
        while self._state is not UpstreamState.CLOSED:
            try:
                await self._attempt()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The loop is the gateway's only way back to the provider: it must not die.
                log.exception("upstream loop error; retrying")
                await asyncio.sleep(self._backoff.maximum)

    async def _attempt(self) -> None:
        """One connection's life, then the backoff before the next."""
        self._state = UpstreamState.CONNECTING
        try:
            await self._connect_and_serve()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # any failure is a reason to reconnect, never to stop
            self.last_error = f"{type(e).__name__}: {e}".rstrip(": ")
            log.warning("upstream %s: %s", self.url, self.last_error)
        finally:
            self._transport = None
            self._pending.clear()
            self._pong_due = None
            self.ready_event.clear()
        if self._state is UpstreamState.CLOSED:
            return
        # Silent: killed for it, or lost (picows's own ping may close it first) after nothing
        # came for longer than a pong may take.
        was_ready = self._ready_at > 0  # this attempt got as far as authenticated
        silent = self._kill_reason.startswith(_SILENT) or (
            not self._kill_reason
            and was_ready
            and time.monotonic() - self._last_rx > self.settings.pong_timeout
        )
        self._report_feed(False, StaleReason.PROVIDER_SILENT if silent else StaleReason.UPSTREAM_DOWN)
        if self._ready_at and time.monotonic() - self._ready_at >= STABLE_AFTER_S:
            self._backoff.reset()
        self._ready_at = 0.0
        self._state = UpstreamState.BACKOFF
        self.reconnects += 1
        delay = self._backoff.next_delay()
        log.info("upstream reconnect #%d in %.2fs", self.reconnects, delay)
        await asyncio.sleep(delay)

    async def _connect_and_serve(self) -> None:
        self._kill_reason = ""
        url, headers = self.url, {}
        if self.settings.auth == "header":
            headers["token"] = self.settings.token
        elif self.settings.auth == "query":
            url += ("&" if "?" in url else "?") + "token=" + quote(self.settings.token, safe="")
        # The handshake timeout starts only once TCP is up; the outer bound covers the TCP
        # connect and TLS too (a host that drops SYNs would otherwise hold us ~2 minutes).
        transport, _ = await asyncio.wait_for(
            ws_connect(
                lambda: _Listener(self),
                url,
                extra_headers=headers,
                websocket_handshake_timeout=self.settings.connect_timeout,
                max_frame_size=self.settings.max_message_bytes,
                enable_auto_ping=True,
                auto_ping_idle_timeout=self.settings.ping_interval,
                auto_ping_reply_timeout=min(self.settings.pong_timeout, self.settings.ping_interval),
            ),
            self.settings.connect_timeout,
        )
        watchdog = asyncio.create_task(self._watchdog(transport))
        try:
            await transport.wait_disconnected()
        finally:
            watchdog.cancel()
        if self._kill_reason:
            self.last_error = self._kill_reason
        elif self._state is UpstreamState.READY:
            self.last_error = "connection closed by the provider"

    async def _watchdog(self, transport: WSTransport) -> None:
        """Application pings, and the two dead-connection rules: a missed pong, a silent feed."""
        tick = min(1.0, self.settings.ping_interval / 4, self.settings.pong_timeout / 4)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if (
                self._state is UpstreamState.AUTHENTICATING
                and now - self._connected_at > self.settings.auth_timeout
            ):
                self._kill(transport, f"not authenticated within {self.settings.auth_timeout:.1f}s")
                return
            if self._pong_due is not None and now > self._pong_due:
                self._kill(transport, f"no pong within {self.settings.pong_timeout:.1f}s")
                return
            if now - self._last_rx > self.settings.idle_timeout:
                self._kill(transport, f"nothing received for {self.settings.idle_timeout:.1f}s")
                return
            # Pongs keep the line alive, so a feed can answer pings yet deliver nothing.
            if self._wanted and now - self._last_data > self.settings.data_timeout:
                self._kill(transport, f"no market data for {self.settings.data_timeout:.1f}s")
                return
            if (
                self._state is UpstreamState.READY
                and self._feed != (True, "")
                and now - self._ready_at >= FEED_UP_GRACE_S
            ):
                self._report_feed(True, "")
            if self._state is UpstreamState.READY and now - self._last_ping >= self.settings.ping_interval:
                self._last_ping = now
                self._pong_due = now + self.settings.pong_timeout
                self._send({"ac": "ping", "params": str(int(time.time() * 1000))})

    def _kill(self, transport: WSTransport, why: str) -> None:
        self._kill_reason = why
        log.warning("upstream %s dead: %s", self.url, why)
        transport.disconnect(graceful=False)

    # -- frames -----------------------------------------------------------------------------

    def _on_connected(self, transport: WSTransport) -> None:
        self._transport = transport
        self._state = UpstreamState.AUTHENTICATING
        self._connected_at = self._last_rx = self._last_ping = self._last_data = time.monotonic()
        if self.settings.auth == "message":
            self._send({"ac": "auth", "params": self.settings.token})

    def _on_frame(self, payload: bytes) -> None:
        self._last_rx = time.monotonic()
        self.frames_in += 1
        try:
            updates, controls = self._processor.ingest(payload)
        except DecodeError as e:
            # Garbage from the provider costs only that frame; log a few, count all.
            self.decode_errors += 1
            if self.decode_errors <= 10 or self.decode_errors % 1000 == 0:
                log.warning("upstream frame refused (%s, %d so far): %s", e.code, self.decode_errors, e)
            return
        # An exception escaping here would make picows drop the provider link for everyone.
        if updates:
            self._last_data = self._last_rx
            if self._feed != (True, "") and self._state is UpstreamState.READY:
                self._report_feed(True, "")
            try:
                self._on_updates(updates)
            except Exception:
                log.exception("fanning out %d updates failed", len(updates))
        for event in controls:
            try:
                self._on_control(event)
            except Exception:
                log.exception("handling upstream event %r failed", event)

    def _refuse_oversize(self) -> None:
        self.decode_errors += 1
        log.warning("upstream message over %d bytes dropped", self.settings.max_message_bytes)

    def _on_control(self, event: ControlEvent) -> None:
        kind = event.kind
        if kind == "auth":
            if event.ok:
                self._state = UpstreamState.READY
                self._ready_at = time.monotonic()
                log.info("upstream %s authenticated; subscribing %d channels", self.url, len(self._wanted))
                if self._wanted:
                    self._send_subscribe(sorted(self._wanted))
                else:
                    self._report_feed(True, "")  # nothing to wait for
                self.ready_event.set()
            else:
                # Retried with backoff (a token fixed at the provider's end comes back by itself).
                if self._transport is not None:
                    self._kill(self._transport, f"auth failed: {event.message}")
        elif kind == "subscribe":
            channels = self._pending.popleft() if self._pending else []
            if not event.ok:
                # A channel that a later, still unanswered subscribe also carries belongs to
                # that request now (it was dropped and asked for again in between).
                later = {c for batch in self._pending for c in batch}
                refused = [c for c in channels if c in self._wanted and c not in later]
                self._wanted.difference_update(refused)
                self.last_error = f"subscribe refused: {event.message}"
                log.warning("upstream refused %d channels: %s", len(refused), event.message)
                if refused:
                    self._on_rejected(refused, event.message)
        elif kind == "pong":
            self._pong_due = None
        elif kind == "connected":
            log.debug("upstream greeting: %s", event.message)
        elif not event.ok:
            log.warning("upstream notice (%s): %s", event.action or "-", event.message)

    def _report_feed(self, up: bool, reason: str) -> None:
        if self._feed == (up, reason):
            return
        self._feed = (up, reason)
        if up:
            log.info("upstream %s delivering", self.url)
        if self._on_feed is not None:
            try:
                self._on_feed(up, reason)
            except Exception:
                log.exception("telling the feed state failed")

    def _send_subscribe(self, channels: list[str]) -> None:
        for symbols, types, batch in _group_with_channels(channels, self.settings.subscribe_chunk):
            self._pending.append(batch)
            self._send({"ac": "subscribe", "params": ",".join(symbols), "types": ",".join(types)})

    def _send(self, message: dict[str, str]) -> None:
        if self._transport is not None:
            self._transport.send(WSMsgType.TEXT, json.dumps(message, separators=(",", ":")).encode())


def _group_with_channels(channels: Iterable[str], chunk: int) -> list[tuple[list[str], list[str], list[str]]]:
    """iTick subscribes symbols x types: group channels by their set of types so each message
    asks for exactly what is wanted, at most ``chunk`` symbols per message."""
    types_by_symbol: dict[str, set[str]] = {}
    for channel in channels:
        symbol, kind = split_channel(channel)
        types_by_symbol.setdefault(symbol, set()).add(kind)
    by_types: dict[tuple[str, ...], list[str]] = {}
    for symbol, kinds in types_by_symbol.items():
        by_types.setdefault(tuple(sorted(kinds)), []).append(symbol)
    out = []
    for kinds, symbols in sorted(by_types.items()):
        symbols.sort()
        for i in range(0, len(symbols), chunk):
            part = symbols[i : i + chunk]
            out.append((part, list(kinds), [f"{s}:{k}" for s in part for k in kinds]))
    return out
