"""What the edge itself sends a client (command replies and errors), as typed structs, and the
one place they become bytes in the connection's format: JSON text, or a Protobuf
``ServerMessage`` (zstd-compressed on ``+zstd``). Market data never passes here: the core
encodes it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tickgate import proto
from tickgate._core import Dispatcher
from tickgate.errors import ErrorCode

__all__ = ["ErrorReply", "Reply", "StatusMessage", "encode_reply", "error_reply"]

#: The seed's reply to unparsable input; seed clients may match on it.
INVALID_JSON_MSG = "Invalid JSON format"


class Reply(msgspec.Struct, omit_defaults=True):
    """``welcome``, ``success``, ``subscriptions`` and ``pong``: fields a reply does not use are
    left out."""

    type: str
    action: str | msgspec.UnsetType = msgspec.UNSET
    msg: str | msgspec.UnsetType = msgspec.UNSET
    symbols: list[str] | msgspec.UnsetType = msgspec.UNSET
    types: list[str] | msgspec.UnsetType = msgspec.UNSET
    channels: list[str] | msgspec.UnsetType = msgspec.UNSET
    epoch: str | msgspec.UnsetType = msgspec.UNSET
    mode: str | msgspec.UnsetType = msgspec.UNSET
    interval_ms: int | msgspec.UnsetType = msgspec.UNSET
    timestamp: int | msgspec.UnsetType = msgspec.UNSET
    session: str | msgspec.UnsetType = msgspec.UNSET
    recovered: bool | msgspec.UnsetType = msgspec.UNSET
    replayed: int | msgspec.UnsetType = msgspec.UNSET
    reason: str | msgspec.UnsetType = msgspec.UNSET
    #: ``auth``: whom the token names and when it expires (Unix ms).
    subject: str | msgspec.UnsetType = msgspec.UNSET
    expires_ms: int | msgspec.UnsetType = msgspec.UNSET
    #: The request's id, echoed as sent (any JSON value, ``null`` included).
    id: Any = msgspec.UNSET


class ErrorReply(msgspec.Struct, omit_defaults=True, tag="error", tag_field="type"):
    code: str
    msg: str
    channels: list[str] | msgspec.UnsetType = msgspec.UNSET
    id: Any = msgspec.UNSET


class StatusMessage(msgspec.Struct, tag="status", tag_field="type"):
    """The state of a client's channels apart from its socket's: ``stale`` (with a reason,
    e.g. ``ingest_down``) or ``ok`` again."""

    state: str
    reason: str
    channels: list[str]


Message = Reply | ErrorReply | StatusMessage


def error_reply(code: ErrorCode, msg: str, request_id: Any = msgspec.UNSET, **extra: Any) -> ErrorReply:
    return ErrorReply(code=code.value, msg=msg, id=request_id, **extra)


_json = msgspec.json.Encoder().encode


def _proto_id(value: Any) -> str | None:
    """Protobuf ids are strings: a string id as is, any other JSON value as its JSON text."""
    if value is msgspec.UNSET:
        return None
    return value if isinstance(value, str) else _json(value).decode()


def _to_proto(message: Message) -> bytes:
    if isinstance(message, StatusMessage):
        status = proto.Status(state=message.state, reason=message.reason, channels=message.channels)
        return proto.ServerMessage(status=status).SerializeToString()
    fields = {k: v for k, v in msgspec.structs.asdict(message).items() if v is not msgspec.UNSET}
    request_id = _proto_id(fields.pop("id", msgspec.UNSET))
    if request_id is not None:
        fields["id"] = request_id
    if isinstance(message, ErrorReply):
        return proto.ServerMessage(error=proto.Error(**fields)).SerializeToString()
    if "timestamp" in fields:
        fields["timestamp_ms"] = fields.pop("timestamp")
    return proto.ServerMessage(reply=proto.Reply(**fields)).SerializeToString()


def encode_reply(dispatcher: Dispatcher, fmt: str, message: Message) -> bytes:
    """A complete WebSocket frame carrying ``message`` for a connection that speaks ``fmt``."""
    payload = _json(message) if fmt == "json" else _to_proto(message)
    return dispatcher.frame_message(fmt, payload)
