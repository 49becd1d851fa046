"""One iTick client connection: authentication, subscriptions and command handling over picows."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest

from tickgate.framing import MessageAssembler, MessageTooLarge

from . import itick_protocol as protocol
from .market import Symbol

log = logging.getLogger("tickgate.simulate")

MAX_MESSAGE_BYTES = 1 << 20  # commands are tiny; anything bigger is garbage or an attack


class HostConfig(Protocol):
    @property
    def auth_timeout(self) -> float: ...
    @property
    def max_subscriptions(self) -> int: ...


class SessionHost(Protocol):
    """What a session needs from the simulator that owns it (ItickSimulator)."""

    @property
    def config(self) -> HostConfig: ...

    #: Faults (see ``ItickSimulator``).
    answer_auth: bool
    frozen: bool

    def _register(self, session: ItickSession) -> None: ...
    def _unregister(self, session: ItickSession) -> None: ...
    def _record_command(self, command: dict[str, Any]) -> None: ...
    def _accepts_token(self, token: str) -> bool: ...
    def _claim_token(self, owner: ItickSession) -> None: ...
    def _watch(self, session: ItickSession, symbol: Symbol) -> None: ...
    def _unwatch(self, session: ItickSession, canonical: str) -> None: ...


def upgrade_token(request: WSUpgradeRequest) -> str | None:
    """The token sent with the upgrade: the ``token`` header, else the ``token`` query parameter."""
    header = request.headers.get("token", "").strip()
    if header:
        return header
    query = urlsplit(request.path.decode("latin-1")).query
    values = parse_qs(query).get("token")
    if values and values[0].strip():
        return values[0].strip()
    return None


class ItickSession(WSListener):
    """One client connection: its auth state, its subscriptions and the iTick command handling."""

    __slots__ = (
        "_assembler",
        "_auth_timer",
        "_closed",
        "_simulator",
        "_upgrade_token",
        "authenticated",
        "push_types",
        "subscriptions",
        "token",
        "transport",
        "write_paused",
    )

    def __init__(self, simulator: SessionHost, token_from_upgrade: str | None) -> None:
        self._simulator = simulator
        self._upgrade_token = token_from_upgrade
        self.transport: WSTransport | None = None
        self.token: str | None = None
        self.authenticated = False
        self.subscriptions: dict[str, set[str]] = {}
        # The same types as a tuple in push order, rebuilt on every change so the emitter does not sort.
        self.push_types: dict[str, tuple[str, ...]] = {}
        self._auth_timer: asyncio.TimerHandle | None = None
        self._assembler = MessageAssembler(MAX_MESSAGE_BYTES)
        self._closed = False
        self.write_paused = False

    # -- picows callbacks --------------------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self._simulator._register(self)
        self.send(protocol.GREETING)
        if self._upgrade_token is not None:
            self._authenticate(self._upgrade_token)
        else:
            loop = asyncio.get_running_loop()
            self._auth_timer = loop.call_later(self._simulator.config.auth_timeout, self._on_auth_timeout)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        try:
            self._on_frame(frame)
        except Exception:
            # Whatever a client sends, it gets an answer and the simulator keeps running.
            log.exception("iTick simulator failed on a client frame")
            self.send(protocol.INVALID_MESSAGE)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._closed = True
        self._cancel_auth_timer()
        self._simulator._unregister(self)

    def pause_writing(self) -> None:
        # iTick keeps queueing for a slow reader until its limit; the emitter enforces max_buffer.
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False

    # -- sending and closing -----------------------------------------------------------------------------

    def pause_reading(self, paused: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_disconnected:
            return
        raw = transport.underlying_transport
        if paused:
            raw.pause_reading()
        else:
            raw.resume_reading()

    def send(self, frame: bytes) -> None:
        transport = self.transport
        if self._closed or transport is None or transport.is_disconnected:
            return
        if self._simulator.frozen:
            return
        transport.send(WSMsgType.TEXT, frame)

    def write_backlog(self) -> int:
        transport = self.transport
        if transport is None or transport.is_disconnected:
            return 0
        return int(transport.underlying_transport.get_write_buffer_size())

    def close(self, code: int, reason: str, *, abort: bool = False) -> None:
        """Leave the simulator now and end the connection: a close frame then FIN, or a plain abort."""
        if self._closed:
            return
        self._closed = True
        self._cancel_auth_timer()
        self._simulator._unregister(self)
        transport = self.transport
        if transport is None or transport.is_disconnected:
            return
        if abort:
            transport.disconnect(graceful=False)
            return
        transport.send_close(code, reason.encode()[:123])
        transport.disconnect()

    def _cancel_auth_timer(self) -> None:
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None

    def _on_auth_timeout(self) -> None:
        self._auth_timer = None
        if not self.authenticated:
            self.close(WSCloseCode.POLICY_VIOLATION.value, "authentication timeout")

    # -- frames ------------------------------------------------------------------------------------------

    def _on_frame(self, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type == WSMsgType.CLOSE:
            code = frame.get_close_code()
            # Echo the peer's code as RFC 6455 asks; an empty close carries none, answer with a normal one.
            reply = WSCloseCode.OK.value if code == WSCloseCode.NO_INFO else int(code)
            self.close(reply, "")
            return
        if msg_type in (WSMsgType.PING, WSMsgType.PONG):
            return  # picows already answered pings (enable_auto_pong)
        try:
            message = self._assembler.add(frame)
        except MessageTooLarge:
            self.close(WSCloseCode.MESSAGE_TOO_BIG.value, "message too big")
            return
        if message is not None:
            self._on_message(message)

    def _on_message(self, payload: bytes) -> None:
        command = protocol.decode_command(payload)
        if command is None:
            self.send(protocol.INVALID_MESSAGE)
            return
        self._simulator._record_command(command)
        action_text = command.get("ac")
        if not isinstance(action_text, str):
            self.send(protocol.INVALID_MESSAGE)
            return
        action = action_text.strip().lower()
        echoed_action = action_text[:64]  # garbage actions are quoted back, but not at any length
        if action == "auth":
            params = command.get("params")
            self._authenticate(params.strip() if isinstance(params, str) else "")
        elif not self.authenticated:
            self.send(protocol.error_reply(echoed_action, protocol.MSG_NOT_AUTHENTICATED))
        elif action == "subscribe":
            self._subscribe(command)
        elif action == "unsubscribe":
            self._unsubscribe(command)
        elif action == "ping":
            self.send(protocol.pong_reply(command.get("params")))
        else:
            self.send(protocol.error_reply(echoed_action, protocol.MSG_UNKNOWN_ACTION))

    # -- commands ----------------------------------------------------------------------------------------

    def _authenticate(self, token: str) -> None:
        if not self._simulator.answer_auth:
            return  # a fault: the auth is never answered (the auth timer still runs)
        if not self._simulator._accepts_token(token):
            self.send(protocol.AUTH_FAILED)
            self.close(WSCloseCode.POLICY_VIOLATION.value, "auth failed")
            return
        self._cancel_auth_timer()
        self.token = token
        self.authenticated = True
        self.send(protocol.authenticated_reply(token))
        self._simulator._claim_token(self)

    def _subscribe(self, command: dict[str, Any]) -> None:
        try:
            symbols = protocol.parse_symbols(command.get("params"))
            types = protocol.parse_types(command.get("types"))
        except protocol.CommandError as error:
            self.send(protocol.error_reply("subscribe", error.msg))
            return
        added = [symbol for symbol in symbols if symbol.canonical not in self.subscriptions]
        if len(self.subscriptions) + len(added) > self._simulator.config.max_subscriptions:
            self.send(protocol.LIMIT_EXCEEDED)
            return
        for symbol in symbols:
            self._set_types(symbol.canonical, self.subscriptions.get(symbol.canonical, set()) | types)
        for symbol in added:
            self._simulator._watch(self, symbol)
        self.send(protocol.SUBSCRIBED)

    def _unsubscribe(self, command: dict[str, Any]) -> None:
        try:
            symbols = protocol.parse_symbols(command.get("params"))
            # Omitted (or empty) types mean every type of those symbols.
            types = protocol.parse_types(command["types"]) if command.get("types") else None
        except protocol.CommandError as error:
            self.send(protocol.error_reply("unsubscribe", error.msg))
            return
        for symbol in symbols:
            current = self.subscriptions.get(symbol.canonical)
            if current is None:
                continue
            remaining = current - types if types is not None else set()
            if remaining:
                self._set_types(symbol.canonical, remaining)
            else:
                del self.subscriptions[symbol.canonical]
                del self.push_types[symbol.canonical]
                self._simulator._unwatch(self, symbol.canonical)
        self.send(protocol.UNSUBSCRIBED)

    def _set_types(self, canonical: str, types: set[str]) -> None:
        self.subscriptions[canonical] = types
        self.push_types[canonical] = tuple(t for t in protocol.DATA_TYPE_ORDER if t in types)
