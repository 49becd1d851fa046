"""``ClientConnection``: one downstream WebSocket client.

Pushes are the core's ready frames (``Update.json_frame``): the same bytes object goes to
every receiver, with no per-client encoding or framing. Frames pushed during one event-loop
turn are queued and written with one ``writelines`` when the turn ends (the gateway's flush),
so a burst of upstream updates costs each client one syscall, not one per update. Replies to
commands flush the queue first, so a reply never overtakes a push sent before it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import msgspec
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from tickgate.errors import ErrorCode
from tickgate.framing import MessageAssembler, MessageTooLarge
from tickgate.server.protocol import error_message

if TYPE_CHECKING:
    from tickgate.gateway import Gateway

log = logging.getLogger("tickgate.server")
_encode = msgspec.json.Encoder().encode

CLOSE_TOO_BIG = WSCloseCode(1009)
CLOSE_POLICY = WSCloseCode(1008)
#: How long a closing client may take to drain what was queued for it.
CLOSE_GRACE_S = 2.0


class ClientConnection(WSListener):
    __slots__ = (
        "_assembler",
        "_buffer_size",
        "_gateway",
        "_writelines",
        "closed",
        "peer",
        "pending",
        "transport",
    )

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self.transport: WSTransport | None = None
        self.peer = "-"
        self.closed = False
        self.pending: list[bytes] = []
        self._assembler = MessageAssembler(gateway.config.max_message_bytes)

    def __repr__(self) -> str:
        return f"<ClientConnection {self.peer}>"

    # -- picows callbacks -------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        raw = transport.underlying_transport
        self._writelines = raw.writelines
        self._buffer_size = raw.get_write_buffer_size
        peer = raw.get_extra_info("peername")
        if peer:
            self.peer = f"{peer[0]}:{peer[1]}"
        self._gateway._on_client_connected(self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY or kind is WSMsgType.CONTINUATION:
            try:
                message = self._assembler.add(frame)
            except MessageTooLarge:
                self.send_message(
                    error_message(ErrorCode.FRAME_TOO_LARGE, "message exceeds max_message_bytes")
                )
                self.close(CLOSE_TOO_BIG, "message too big")
                return
            if message is not None:
                self._gateway._on_client_message(self, message)
        elif kind is WSMsgType.CLOSE:
            code = frame.get_close_code()
            # picows does not answer a peer's close itself; echo it (never code 0 on the wire).
            self.close(WSCloseCode.OK if code == WSCloseCode.NO_INFO else code, "")

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        self._gateway._on_client_disconnected(self)

    def pause_writing(self) -> None:
        # Slow consumers are handled by the buffer check in push(); picows would otherwise
        # log a warning at every watermark crossing.
        pass

    def resume_writing(self) -> None:
        pass

    # -- sending ----------------------------------------------------------------------------

    def push(self, frame: bytes) -> None:
        """Queues a ready WebSocket frame for this loop turn's flush."""
        if self.closed:
            return
        if not self.pending:
            self._gateway._mark_dirty(self)
        self.pending.append(frame)

    def flush(self) -> None:
        """Writes the queued frames with one syscall."""
        if not self.pending:
            return
        frames, self.pending = self.pending, []
        if self.closed or self.transport is None or self.transport.is_close_frame_sent:
            return
        self._writelines(frames)
        self._check_backlog()

    def _check_backlog(self) -> None:
        """Drops a client whose unsent data passed the limit, whatever filled it (pushes, or
        replies to requests it keeps sending without reading)."""
        limit = self._gateway.config.max_send_buffer_bytes
        if self._buffer_size() > limit:
            log.warning("%r dropped: send buffer over %d bytes", self, limit)
            self._gateway.slow_consumers_dropped += 1
            self.abort()

    def abort(self) -> None:
        """Drops the connection now, discarding unsent data, and releases its subscriptions."""
        self.closed = True
        self.pending = []
        if self.transport is not None:
            self.transport.disconnect(graceful=False)
        self._gateway._release_client(self)

    def send_message(self, message: dict[str, Any]) -> None:
        self.flush()
        if not self.closed and self.transport is not None:
            self.transport.send(WSMsgType.TEXT, _encode(message))
            self._check_backlog()

    def close(self, code: WSCloseCode = WSCloseCode.GOING_AWAY, reason: str = "") -> None:
        """Sends a close frame and lets the client go. Its subscriptions are released at once;
        a client that does not drain what is queued within the grace period is aborted, so
        a peer that stops reading cannot hold the connection open."""
        if self.closed or self.transport is None:
            return
        self.flush()
        self.closed = True
        transport = self.transport
        transport.send_close(code, reason.encode())
        transport.disconnect()
        self._gateway._release_client(self)
        if self._buffer_size():
            asyncio.get_running_loop().call_later(CLOSE_GRACE_S, transport.disconnect, False)
