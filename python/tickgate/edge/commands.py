"""The client's commands: typed msgspec structs tagged by ``action``, parsed from a JSON text
frame or a Protobuf ``ClientMessage``, and applied by one ``match`` with what they need passed
in (the connection and the hub).

Bad input never raises out of here: every problem becomes an ``error`` reply to that client
alone, with a code from the catalogue. Requests are atomic: if anything in one is invalid,
nothing in it is applied.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from tickgate import proto
from tickgate._core import DecodeError, InvalidModeError, make_channel, normalize_symbol, normalize_type
from tickgate._core import split_channel as _split_channel
from tickgate.edge.auth import authenticate, refuse
from tickgate.edge.replies import INVALID_JSON_MSG, ErrorReply, Reply, error_reply
from tickgate.edge.resume import resume, subscribe_with_snapshots
from tickgate.errors import ErrorCode
from tickgate.logs import LogThrottle
from tickgate.sessions.ids import SESSION_ID_PATTERN

if TYPE_CHECKING:
    from tickgate.edge.connection import ClientConnection
    from tickgate.edge.hub import EdgeHub

log = logging.getLogger("tickgate.edge.commands")

DEFAULT_TYPES = ("quote",)
#: The most items any list in a request may hold as it is parsed; what a request may name is
#: the narrower ``max_symbols_per_request`` (config).
MAX_ITEMS_PER_REQUEST = 10_000

#: A list of strings, or one comma-separated string (iTick's own style).
Names = Annotated[list[str], msgspec.Meta(max_length=MAX_ITEMS_PER_REQUEST)] | str


class _Command(msgspec.Struct, tag_field="action", kw_only=True):
    id: Any = msgspec.UNSET


class Subscribe(_Command, tag="subscribe"):
    symbols: Names
    types: Names | None = None


class Unsubscribe(_Command, tag="unsubscribe"):
    symbols: Names
    #: None: every type the client holds for those symbols.
    types: Names | None = None


class QuerySubscribe(_Command, tag="query_subscribe"):
    pass


class Ping(_Command, tag="ping"):
    pass


class SetMode(_Command, tag="set_mode"):
    mode: str
    interval_ms: int | None = None


#: A seq as the core numbers them: 0 <= seq < 2^64 (msgspec bounds only fit int64: the top in
#: ``Resume.__post_init__``).
Seq = Annotated[int, msgspec.Meta(ge=0)]
SEQ_LIMIT = 1 << 64


class Resume(_Command, tag="resume"):
    #: A session id as welcomes give them (``tickgate.sessions.ids``).
    session: Annotated[str, msgspec.Meta(pattern=SESSION_ID_PATTERN)]
    epoch: Annotated[str, msgspec.Meta(max_length=64)] = ""
    #: The last seq received per channel (``SYMBOL:type``).
    last_seq: Annotated[
        dict[Annotated[str, msgspec.Meta(max_length=64)], Seq], msgspec.Meta(max_length=MAX_ITEMS_PER_REQUEST)
    ] = {}

    def __post_init__(self) -> None:
        # Checked as the request is read, before anything is taken: a resume refused here
        # leaves the session as it was.
        for channel, seq in self.last_seq.items():
            if seq >= SEQ_LIMIT:
                raise ValueError(f"a seq must be below 2^64 (`last_seq` of {channel[:64]!r})")


class Auth(_Command, tag="auth"):
    token: Annotated[str, msgspec.Meta(max_length=8192)]


Command = Subscribe | Unsubscribe | QuerySubscribe | Ping | SetMode | Resume | Auth
ACTIONS = ("subscribe", "unsubscribe", "query_subscribe", "ping", "set_mode", "resume", "auth")
#: A reply, and frames for this client alone to follow it (snapshots, a resume's replay).
Outcome = tuple[Reply | ErrorReply | None, bytes | None]


class ProtocolError(Exception):
    def __init__(self, code: ErrorCode, msg: str, request_id: Any = msgspec.UNSET) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        #: The request's id when it could be read, so the error echoes it.
        self.request_id = request_id


_decode_json = msgspec.json.Decoder().decode
_internal_errors = LogThrottle(log)


def _command(fields: dict[str, Any]) -> Command:
    """A command from a request's fields, whichever encoding they came in."""
    request_id = fields.get("id", msgspec.UNSET)
    action = fields.get("action")
    if not isinstance(action, str):
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, '"action" is required and must be a string', request_id
        )
    if action not in ACTIONS:
        raise ProtocolError(
            ErrorCode.UNKNOWN_ACTION,
            f"unknown action {action[:40]!r}; known: {', '.join(ACTIONS)}",
            request_id,
        )
    try:
        return msgspec.convert(fields, Command)
    except msgspec.ValidationError as e:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"invalid request: {e}", request_id) from None


def parse_json(payload: bytes) -> Command:
    """A command from a JSON request; raises ``ProtocolError`` with the catalogue code."""
    try:
        fields = _decode_json(payload)
    except msgspec.DecodeError:
        raise ProtocolError(ErrorCode.INVALID_JSON, INVALID_JSON_MSG) from None
    except RecursionError:  # the client's bytes, not a gateway fault (and no traceback per message)
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "a request nested too deeply") from None
    if not isinstance(fields, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "a request must be a JSON object")
    return _command(fields)


def parse_proto(payload: bytes) -> Command:
    """A command from a Protobuf ``ClientMessage``; raises ``ProtocolError``."""
    try:
        m = proto.ClientMessage.FromString(payload)
    except Exception:  # protobuf raises its own DecodeError; any failure is the client's bytes
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "not a tickgate.v1.ClientMessage") from None
    fields: dict[str, Any] = {"action": m.action}
    if m.HasField("id"):
        fields["id"] = m.id
    # proto3 cannot tell an empty list or 0 from absent: absent it is.
    for name in ("symbols", "types", "mode", "interval_ms", "session", "epoch", "last_seq", "token"):
        value = getattr(m, name)
        if value:
            fields[name] = list(value) if name in ("symbols", "types") else value
    if "last_seq" in fields:
        fields["last_seq"] = dict(fields["last_seq"])
    return _command(fields)


# -- applying ---------------------------------------------------------------------------------


def _names(value: list[str] | str) -> list[str]:
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    return value


def _canonical(raw: list[str] | str, normalize: Any, code: ErrorCode, key: str, limit: int) -> list[str]:
    """Canonical spellings, duplicates removed, first occurrence kept."""
    items = _names(raw)
    if not items:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f'"{key}" must not be empty')
    if len(items) > limit:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, f'"{key}" names {len(items)} items; at most {limit} per request'
        )
    try:
        return list(dict.fromkeys(normalize(item) for item in items))
    except DecodeError as e:
        raise ProtocolError(code, str(e)) from None


def describe(channels: list[str]) -> dict[str, list[str]]:
    """``symbols``/``types``/``channels`` lists (sorted) for replies."""
    symbols, types = set(), set()
    for ch in channels:
        symbol, kind = _split_channel(ch)
        symbols.add(symbol)
        types.add(kind)
    return {"symbols": sorted(symbols), "types": sorted(types), "channels": sorted(channels)}


def _symbols(cmd: Subscribe | Unsubscribe, hub: EdgeHub) -> list[str]:
    limit = hub.config.max_symbols_per_request
    return _canonical(cmd.symbols, normalize_symbol, ErrorCode.INVALID_SYMBOL, "symbols", limit)


def _types(raw: list[str] | str, hub: EdgeHub) -> list[str]:
    return _canonical(
        raw, normalize_type, ErrorCode.INVALID_TYPE, "types", hub.config.max_symbols_per_request
    )


def _subscribe(cmd: Subscribe, conn: ClientConnection, hub: EdgeHub) -> Outcome:
    symbols = _symbols(cmd, hub)
    types = _types(cmd.types or list(DEFAULT_TYPES), hub)
    entitled = conn.identity.entitlements if conn.identity is not None else None
    refused = entitled.refused(symbols) if entitled is not None else None
    if refused:
        if hub.auth is not None:
            hub.auth.counters.not_entitled += 1
        shown = ", ".join(refused[:10]) + (f" and {len(refused) - 10} more" if len(refused) > 10 else "")
        raise ProtocolError(ErrorCode.NOT_ENTITLED, f"your token does not entitle you to {shown}")
    channels = [make_channel(s, t) for s in symbols for t in types]
    dispatcher = hub.dispatcher
    held = dispatcher.channels_of(conn.id)
    new = [c for c in channels if not dispatcher.is_subscribed(conn.id, c)]
    limit = hub.config.max_channels_per_connection
    if len(held) + len(new) > limit:
        raise ProtocolError(
            ErrorCode.TOO_MANY_SUBSCRIPTIONS,
            f"subscribing {len(new)} more channels would exceed the limit of {limit} "
            f"per connection (holding {len(held)})",
        )
    mine = describe(sorted({*held, *new}))
    reply = Reply(
        type="success",
        action="subscribe",
        msg=f"Subscribed to {','.join(mine['symbols'])}",
        symbols=symbols,
        types=types,
        channels=channels,
        epoch=hub.epoch,
    )
    if not new:
        return reply, None
    # Channels new to the client are subscribed once the ingest admitted them upstream and its
    # history answered (at once in one process; over the bus in a node): the reply, then the
    # latest of each (a board fills at once), then live updates.
    return subscribe_with_snapshots(conn, hub, new, reply, cmd.id)


def _unsubscribe(cmd: Unsubscribe, conn: ClientConnection, hub: EdgeHub) -> Reply:
    symbols = _symbols(cmd, hub)
    held = hub.dispatcher.channels_of(conn.id)
    if cmd.types is None:
        wanted = set(symbols)
        channels = [c for c in held if _split_channel(c)[0] in wanted]
    else:
        types = _types(cmd.types, hub)
        held_set = set(held)
        channels = [c for c in (make_channel(s, t) for s in symbols for t in types) if c in held_set]
    hub.unsubscribe(conn, channels)
    return Reply(
        type="success",
        action="unsubscribe",
        msg=f"Unsubscribed from {','.join(symbols)}",
        symbols=symbols,
        channels=sorted(channels),
    )


def _set_mode(cmd: SetMode, conn: ClientConnection, hub: EdgeHub) -> Reply:
    interval = cmd.interval_ms if cmd.interval_ms is not None else hub.config.batch_interval_ms
    try:
        hub.dispatcher.set_mode(conn.id, cmd.mode, interval)
    except (InvalidModeError, OverflowError) as e:  # OverflowError: beyond 64 bits
        raise ProtocolError(ErrorCode.INVALID_MODE, str(e)) from None
    hub.status.chose_mode(conn)
    hub.mode_changed(conn)
    mode, interval_ms = hub.dispatcher.mode_of(conn.id) or ("immediate", 0)
    reply = Reply(type="success", action="set_mode", mode=mode)
    if mode == "batch":
        reply.interval_ms = interval_ms
    return reply


def apply(command: Command, conn: ClientConnection, hub: EdgeHub) -> Outcome:
    """Carries out one command; raises ``ProtocolError`` for the client's mistakes."""
    if hub.auth is not None and conn.identity is None and not isinstance(command, Auth):
        refuse(conn, hub, "no_token", 'send {"action":"auth","token":"..."} first')
        return None, None
    match command:
        case Subscribe():
            return _subscribe(command, conn, hub)
        case Unsubscribe():
            return _unsubscribe(command, conn, hub), None
        case QuerySubscribe():
            channels = hub.dispatcher.channels_of(conn.id)
            return Reply(type="subscriptions", **describe(channels), epoch=hub.epoch), None
        case Ping():
            return Reply(type="pong", timestamp=int(time.time() * 1000)), None
        case SetMode():
            return _set_mode(command, conn, hub), None
        case Resume():
            return resume(command, conn, hub)
        case Auth():
            return authenticate(command.token, conn, hub)


def handle(payload: bytes, binary: bool, conn: ClientConnection, hub: EdgeHub) -> Outcome:
    """One client message in; the reply out (an error reply for anything wrong), with any
    frames that follow it."""
    request_id: Any = msgspec.UNSET
    try:
        command = parse_proto(payload) if binary and conn.format != "json" else parse_json(payload)
        request_id = command.id
        reply, then = apply(command, conn, hub)
    except ProtocolError as e:
        hub.counters.client_errors += 1
        if e.request_id is not msgspec.UNSET:
            request_id = e.request_id
        return error_reply(e.code, e.msg, request_id), None
    except Exception:
        # A bug must cost this one request, not the connection or the gateway.
        # Throttled: a client that finds a way to trigger it must not flood the log.
        _internal_errors.log(logging.ERROR, "request from %r failed", conn, exc_info=True)
        hub.counters.client_errors += 1
        return error_reply(ErrorCode.INTERNAL, "internal error; request not applied", request_id), None
    if isinstance(reply, Reply):  # None: it is sent later (an answer over the bus, Redis)
        reply.id = request_id
    return reply, then
