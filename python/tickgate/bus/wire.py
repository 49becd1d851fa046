"""Messages of the local bus (``tickgate.bus.server``, ``tickgate.bus.client``): a 5-byte
header (``u32`` length of the body, little-endian, then a ``u8`` type) and the body. Bodies
are JSON, newline-joined channel names, a core bus record, or a JSON header then bytes."""

from __future__ import annotations

import enum
import json
import struct
from collections.abc import Iterator
from typing import Any

HEADER = struct.Struct("<IB")
#: Largest message either side accepts (a record of one event-loop turn's updates is far
#: smaller; anything bigger is a corrupt stream).
MAX_MESSAGE_BYTES = 256 * 1024 * 1024


class Kind(enum.IntEnum):
    # edge -> ingest
    HELLO = 1  # JSON {"version", "worker", "pid"}
    ADD = 2  # channels gaining their first receiver on the edge
    REMOVE = 3  # channels losing their last receiver on the edge
    STATS = 4  # JSON: the edge's figures, for the node-wide view
    FETCH = 5  # JSON {"id", "channels", "since", "admit"?}: history for a client (snapshots, resume)
    TAKEN = 6  # a session id: this edge's client took the session over
    SESSION = 7  # header {"session", "live"}, then the record (empty: none; ``SessionHost.save``)
    CLAIM = 8  # JSON {"id", "session"}: a resume's claim on a session the ingest holds
    # ingest -> edge
    WELCOME = 10  # JSON {"version", "epoch", "feed": {"up", "reason"}}
    UPDATES = 11  # a core bus record
    REFUSED = 12  # JSON {"channels", "reason"}
    NODE = 13  # JSON: the node-wide view (upstream, every worker's figures)
    FETCHED = 14  # header {"id", "gaps", "missed", "refused"?, "added"}, then a core bus record
    TAKEN_ELSEWHERE = 15  # a session id another edge's client took over: close its old connection
    CLAIMED = 16  # header {"id"}, then the record (empty: none)
    FEED = 17  # JSON {"up", "reason", "unserved"}: the provider feed went down or came back


class BusProtocolError(Exception):
    """A peer sent something that is not a bus message (the link is dropped)."""


def message(kind: Kind, body: bytes) -> bytes:
    return HEADER.pack(len(body), kind) + body


def json_message(kind: Kind, value: Any) -> bytes:
    return message(kind, json.dumps(value, separators=(",", ":")).encode())


def headed_message(kind: Kind, header: dict[str, Any], payload: bytes) -> bytes:
    """A JSON header (its length first, ``u32``) and bytes after it ("header" above)."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return message(kind, len(head).to_bytes(4, "little") + head + payload)


def parse_headed(body: bytes) -> tuple[dict[str, Any], bytes]:
    size = int.from_bytes(body[:4], "little")
    return json.loads(body[4 : 4 + size]), body[4 + size :]


def channels_message(kind: Kind, channels: list[str]) -> bytes:
    return message(kind, "\n".join(channels).encode())


def parse_channels(body: bytes) -> list[str]:
    return body.decode().split("\n") if body else []


class Reader:
    """Splits a byte stream into ``(kind, body)`` messages, refusing any over ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self._buf = bytearray()
        self._max = max_bytes

    def feed(self, data: bytes) -> Iterator[tuple[Kind, bytes]]:
        buf = self._buf
        buf += data
        at = 0
        while len(buf) - at >= HEADER.size:
            length, kind = HEADER.unpack_from(buf, at)
            if length > self._max:
                raise BusProtocolError(f"bus message of {length} bytes (limit {self._max})")
            end = at + HEADER.size + length
            if len(buf) < end:
                break
            try:
                k = Kind(kind)
            except ValueError:
                raise BusProtocolError(f"unknown bus message type {kind}") from None
            yield k, bytes(buf[at + HEADER.size : end])
            at = end
        del buf[:at]
