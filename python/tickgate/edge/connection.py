"""``ClientConnection``: one downstream WebSocket client.

It holds an integer id in the core's dispatcher, which queues the client's pushes; the hub's
flush writes them with one call per event-loop turn. The socket's write-buffer watermarks are
set to the soft cap, so a client that stops reading makes the transport call
``pause_writing``: the dispatcher then conflates its updates until ``resume_writing``.
Replies go through ``send``, which first writes whatever the dispatcher queued, so a reply
never overtakes a push queued before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from typing import TYPE_CHECKING, Any

from multidict import CIMultiDict
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from tickgate.edge import commands
from tickgate.edge.replies import Message, Reply, encode_reply, error_reply
from tickgate.errors import ErrorCode
from tickgate.framing import FramingError, MessageAssembler, MessageTooLarge

if TYPE_CHECKING:
    from tickgate.auth import Identity
    from tickgate.edge.hub import EdgeHub

log = logging.getLogger("tickgate.edge")

CLOSE_TOO_BIG = WSCloseCode(1009)
#: Requests a client may send while one awaits its reply (they are applied in order after it).
MAX_HELD_REQUESTS = 256
#: How long a closing client may take to drain what was queued for it before it is reset.
CLOSE_GRACE_S = 2.0
_LINGER_RESET = struct.pack("ii", 1, 0)


_NO_HEADERS = CIMultiDict[str]()


def _release_handshake(transport: WSTransport) -> None:
    """picows keeps the upgrade request (its headers in a multidict) for the connection's life;
    nothing reads it after the handshake, and at 100k idle clients it comes to about 1 KB of
    the memory per connection. (The response is one shared object: see the listener.)"""
    request = transport.request
    if request is not None:
        request.headers = _NO_HEADERS
        request.path = request.method = request.version = b""


class ClientConnection(WSListener):
    __slots__ = (
        "_address",
        "_allowance",
        "_assembler",
        "_client_closed",
        "_delivery",
        "_held",
        "_raw",
        "_refill_at",
        "_refused_in_a_row",
        "closed",
        "ended",
        "format",
        "hub",
        "id",
        "identity",
        "last_seen",
        "paused",
        "ping_sent",
        "session",
        "since",
        "transport",
    )

    def __init__(
        self,
        hub: EdgeHub,
        fmt: str = "json",
        delivery: tuple[str, int] = ("immediate", 500),
        identity: Identity | None = None,
        address: str | None = None,
    ) -> None:
        self.hub = hub
        #: Whom its token names (None: no token; with auth on, nothing is served until one).
        self.identity = identity
        # ``host:port``, kept only where the audit log needs it after the socket is gone.
        self._address = address
        #: ``(close code, reason)`` once it is closing (None: the peer vanished).
        self.ended: tuple[int, str] | None = None
        #: ``json``, ``proto`` or ``proto+zstd``, fixed at the handshake.
        self.format = fmt
        #: ``(mode, interval_ms)`` asked for at the handshake (one shared tuple per value).
        self._delivery = delivery
        #: The dispatcher's id for this connection (0 until connected).
        self.id = 0
        self.transport: WSTransport | None = None
        #: The socket transport under the WebSocket layer (set when connected).
        self._raw: Any = None
        self.closed = False
        # The client sent its close frame: our echo ends the handshake (see ``close``).
        self._client_closed = False
        #: The socket's buffer is over the soft cap (the dispatcher conflates meanwhile).
        self.paused = False
        # Made only when a message comes in fragments: most clients never send one, and at
        # 100k connections every object kept per connection counts.
        self._assembler: MessageAssembler | None = None
        #: When the client last sent a frame, and when it was pinged (0: no ping outstanding);
        #: monotonic seconds, read by the hub's one liveness sweep.
        self.last_seen = hub.liveness.now  # the sweep's clock: one float for all newcomers
        self.ping_sent = 0.0
        # While a request's reply waits on the ingest or Redis, later requests wait here in
        # order (None: nothing pending), so replies keep request order and a subscribe
        # answered later is never overtaken by the unsubscribe sent after it.
        self._held: list[tuple[bytes, bool]] | None = None
        # The command token bucket: a full burst to start (one shared number for all).
        self._allowance: float = hub.command_burst
        self._refill_at = 0.0
        self._refused_in_a_row = 0
        #: A session this connection took over with ``resume`` (None: its own, derived from id).
        self.session: str | None = None
        #: When its session's client first connected (Unix ms; a resume carries it over).
        self.since = int(time.time() * 1000)

    def __repr__(self) -> str:
        return f"<ClientConnection #{self.id} {self.peer}>"

    @property
    def subject(self) -> str | None:
        """The token's subject (None without a token)."""
        return self.identity.subject if self.identity is not None else None

    @property
    def peer(self) -> str:
        """``address:port`` of the client (worked out when asked: it is only for logs)."""
        if self._address is not None:
            return self._address
        peer = self._raw.get_extra_info("peername") if self._raw is not None else None
        return f"{peer[0]}:{peer[1]}" if peer else "-"

    # -- picows callbacks -------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        hub = self.hub
        self.transport = transport
        _release_handshake(transport)
        raw = self._raw = transport.underlying_transport
        if hub.closing:
            self.close(WSCloseCode.GOING_AWAY, "gateway shutting down")
            return
        soft = hub.config.slow_consumer_soft_cap_bytes
        raw.set_write_buffer_limits(high=soft, low=soft // 4)
        # The dispatcher writes ready bytes with the socket's own write: a connection is detached
        # from it (so never written to) as soon as it closes.
        self.id = hub.dispatcher.connect(self, self.format, *self._delivery, raw)
        hub.attach(self)
        if hub.auth is not None:
            if self.identity is None:
                hub.auth.awaiting(self)  # its welcome waits for its token
                return
            hub.auth.authenticated(self, self.identity)
        self.welcome()

    def welcome(self) -> None:
        self.send(Reply(type="welcome", session=self.hub.session_of(self), epoch=self.hub.epoch))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.last_seen = time.monotonic()
        kind = frame.msg_type
        if frame.rsv1 or frame.rsv2 or frame.rsv3:  # no extension was negotiated (RFC 6455 5.2)
            self._protocol_error("reserved bits set")
            return
        if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY or kind is WSMsgType.CONTINUATION:
            assembler = self._assembler
            if assembler is None and frame.fin and kind is not WSMsgType.CONTINUATION:
                # A whole message in one frame (picows bounds its size): the common case.
                message, binary = frame.get_payload_as_bytes(), kind is WSMsgType.BINARY
            else:
                if assembler is None:
                    assembler = self._assembler = MessageAssembler(self.hub.config.max_message_bytes)
                try:
                    message = assembler.add(frame)
                except MessageTooLarge:
                    self._assembler = None
                    self.send(error_reply(ErrorCode.FRAME_TOO_LARGE, "message exceeds max_message_bytes"))
                    self.close(CLOSE_TOO_BIG, "message too big")
                    return
                except FramingError as e:
                    self._assembler = None
                    self._protocol_error(str(e))
                    return
                if message is None:
                    return
                binary, self._assembler = assembler.last_binary, None
            if not self.closed:
                self._request(message, binary)
        elif kind is WSMsgType.CLOSE:
            if self.closed:
                # The client's answer to our close: the handshake is done, nothing is left unread.
                transport.disconnect()
                return
            code = frame.get_close_code()
            self._client_closed = True
            self.ended = (int(code), "closed by the client")
            # picows does not answer a peer's close itself; echo it (never code 0 on the wire).
            self.close(WSCloseCode.OK if code == WSCloseCode.NO_INFO else code, "")

    def _protocol_error(self, why: str) -> None:
        """A framing violation: the connection cannot be trusted to stay in step; 1002."""
        self.hub.counters.client_errors += 1
        self.close(WSCloseCode.PROTOCOL_ERROR, why)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        self.hub.detach(self)

    def pause_writing(self) -> None:
        if not self.closed:
            self.hub.paused(self, True)

    def resume_writing(self) -> None:
        if not self.closed:
            self.hub.paused(self, False)

    # -- sending ----------------------------------------------------------------------------

    def send(self, message: Message) -> None:
        """Sends a reply in this connection's format, after anything queued before it."""
        if self.closed or self.transport is None:
            return
        hub = self.hub
        self.write(encode_reply(hub.dispatcher, self.format, message))
        # Replies are not conflated: a client that keeps asking without reading is bounded
        # by the hard cap.
        if self._raw.get_write_buffer_size() > hub.config.max_send_buffer_bytes:
            hub.close_slow(self, "send buffer over max_send_buffer_bytes")

    def _within_rate(self) -> bool:
        """Takes a token from the connection's bucket; False (and a ``rate_limited`` reply, or
        a 1008 close for a client that keeps at it) when it is empty."""
        hub = self.hub
        now = time.monotonic()
        allowance = min(hub.command_burst, self._allowance + (now - self._refill_at) * hub.command_rate)
        self._refill_at = now
        if allowance >= 1.0:
            self._allowance = allowance - 1.0
            self._refused_in_a_row = 0
            return True
        self._allowance = allowance
        self._refused_in_a_row += 1
        hub.counters.rate_limited += 1
        if self._refused_in_a_row >= hub.config.client_abuse_limit:
            log.warning("%r closed: %d commands over its rate limit in a row", self, self._refused_in_a_row)
            self.close(WSCloseCode.POLICY_VIOLATION, f"{ErrorCode.RATE_LIMITED}: too many commands")
        else:
            self.send(
                error_reply(
                    ErrorCode.RATE_LIMITED,
                    f"over {hub.command_rate:g} commands/s (burst {hub.command_burst:g}); not applied",
                )
            )
        return False

    def _request(self, message: bytes, binary: bool) -> None:
        if not self._within_rate():
            return
        held = self._held
        if held is not None:
            if len(held) >= MAX_HELD_REQUESTS:
                self.send(
                    error_reply(
                        ErrorCode.INVALID_MESSAGE,
                        f"over {MAX_HELD_REQUESTS} requests sent while one awaits its reply; not applied",
                    )
                )
            else:
                held.append((message, binary))
            return
        reply, then = commands.handle(message, binary, self, self.hub)
        if reply is None:
            self._held = []  # answered later, through respond_later
        else:
            self.respond(reply, then)

    def respond_later(self, reply: Message | None, then: bytes | None = None) -> None:
        """A reply that waited on the ingest or Redis (None: it waits on more), then the
        requests held meanwhile, in order."""
        if reply is None:
            return
        self.respond(reply, then)
        held, self._held = self._held or [], None
        for i, (message, binary) in enumerate(held):
            if self.closed:
                return
            self._request(message, binary)
            if self._held is not None:  # that one waits too: the rest wait behind it
                self._held.extend(held[i + 1 :])
                return

    def respond(self, reply: Message | None, then: bytes | None = None) -> None:
        """A command's outcome: its reply (None: sent later), then the frames that follow it."""
        if reply is not None:
            self.send(reply)
        if then:
            self.write(then)

    def write(self, frames: bytes) -> None:
        """Ready frames for this client alone (snapshots, a resume's replay), after anything
        queued before them."""
        if self.closed or self._raw is None:
            return
        queued = self.hub.dispatcher.take_outbox(self.id) if self.id else None
        if queued:
            self._raw.write(queued)
        self._raw.write(frames)

    def ping(self) -> None:
        """Asks a silent client whether it is still there (see ``tickgate.edge.liveness``)."""
        if self.transport is not None and not self.closed:
            self.ping_sent = time.monotonic()
            self.transport.send_ping()

    def abort(self) -> None:
        """Drops the connection now, discarding unsent data, and releases its subscriptions."""
        if self.ended is None:
            self.ended = (1006, "dropped by the gateway")
        self.closed = True
        if self.transport is not None:
            self._reset()
        self.hub.detach(self)

    def close(
        self, code: WSCloseCode = WSCloseCode.GOING_AWAY, reason: str = "", reset_after: bool = False
    ) -> None:
        """Sends a close frame and lets the client go. Its subscriptions are released at once.

        When the gateway closes first, the socket stays open (what the client still sends is
        read and dropped) until the client's close frame answers, as RFC 6455 7.1.1 asks:
        closing a socket with unread data makes the kernel send a reset, and a reset can discard
        our close frame in the client's kernel before the client reads it, so the client would
        never learn why (1008, 4001...). A client that does not answer, or has not drained what
        is queued, within the grace period is cut off (reset if data is still waiting, so no
        megabytes of unsent data linger in the kernel after it)."""
        if self.closed or self.transport is None:
            return
        queued = self.hub.dispatcher.take_outbox(self.id) if self.id else None
        if queued and not reset_after:
            self._raw.write(queued)
        if self.ended is None:
            self.ended = (int(code), reason)
        self.closed = True
        transport = self.transport
        transport.send_close(code, reason.encode()[:123])
        self.hub.detach(self)
        if self._client_closed:
            transport.disconnect()  # the client closed first: the handshake ends with our echo
            if self._raw.get_write_buffer_size():
                asyncio.get_running_loop().call_later(CLOSE_GRACE_S, self._reset)
        else:
            asyncio.get_running_loop().call_later(CLOSE_GRACE_S, self._end_close)

    def _end_close(self) -> None:
        """The grace after our close frame is over and the client has not answered."""
        if self._raw.get_write_buffer_size():
            self._reset()
        elif self.transport is not None:
            self.transport.disconnect()

    def _reset(self) -> None:
        transport = self.transport
        if transport is None or transport.is_disconnected:
            return
        sock = transport.underlying_transport.get_extra_info("socket")
        # Closing without the reset still frees our side, if the option cannot be set.
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        transport.disconnect(graceful=False)
