"""Reassembly of fragmented WebSocket messages, shared by the client and provider sides.

picows hands over frames as they arrive (a message split into frames comes as a first frame
with ``fin`` unset, then ``CONTINUATION`` frames); both ends of the gateway need whole
messages, bounded in size.
"""

from __future__ import annotations

from picows import WSFrame, WSMsgType


class MessageTooLarge(Exception):
    """The message being reassembled passed the size limit; its parts were discarded."""


class FramingError(Exception):
    """A fragmentation order RFC 6455 forbids: a new data frame inside an unfinished message,
    or a continuation with no message to continue."""


class MessageAssembler:
    __slots__ = ("_limit", "_parts", "_size", "last_binary")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._parts: list[bytes] | None = None
        self._size = 0
        #: Whether the last whole message returned was BINARY (else TEXT).
        self.last_binary = False

    def add(self, frame: WSFrame) -> bytes | None:
        """Takes a TEXT, BINARY or CONTINUATION frame; returns the whole message once its last
        frame arrived, else None. Raises ``MessageTooLarge`` past the limit and
        ``FramingError`` for frames out of order."""
        payload = frame.get_payload_as_bytes()
        if frame.msg_type is not WSMsgType.CONTINUATION:
            if self._parts is not None:
                self._parts = None
                raise FramingError("a new data frame inside an unfinished fragmented message")
            self.last_binary = frame.msg_type is WSMsgType.BINARY
            if frame.fin:
                return payload
            self._parts, self._size = [payload], len(payload)
            return None
        if self._parts is None:
            raise FramingError("a continuation frame with no message to continue")
        self._parts.append(payload)
        self._size += len(payload)
        if self._size > self._limit:
            self._parts = None
            raise MessageTooLarge(f"message over {self._limit} bytes")
        if not frame.fin:
            return None
        message, self._parts = b"".join(self._parts), None
        return message
