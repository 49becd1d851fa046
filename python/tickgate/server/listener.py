"""The listening socket's router: WebSocket clients at ``/`` and ``/ws``, plain HTTP
``GET /healthz`` and ``GET /metrics`` on the same port."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from picows import WSListener, WSUpgradeRequest, WSUpgradeResponse, WSUpgradeResponseWithListener

from tickgate.server.connection import ClientConnection
from tickgate.server.metrics import CONTENT_TYPE, render

if TYPE_CHECKING:
    from tickgate.gateway import Gateway

WEBSOCKET_PATHS = frozenset({"/", "/ws"})


def _http(status: int, body: bytes, content_type: str) -> WSUpgradeResponseWithListener:
    headers = {"Content-Type": content_type, "Cache-Control": "no-store"}
    if status < 400:
        response = WSUpgradeResponse.create_ok_response(body, extra_headers=headers)
    else:
        response = WSUpgradeResponse.create_error_response(status, body, extra_headers=headers)
    return WSUpgradeResponseWithListener(response, None)


def make_router(gateway: Gateway):
    def route(request: WSUpgradeRequest) -> WSListener | WSUpgradeResponseWithListener:
        path = request.path.decode("latin-1").partition("?")[0]
        if path in WEBSOCKET_PATHS:
            headers = request.headers
            if "websocket" not in headers.get("Upgrade", "").lower():
                return _http(426, b"this endpoint speaks WebSocket\n", "text/plain; charset=utf-8")
            # Browsers send "Connection: keep-alive, Upgrade"; picows wants exactly "upgrade".
            tokens = (t.strip().lower() for t in headers.get("Connection", "").split(","))
            if "upgrade" in tokens:
                headers["Connection"] = "Upgrade"
            return ClientConnection(gateway)
        if path == "/healthz":
            health = gateway.health()
            status = 200 if health["status"] == "ok" else 503
            return _http(status, json.dumps(health).encode() + b"\n", "application/json")
        if path == "/metrics":
            return _http(200, render(gateway.metrics_registry), CONTENT_TYPE)
        return _http(404, b"not found\n", "text/plain; charset=utf-8")

    return route
