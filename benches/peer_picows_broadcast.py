"""A plain picows broadcast gateway, as a Python developer would write it without tickgate.

Same client protocol as the seed (subscribe/unsubscribe with symbols and types) and the same provider
(iTick protocol). Per upstream frame: json.loads, the seed's push dict, json.dumps once, then
``transport.send(TEXT, payload)`` per receiver (picows frames each send). No coalescing.

    python benches/peer_picows_broadcast.py   (env ITICK_URL, ITICK_TOKEN, PORT)
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect, ws_create_server

UPSTREAM_URL = os.environ.get("ITICK_URL", "ws://127.0.0.1:9100/stock")
TOKEN = os.environ.get("ITICK_TOKEN", "t")
PORT = int(os.environ.get("PORT", "8083"))

receivers: dict[tuple[str, str], set[WSTransport]] = {}  # (symbol, type) -> client transports
sent_upstream: set[tuple[str, str]] = set()
upstream: WSTransport | None = None  # set once the provider accepted our token


def seed_push(m: dict[str, Any]) -> dict[str, Any]:
    """The seed server's field mapping from iTick's short keys."""
    kind = m.get("type")
    if kind == "tick":
        return {"symbol": m["s"], "lastDealPrice": m.get("ld"), "volume": m.get("v"),
                "tradeTime": m.get("t"), "type": "tick"}  # fmt: skip
    if kind == "quote":
        return {"symbol": m["s"], "lastDealPrice": m.get("ld"), "openPrice": m.get("o"),
                "highPrice": m.get("h"), "lowPrice": m.get("l"), "volume": m.get("v"),
                "turnover": m.get("tu"), "tradeTime": m.get("t"), "type": "quote"}  # fmt: skip
    if kind == "depth":
        return {"symbol": m["s"], "ask": m.get("a"), "bid": m.get("b"), "type": "depth"}
    return m


def subscribe_upstream() -> None:
    """Ask the provider for every (symbol, type) clients hold that it was not asked for yet."""
    if upstream is None:
        return  # not authenticated yet: the auth reply triggers this again
    by_type: dict[str, list[str]] = {}
    for symbol, kind in receivers.keys() - sent_upstream:
        by_type.setdefault(kind, []).append(symbol)
        sent_upstream.add((symbol, kind))
    for kind, symbols in by_type.items():
        command = {"ac": "subscribe", "params": ",".join(sorted(symbols)), "types": kind}
        upstream.send(WSMsgType.TEXT, json.dumps(command).encode())


class Upstream(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        global upstream
        if frame.msg_type is not WSMsgType.TEXT:
            return
        msg = json.loads(frame.get_payload_as_bytes())
        data = msg.get("data")
        if msg.get("code") == 1 and isinstance(data, dict) and "type" in data:
            targets = receivers.get((data.get("s"), data["type"]))
            if targets:
                push = {"type": "stock_quote", "data": seed_push(data), "timestamp": int(time.time() * 1000)}
                payload = json.dumps(push).encode()
                for client in targets:
                    client.send(WSMsgType.TEXT, payload)
        elif msg.get("resAc") == "auth" and msg.get("code") == 1:
            upstream = transport
            subscribe_upstream()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        global upstream
        upstream = None
        sent_upstream.clear()  # a new connection starts with no subscriptions


class Client(WSListener):
    def __init__(self) -> None:
        self.keys: set[tuple[str, str]] = set()

    def reply(self, transport: WSTransport, msg: dict[str, Any]) -> None:
        transport.send(WSMsgType.TEXT, json.dumps(msg).encode())

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.CLOSE:
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()
            return
        if frame.msg_type is not WSMsgType.TEXT:
            return
        try:
            msg = json.loads(frame.get_payload_as_bytes())
            action = msg["action"]
            keys = {(s, k) for s in msg.get("symbols", []) for k in msg.get("types") or ["quote"]}
        except (ValueError, KeyError, TypeError):
            self.reply(transport, {"type": "error", "msg": "Invalid JSON format"})
            return
        if action == "subscribe":
            for key in keys - self.keys:
                receivers.setdefault(key, set()).add(transport)
            self.keys |= keys
            subscribe_upstream()
            self.reply(transport, {"type": "success", "msg": "Subscribed"})
        elif action == "unsubscribe":
            self.drop(transport, keys & self.keys)
            self.reply(transport, {"type": "success", "msg": "Unsubscribed"})

    def drop(self, transport: WSTransport, keys: set[tuple[str, str]]) -> None:
        for key in keys:
            receivers[key].discard(transport)
        self.keys -= keys

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.drop(transport, set(self.keys))


async def upstream_loop() -> None:
    while True:
        try:
            transport, _ = await ws_connect(Upstream, UPSTREAM_URL, extra_headers={"token": TOKEN})
            await transport.wait_disconnected()
        except Exception as e:  # refused, handshake failed, ...: retry
            print("upstream:", type(e).__name__, e, flush=True)
        await asyncio.sleep(1.0)


async def main() -> None:
    server = await ws_create_server(
        lambda _request: Client(), "127.0.0.1", PORT, websocket_handshake_timeout=30
    )
    print("picows-broadcast peer listening", PORT, flush=True)
    async with server:
        await upstream_loop()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
