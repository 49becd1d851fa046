"""``ProviderConnection``: one WebSocket connection to a market-data provider, whatever its
protocol (``ItickAdapter``, ``FinnhubAdapter`` fill in the protocol).

It connects, lets the protocol authenticate, subscribes the gateway's channels, pings if the
protocol has application pings, detects a dead or silent connection, and reconnects with
backoff forever, re-subscribing everything once ready again. Frames go through the core
(``FeedProcessor``, in this provider's protocol) once; each frame's updates go to the sink as
one list (the fan-out takes them from there without Python per delivery); control events drive
the protocol's state machine. The feed's state (delivering or not, and why) goes to its sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from tickgate._core import ControlEvent, DecodeError, FeedProcessor
from tickgate.framing import FramingError, MessageAssembler, MessageTooLarge
from tickgate.logs import redact_url
from tickgate.status import StaleReason
from tickgate.upstream.backoff import Backoff
from tickgate.upstream.base import FeedSink, RejectSink, UpdateSink, UpstreamState
from tickgate.upstream.settings import UpstreamSettings

log = logging.getLogger("tickgate.upstream")

#: A connection that stayed authenticated this long resets the backoff.
STABLE_AFTER_S = 10.0
#: After (re-)authenticating, the feed counts as delivering at its first market data, or this
#: long after, whichever comes first (channels that happen to be quiet must not stay stale).
FEED_UP_GRACE_S = 2.0
#: Kill reasons that mean the provider went quiet rather than away.
_SILENT = ("no pong", "nothing received", "no market data")


class _Listener(WSListener):
    """picows callbacks, forwarded to the adapter; reassembles fragmented messages."""

    def __init__(self, adapter: ProviderConnection) -> None:
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
            except FramingError as e:  # the provider's stream is out of step: reconnect
                self._adapter.decode_errors += 1
                log.warning("provider broke WebSocket framing (%s); reconnecting", e)
                self._assembler = MessageAssembler(self._adapter.settings.max_message_bytes)
                transport.disconnect(graceful=False)
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


class ProviderConnection(ABC):
    #: Names the provider in status and logs, and the core's decoder for its protocol.
    name = ""
    provider = ""
    #: The kinds it can stream (``tick``, ``quote``, ``depth``, ``kline``); None: all.
    served_kinds: frozenset[str] | None = None
    #: Symbols it spells its own way: the gateway's symbol -> its spelling.
    symbol_map: dict[str, str] = {}  # noqa: RUF012 (replaced per instance, never mutated)

    def __init__(
        self,
        settings: UpstreamSettings,
        processor: FeedProcessor,
        on_updates: UpdateSink,
        on_rejected: RejectSink,
        on_feed: FeedSink | None = None,
    ) -> None:
        self.settings = settings
        #: Where it connects, credentials blanked (for logs and status).
        self.url = redact_url(settings.url)
        self._processor = processor
        self._on_updates = on_updates
        self._on_rejected = on_rejected
        self._on_feed = on_feed
        #: What the feed sink was last told: (up, reason); None before anything was.
        self._feed: tuple[bool, str] | None = None
        self._backoff = Backoff(settings.backoff_initial, settings.backoff_max)

        self._state = UpstreamState.IDLE
        self._wanted: set[str] = set()
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

    def wire(self, on_updates: UpdateSink, on_rejected: RejectSink, on_feed: FeedSink | None) -> None:
        """Where its updates, refusals and feed state go (a failover routes them)."""
        self._on_updates, self._on_rejected, self._on_feed = on_updates, on_rejected, on_feed

    def map_symbols(self, ours_to_theirs: dict[str, str]) -> None:
        """Symbols this provider spells its own way, both ways: what is subscribed and what
        its frames are numbered as. Raises ``DecodeError`` for a symbol either side cannot read."""
        self.symbol_map = dict(ours_to_theirs)
        self._processor.set_symbol_map(self.provider, {t: o for o, t in ours_to_theirs.items()})

    def use_processor(self, processor: FeedProcessor) -> None:
        """Decodes into ``processor`` from now on (a failover's standby decodes into its own,
        so nothing it sends is numbered)."""
        self._processor = processor
        if self.symbol_map:
            processor.set_symbol_map(self.provider, {t: o for o, t in self.symbol_map.items()})

    async def start(self) -> None:
        if self._task is None:
            self._state = UpstreamState.IDLE  # startable again after a stop
            self._task = asyncio.create_task(self._run(), name=f"tickgate-upstream-{self.name}")

    async def stop(self) -> None:
        self._state = UpstreamState.CLOSED
        self._feed = None
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
        wanted = list(channels)
        unserved = [c for c in wanted if not self.serves(c)]
        if unserved:  # refused at once: the edges tell the clients who asked
            self._on_rejected(unserved, self.unserved_reason)
            wanted = [c for c in wanted if self.serves(c)]
        new = [c for c in wanted if c not in self._wanted]
        self._wanted.update(new)
        if new and self._state is UpstreamState.READY:
            self._send_subscribe(new)

    def unsubscribe(self, channels: Iterable[str]) -> None:
        gone = [c for c in channels if c in self._wanted]
        self._wanted.difference_update(gone)
        if gone and self._state is UpstreamState.READY:
            self._send_unsubscribe(gone)

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
            self._connection_lost()
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
        url, headers = self._url_and_headers()
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
                ping = self._ping_message()
                if ping is not None:
                    self._last_ping = now
                    self._pong_due = now + self.settings.pong_timeout
                    self._send(ping)

    def _kill(self, transport: WSTransport, why: str) -> None:
        self._kill_reason = why
        log.warning("upstream %s dead: %s", self.url, why)
        transport.disconnect(graceful=False)

    # -- frames -----------------------------------------------------------------------------

    def _on_connected(self, transport: WSTransport) -> None:
        self._transport = transport
        self._state = UpstreamState.AUTHENTICATING
        self._connected_at = self._last_rx = self._last_ping = self._last_data = time.monotonic()
        self._greet()

    def _on_frame(self, payload: bytes) -> None:
        self._last_rx = time.monotonic()
        self.frames_in += 1
        try:
            updates, controls = self._processor.ingest(payload, None, self.provider)
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
        if kind == "pong":
            self._pong_due = None
        elif kind == "connected":
            log.debug("upstream greeting: %s", event.message)
        elif not event.ok:
            log.warning("upstream notice (%s): %s", event.action or "-", event.message)

    def _ready(self) -> None:
        """Authenticated (or nothing to authenticate): subscribe what is wanted."""
        self._state = UpstreamState.READY
        self._ready_at = time.monotonic()
        log.info("upstream %s ready; subscribing %d channels", self.url, len(self._wanted))
        if self._wanted:
            self._send_subscribe(sorted(self._wanted))
        else:
            self._report_feed(True, "")  # nothing to wait for
        self.ready_event.set()

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

    # -- the protocol's part -----------------------------------------------------------------

    #: Why ``subscribe`` refuses channels ``serves`` says no to.
    unserved_reason = ""

    def serves(self, channel: str) -> bool:
        """Whether this protocol can stream ``channel`` (else it is refused at once)."""
        return True

    def _url_and_headers(self) -> tuple[str, dict[str, str]]:
        return self.settings.url, {}

    def _greet(self) -> None:
        """The WebSocket is open: authenticate (``_ready`` once done)."""
        self._ready()

    def _ping_message(self) -> dict[str, str] | None:
        """The protocol's application ping (None: it has none; protocol pings and the
        silence rules find a dead connection)."""
        return None

    def _connection_lost(self) -> None:  # noqa: B027 (an optional hook: most protocols keep none)
        """Forget per-connection protocol state."""

    @abstractmethod
    def _send_subscribe(self, channels: list[str]) -> None:
        """Asks the provider for ``channels`` in its protocol."""

    @abstractmethod
    def _send_unsubscribe(self, channels: list[str]) -> None:
        """Tells the provider ``channels`` are no longer wanted."""

    def _send(self, message: dict[str, Any]) -> None:
        if self._transport is not None:
            self._transport.send(WSMsgType.TEXT, json.dumps(message, separators=(",", ":")).encode())
