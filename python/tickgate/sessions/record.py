"""``SessionRecord``: what a session holds, in one form for every store (memory, Redis, the
ingest over the bus)."""

from __future__ import annotations

import msgspec


class SessionRecord(msgspec.Struct):
    """A session's subscriptions and delivery state."""

    channels: list[str]
    mode: str
    interval_ms: int
    #: The sequence epoch its seqs belong to.
    epoch: str
    #: When its client first connected, and when it was last seen connected (Unix ms). The
    #: defaults read records written before these were kept.
    connected_ms: int = 0
    seen_ms: int = 0
    #: The last seq handed out to its connection per channel, as its connection went (left
    #: out for channels with something still queued, and in a connected client's saved
    #: record, which is not rewritten per update). A resume uses it for the channels the
    #: client gives no ``last_seq`` for.
    last_seq: dict[str, int] = msgspec.field(default_factory=dict)
    #: The token subject of the client that holds it ("" without auth): only a connection
    #: with the same subject may resume it.
    subject: str = ""


encode_record = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(SessionRecord).decode


def decode_record(raw: bytes) -> SessionRecord | None:
    """The record, or None for bytes that are not one (a store's value from elsewhere)."""
    try:
        return _decode(raw)
    except msgspec.DecodeError:
        return None
