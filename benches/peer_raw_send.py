"""The floor for benches/load_fanout.py: a raw loop writing one pre-built frame per send().

Speaks just enough of the seed's client protocol: each client's subscribe JSON is parsed once, and
for each upstream iTick data frame ONE WebSocket text frame is built, by bytes concatenation (the
upstream data object re-wrapped as ``{"type":"stock_quote","data":<bytes>,"timestamp":ms}``, no JSON
decode or encode), then written with one ``transport.write()`` per receiver. No coalescing, no
backpressure, no validation: only what every gateway has to do per delivery.

    python benches/peer_raw_send.py   (env ITICK_URL, ITICK_TOKEN, PORT)
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import time

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect, ws_create_server

UPSTREAM_URL = os.environ.get("ITICK_URL", "ws://127.0.0.1:9100/stock")
TOKEN = os.environ.get("ITICK_TOKEN", "t")
PORT = int(os.environ.get("PORT", "8082"))

# (symbol, type) as the bytes the upstream sends them -> raw socket transports of the receivers.
receivers: dict[tuple[bytes, bytes], list[asyncio.Transport]] = {}
wanted: set[tuple[str, str]] = set()  # every (symbol, type) some client asked for
sent_upstream: set[tuple[str, str]] = set()
upstream: WSTransport | None = None  # set once the provider accepted our token


def text_frame(payload: bytes) -> bytes:
    """A complete unmasked server-to-client WebSocket text frame (FIN + opcode 1)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def subscribe_upstream() -> None:
    """Send the provider what clients want and it has not been asked for yet, one command per type."""
    if upstream is None:
        return  # not authenticated yet: the auth reply triggers this again
    by_type: dict[str, list[str]] = {}
    for symbol, kind in wanted - sent_upstream:
        by_type.setdefault(kind, []).append(symbol)
    for kind, symbols in by_type.items():
        command = {"ac": "subscribe", "params": ",".join(sorted(symbols)), "types": kind}
        upstream.send(WSMsgType.TEXT, json.dumps(command).encode())
    sent_upstream.update(wanted)


class Upstream(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        global upstream
        if frame.msg_type is not WSMsgType.TEXT:
            return
        p = frame.get_payload_as_bytes()
        s = p.find(b'"data":{"s":"')
        if s < 0:
            # Control frames (greeting, auth and subscribe replies) are rare: decode them properly.
            msg = json.loads(p)
            if msg.get("resAc") == "auth" and msg.get("code") == 1:
                upstream = transport
                subscribe_upstream()
            return
        # Routing keys, found without decoding: "s":"SYM$US" and the data object's "type":"quote".
        sym_end = p.index(b'"', s + 13)
        t = p.rindex(b'"type":"') + 8
        targets = receivers.get((p[s + 13 : sym_end], p[t : p.index(b'"', t)]))
        if not targets:
            return
        data = p[s + 7 : p.rindex(b"}")]  # the data object, up to the outer object's closing brace
        ts = str(int(time.time() * 1000)).encode()
        frame_bytes = text_frame(b'{"type":"stock_quote","data":' + data + b',"timestamp":' + ts + b"}")
        for raw in targets:
            raw.write(frame_bytes)  # one write() (one send syscall when the socket buffer has room)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        global upstream
        upstream = None
        sent_upstream.clear()  # a new connection starts with no subscriptions


class Client(WSListener):
    def __init__(self) -> None:
        self.keys: list[tuple[bytes, bytes]] = []
        self.raw: asyncio.Transport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.raw = transport.underlying_transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.CLOSE:
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()
            return
        if frame.msg_type is not WSMsgType.TEXT or self.keys or self.raw is None:
            return  # only the first subscribe is parsed; nothing else is supported
        try:
            msg = json.loads(frame.get_payload_as_bytes())
            symbols, kinds = list(msg["symbols"]), list(msg.get("types") or ["quote"])
        except (ValueError, KeyError, TypeError):
            transport.send(WSMsgType.TEXT, b'{"type":"error","msg":"Invalid JSON format"}')
            return
        for symbol in symbols:
            for kind in kinds:
                key = (symbol.encode(), kind.encode())
                receivers.setdefault(key, []).append(self.raw)
                self.keys.append(key)
                wanted.add((symbol, kind))
        subscribe_upstream()
        transport.send(WSMsgType.TEXT, b'{"type":"success","msg":"Subscribed"}')

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        for key in self.keys:
            receivers[key].remove(self.raw)  # type: ignore[arg-type]
        self.keys.clear()


async def upstream_loop() -> None:
    while True:
        try:
            transport, _ = await ws_connect(Upstream, UPSTREAM_URL, extra_headers={"token": TOKEN})
            await transport.wait_disconnected()
        except Exception as e:  # refused, handshake failed, ...: retry like a real gateway would
            print("upstream:", type(e).__name__, e, flush=True)
        await asyncio.sleep(1.0)


async def main() -> None:
    server = await ws_create_server(
        lambda _request: Client(), "127.0.0.1", PORT, websocket_handshake_timeout=30
    )
    print("raw-send peer listening", PORT, flush=True)
    async with server:
        await upstream_loop()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
