"""What the Python SDK (``tickgate.client``) costs per update it hands its caller, beside the
floor of decoding the same bytes alone, in one run, for each format.

    pytest benches/test_bench_client.py --benchmark-enable --benchmark-json=.benchmarks/client.json

One round is 1,000 mixed updates (quotes, ticks, depth, klines) as the gateway sends them:
JSON pushes, Protobuf ``ServerMessage`` frames, and those zstd-compressed with the built-in
dictionary. The SDK's side is its whole receive path (decode, typed struct, seq check against
duplicates, queue); the floor is ``msgspec.json.decode`` or ``ServerMessage.FromString`` (after
the zstd decompression, for that format) and nothing else.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import zstandard

from benches.feed import RECV_MS, frames
from tickgate import FeedProcessor, proto
from tickgate.client.connection import Client, _Listener
from tickgate.edge.zstd_dictionary import builtin_dictionary

_core = FeedProcessor("itick")
UPDATES = [u for frame in frames(1000) for u in _core.ingest(frame, RECV_MS)[0]]


def _server_message(update: Any) -> bytes:
    """The frame payload the gateway sends for a push (``Update.protobuf`` is the bare Update)."""
    return bytes(proto.ServerMessage(update=proto.Update.FromString(update.protobuf)).SerializeToString())


_zstd = zstandard.ZstdCompressor(
    dict_data=zstandard.ZstdCompressionDict(builtin_dictionary()), write_content_size=True
)
PAYLOADS = {
    "json": [u.json for u in UPDATES],
    "proto": [_server_message(u) for u in UPDATES],
    "proto+zstd": [_zstd.compress(_server_message(u)) for u in UPDATES],
}


def _sdk(protocol: str) -> Any:
    client = Client("ws://127.0.0.1:1/", protocol=protocol, max_pending=10**9)
    listener = _Listener(client)
    client._listener = listener
    if protocol == "proto+zstd":
        dctx = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(builtin_dictionary()))
        client._decompress = dctx.decompress
    binary = protocol != "json"
    receive = client._on_message
    payloads = PAYLOADS[protocol]

    def run() -> int:
        client._last_seq.clear()
        client._updates.clear()
        for payload in payloads:
            receive(listener, payload, binary)
        return len(client._updates)

    return run


def _floor(protocol: str) -> Any:
    payloads = PAYLOADS[protocol]
    if protocol == "json":
        decode = msgspec.json.decode
    elif protocol == "proto":
        decode = proto.ServerMessage.FromString
    else:
        dctx = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(builtin_dictionary()))

        def decode(payload: bytes) -> Any:
            return proto.ServerMessage.FromString(dctx.decompress(payload))

    def run() -> int:
        return sum(1 for payload in payloads if decode(payload) is not None)

    return run


@pytest.mark.parametrize("protocol", list(PAYLOADS))
@pytest.mark.parametrize("impl", ["tickgate-core", "decode-floor"])
def test_client_receive_1000_updates(benchmark: Any, protocol: str, impl: str) -> None:
    """``tickgate-core`` here names the SDK's side (``ratios.py`` divides by it)."""
    benchmark.group = f"client receive 1000 updates ({protocol})"
    benchmark.extra_info.update(updates=len(UPDATES), impl=impl)
    run = _sdk(protocol) if impl == "tickgate-core" else _floor(protocol)
    assert benchmark(run) == len(UPDATES)
