"""The listening socket's router: WebSocket clients at ``/`` and ``/ws``, plain HTTP
``GET /healthz``, ``GET /metrics`` and ``GET /v1/zstd-dictionary`` on the same port.

At the handshake a client chooses its format by subprotocol (``tickgate.v1.proto``,
``tickgate.v1.proto+zstd``; JSON when it asks for none) and may choose batch mode in the URL
(``?mode=batch&interval_ms=500``).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from picows import WSListener, WSUpgradeRequest, WSUpgradeResponse, WSUpgradeResponseWithListener

from tickgate._core import SUBPROTOCOLS, InvalidModeError
from tickgate.auth import AuthFailure, Identity
from tickgate.edge.auth import bearer
from tickgate.edge.connection import ClientConnection
from tickgate.edge.hub import EdgeHub
from tickgate.edge.metrics import CONTENT_TYPE
from tickgate.edge.server import Peer, Router
from tickgate.edge.web import HEADERS as PAGE_HEADERS
from tickgate.edge.web import load_page
from tickgate.edge.zstd_dictionary import PATH as DICTIONARY_PATH

WEBSOCKET_PATHS = frozenset({"/", "/ws"})
#: Sent with 503 at the admission limit: when to try again (seconds).
RETRY_AFTER = {"Retry-After": "5"}
#: Sent with 429 to an address over its new-connection rate.
RETRY_SOON = {"Retry-After": "1"}
TEXT = "text/plain; charset=utf-8"
#: Distinct (mode, interval) pairs shared between connections (more are kept per connection).
MAX_SHARED_DELIVERIES = 256
#: Subprotocol -> format name the core takes.
FORMATS = {name: name.removeprefix("tickgate.v1.") for name in SUBPROTOCOLS}


def _http(
    status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
) -> WSUpgradeResponseWithListener:
    headers = {"Content-Type": content_type, "Cache-Control": "no-store", **(extra or {})}
    if status < 400:
        response = WSUpgradeResponse.create_ok_response(body, extra_headers=headers)
    else:
        response = WSUpgradeResponse.create_error_response(status, body, extra_headers=headers)
    return WSUpgradeResponseWithListener(response, None)


def _bad_request(msg: str) -> WSUpgradeResponseWithListener:
    return _http(400, msg.encode() + b"\n", "text/plain; charset=utf-8")


def _delivery(params: dict[str, list[str]], hub: EdgeHub) -> tuple[str, int] | str:
    """``(mode, interval_ms)`` from the URL's query, or an error text. The core checks the
    mode and the interval, as it does for ``set_mode``."""
    mode = params.get("mode", ["immediate"])[-1]
    raw = params.get("interval_ms", [str(hub.config.batch_interval_ms)])[-1]
    if not raw.lstrip("-").isdigit() or len(raw) > 12:
        return f"interval_ms must be a whole number of milliseconds (got {raw[:32]!r})"
    try:
        hub.dispatcher.check_mode(mode, int(raw))
        if "interval_ms" in params:  # an interval given must be valid, whatever the mode
            hub.dispatcher.check_mode("batch", int(raw))
    except InvalidModeError as e:
        return str(e)
    return mode, int(raw)


def _choose_format(request: WSUpgradeRequest) -> tuple[str, str | None]:
    """The first subprotocol the client offers that tickgate speaks: ``(format, name)``."""
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    for name in (p.strip() for p in offered.split(",")):
        if name in FORMATS:
            return FORMATS[name], name
    return "json", None


def _allowed_origins(text: str | None) -> frozenset[str] | None:
    """The configured origins (None: any)."""
    if text is None:
        return None
    origins = frozenset(o.strip().rstrip("/").lower() for o in text.split(",") if o.strip())
    return None if "*" in origins else origins


def make_router(
    hub: EdgeHub,
    health: Callable[[], dict[str, Any]],
    metrics: Callable[[], bytes],
    zstd_dictionary: bytes | None,
) -> Router:
    # One 101 response per subprotocol, shared by every connection that speaks it: picows keeps
    # the response for the connection's life, and only sets Sec-WebSocket-Accept on it just
    # before writing it out (synchronously), so sharing is safe and saves an object apiece.
    switching = {
        name: WSUpgradeResponse.create_101_response({"Sec-WebSocket-Protocol": name} if name else None)
        for name in (None, *FORMATS)
    }

    # Equal (mode, interval) tuples shared by the connections that asked for them.
    deliveries: dict[tuple[str, int], tuple[str, int]] = {}
    cfg = hub.config
    page = load_page()
    origins = _allowed_origins(cfg.allowed_origins)
    ops_token = cfg.ops_token
    rate = hub.address_rate
    auth = hub.auth
    keep_address = hub.audit is not None

    def identify(
        request: WSUpgradeRequest, params: dict[str, list[str]], address: str
    ) -> Identity | str | None:
        """The identity of a token given at the handshake (None: none given), or why not."""
        assert auth is not None
        token = bearer(request.headers.get("Authorization")) or params.get("token", [""])[-1]
        if not token:
            return None
        found = auth.verify(token, address)
        return found.reason if isinstance(found, AuthFailure) else found

    def ops_allowed(request: WSUpgradeRequest) -> bool:
        if not ops_token:
            return True
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode("utf-8", "replace"), f"Bearer {ops_token}".encode())

    def route(request: WSUpgradeRequest, peer: Peer) -> WSListener | WSUpgradeResponseWithListener:
        path, _, query = request.path.decode("latin-1").partition("?")
        headers = request.headers
        if path in WEBSOCKET_PATHS and "websocket" in headers.get("Upgrade", "").lower():
            # Browsers send "Connection: keep-alive, Upgrade"; picows wants exactly "upgrade".
            tokens = (t.strip().lower() for t in headers.get("Connection", "").split(","))
            if "upgrade" in tokens:
                headers["Connection"] = "Upgrade"
            origin = headers.get("Origin")
            if origins is not None and origin is not None and origin.lower().rstrip("/") not in origins:
                hub.counters.origins_refused += 1
                return _http(403, b"origin not allowed\n", TEXT)
            address = peer[0] if peer else "-"
            if not rate.allows(address):
                return _http(429, b"too many new connections from this address\n", TEXT, RETRY_SOON)
            if not hub.admits():
                return _http(503, b"server full: try again later\n", TEXT, RETRY_AFTER)
            try:
                params = parse_qs(query, max_num_fields=16)
            except ValueError:
                return _bad_request("too many query parameters")
            delivery = _delivery(params, hub)
            if isinstance(delivery, str):
                return _bad_request(delivery)
            identity = identify(request, params, f"{address}:{peer[1] if peer else 0}") if auth else None
            if isinstance(identity, str):
                return _http(
                    401,
                    f"unauthenticated: {identity}\n".encode(),
                    TEXT,
                    {"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
            fmt, subprotocol = _choose_format(request)
            if len(deliveries) < MAX_SHARED_DELIVERIES:
                delivery = deliveries.setdefault(delivery, delivery)
            where = f"{address}:{peer[1]}" if keep_address and peer else None
            conn = ClientConnection(hub, fmt, delivery, identity, where)
            return WSUpgradeResponseWithListener(switching[subprotocol], conn)
        if path in ("/healthz", "/metrics") and not ops_allowed(request):
            return _http(
                401,
                b"a bearer token is needed\n",
                "text/plain; charset=utf-8",
                {"WWW-Authenticate": "Bearer"},
            )
        if path == "/healthz":
            status = health()
            code = 200 if status["status"] == "ok" else 503
            return _http(code, json.dumps(status).encode() + b"\n", "application/json")
        if path == "/metrics":
            return _http(200, metrics(), CONTENT_TYPE)
        if path in page:  # a plain GET of / is a browser asking for the quote page
            body, kind = page[path]
            return _http(200, body, kind, PAGE_HEADERS)
        if path in WEBSOCKET_PATHS:
            return _http(426, b"this endpoint speaks WebSocket\n", TEXT)
        if path == DICTIONARY_PATH:
            if zstd_dictionary is None:
                return _http(
                    404, b"this gateway compresses without a zstd dictionary\n", "text/plain; charset=utf-8"
                )
            return _http(200, zstd_dictionary, "application/octet-stream")
        return _http(404, b"not found\n", "text/plain; charset=utf-8")

    return route
