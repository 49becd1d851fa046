"""The client's commands (python/tickgate/edge/commands.py) and the hub's fan-out, without
sockets or sleeps: a real core ``Dispatcher`` and ``EdgeHub`` with fake connections and a fake
interest (the subscription pool's side)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import pytest

from tickgate import FeedProcessor, proto
from tickgate.bus.base import IngestState
from tickgate.config import GatewayConfig
from tickgate.edge import commands
from tickgate.edge.hub import EdgeHub, make_dispatcher
from tickgate.edge.replies import ErrorReply, Reply

from frames import QUOTE, RECV_MS, TICK, quote, tick

LIMIT = 6


class FakeInterest:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    def add(self, channels: list[str]) -> None:
        self.calls.append(("add", list(channels)))

    def remove(self, channels: list[str]) -> None:
        self.calls.append(("remove", list(channels)))

    def fetch(self, channels: list[str], since: dict[str, int], done: Any, admit: int | None = None) -> bool:
        return False  # no ingest behind this hub: no history to ask

    def taken(self, session: str, subject: str = "") -> None:
        pass


class FakeConn:
    """What the hub and the commands use of a ``ClientConnection``."""

    def __init__(self, fmt: str = "json") -> None:
        self.id = 0
        self.format = fmt
        self.paused = False
        self.sent: list[Any] = []
        self.written: list[bytes] = []
        self.closed_with: tuple[int, str] | None = None
        self.aborted = False
        self.broken = False
        self.closed = False
        self.session: str | None = None
        self.since = 0
        self.identity: Any = None
        self.subject: str | None = None
        self.peer = "127.0.0.1:1"
        self.ended: tuple[int, str] | None = None
        #: Called inside ``write``, as a transport calls ``pause_writing`` when a write crosses
        #: its high watermark.
        self.on_write: Any = None

    def send(self, message: Any) -> None:
        self.sent.append(message)

    def write(self, data: bytes) -> None:
        if self.broken:
            raise ConnectionResetError("peer gone")
        self.written.append(data)
        if self.on_write is not None:
            self.on_write()

    def abort(self) -> None:
        self.aborted = True

    def close(self, code: int, reason: str = "", reset_after: bool = False) -> None:
        self.closed_with = (int(code), reason)


class Setup:
    def __init__(self, **config: Any) -> None:
        self.config = GatewayConfig(max_channels_per_connection=LIMIT, **config)
        self.dispatcher = make_dispatcher(self.config)
        self.interest = FakeInterest()
        self.hub = EdgeHub(self.config, self.dispatcher, self.interest)
        self.hub.on_ingest(IngestState(up=True, epoch="e"))

    def connect(self, fmt: str = "json") -> FakeConn:
        conn = FakeConn(fmt)
        # As the edge does: the core writes ready bytes with the connection's transport.
        conn.id = self.dispatcher.connect(conn, fmt, transport=conn)
        self.hub.attach(conn)  # type: ignore[arg-type]
        return conn

    def handle(self, conn: FakeConn, payload: bytes | dict[str, Any], binary: bool = False) -> Any:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        reply, _then = commands.handle(raw, binary, conn, self.hub)  # type: ignore[arg-type]
        return reply

    def close(self) -> None:
        # Stops the hub's ticker (batch mode schedules one on the running loop).
        self.hub.close_all(1001, "test over")  # type: ignore[arg-type]


@pytest.fixture
def env() -> Iterator[Setup]:
    s = Setup()
    yield s
    s.close()


@pytest.fixture
async def aenv() -> AsyncIterator[Setup]:
    """The same, inside a running event loop (set_mode and publish schedule on it)."""
    s = Setup()
    yield s
    s.close()


def as_json(message: Reply | ErrorReply) -> dict[str, Any]:
    return json.loads(msgspec.json.encode(message))


def pushes(data: bytes) -> list[dict[str, Any]]:
    """The JSON text frames in a buffer of unmasked server frames."""
    out = []
    i = 0
    while i < len(data):
        assert data[i] == 0x81, f"not a final text frame: {data[i]:#x}"
        n, head = data[i + 1] & 0x7F, 2
        if n == 126:
            n, head = int.from_bytes(data[i + 2 : i + 4], "big"), 4
        elif n == 127:
            n, head = int.from_bytes(data[i + 2 : i + 10], "big"), 10
        out.append(json.loads(data[i + head : i + head + n]))
        i += head + n
    assert i == len(data)
    return out


# -- the table ----------------------------------------------------------------------------------

ERRORS: list[tuple[bytes | dict[str, Any], str, Any]] = [
    (b"{not json", "invalid_json", msgspec.UNSET),
    (b"\xff\xfe", "invalid_json", msgspec.UNSET),
    (b"", "invalid_json", msgspec.UNSET),
    (b"[1,2]", "invalid_message", msgspec.UNSET),
    (b'"subscribe"', "invalid_message", msgspec.UNSET),
    (b"42", "invalid_message", msgspec.UNSET),
    # Nested past the decoder's depth: the client's mistake, never "internal".
    (
        b'{"action":"subscribe","symbols":' + b"[" * 1000 + b"]" * 1000 + b"}",
        "invalid_message",
        msgspec.UNSET,
    ),
    ({"symbols": ["AAPL$US"], "id": 1}, "invalid_message", 1),
    ({"action": 5, "id": 2}, "invalid_message", 2),
    ({"action": "teleport", "id": 3}, "unknown_action", 3),
    ({"action": "teleport", "id": None}, "unknown_action", None),
    ({"action": "teleport", "id": {"k": [1]}}, "unknown_action", {"k": [1]}),
    ({"action": "subscribe", "id": "s"}, "invalid_message", "s"),
    ({"action": "subscribe", "symbols": [], "id": "s"}, "invalid_message", "s"),
    ({"action": "subscribe", "symbols": [1, 2]}, "invalid_message", msgspec.UNSET),
    ({"action": "subscribe", "symbols": "AAPL"}, "invalid_symbol", msgspec.UNSET),
    ({"action": "subscribe", "symbols": ["AAPL$US", "NO SUCH"], "id": 7}, "invalid_symbol", 7),
    (
        {"action": "subscribe", "symbols": "AAPL$US,BAD SYM", "types": ["tick"]},
        "invalid_symbol",
        msgspec.UNSET,
    ),
    (
        {"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote", "trades"]},
        "invalid_type",
        msgspec.UNSET,
    ),
    ({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["kline@11"]}, "invalid_type", msgspec.UNSET),
    (
        {"action": "subscribe", "symbols": ["A$US", "B$US", "C$US", "D$US"], "types": ["quote", "tick"]},
        "too_many_subscriptions",
        msgspec.UNSET,
    ),
    ({"action": "unsubscribe", "symbols": ["nope"]}, "invalid_symbol", msgspec.UNSET),
    ({"action": "unsubscribe", "symbols": ["AAPL$US"], "types": ["x"]}, "invalid_type", msgspec.UNSET),
    ({"action": "set_mode", "mode": "turbo", "id": "m"}, "invalid_mode", "m"),
    ({"action": "set_mode", "mode": "batch", "interval_ms": 10}, "invalid_mode", msgspec.UNSET),
    ({"action": "set_mode", "mode": "batch", "interval_ms": 60_001}, "invalid_mode", msgspec.UNSET),
    ({"action": "set_mode", "mode": "batch", "interval_ms": -5}, "invalid_mode", msgspec.UNSET),
    ({"action": "set_mode", "mode": "batch", "interval_ms": 1 << 40}, "invalid_mode", msgspec.UNSET),
    ({"action": "set_mode"}, "invalid_message", msgspec.UNSET),
    ({"action": "set_mode", "mode": "batch", "interval_ms": "fast"}, "invalid_message", msgspec.UNSET),
]


@pytest.mark.parametrize(("payload", "code", "request_id"), ERRORS)
async def test_bad_requests_get_an_error_and_change_nothing(
    aenv: Setup, payload: bytes | dict[str, Any], code: str, request_id: Any
) -> None:
    conn = aenv.connect()
    held = aenv.handle(conn, {"action": "subscribe", "symbols": ["MSFT$US"], "types": ["quote", "depth"]})
    assert held.type == "success"
    aenv.interest.calls.clear()
    errors_before = aenv.hub.counters.client_errors

    reply = aenv.handle(conn, payload)
    assert isinstance(reply, ErrorReply), reply
    assert reply.code == code, (payload, reply)
    assert reply.msg
    assert reply.id == request_id
    body = as_json(reply)
    assert body["type"] == "error" and body["code"] == code
    if request_id is msgspec.UNSET:
        assert "id" not in body
    else:
        assert body["id"] == request_id  # null included
    if code == "invalid_json":
        assert reply.msg == "Invalid JSON format"  # the seed's text
    # Atomic: nothing in the request was applied.
    assert aenv.dispatcher.channels_of(conn.id) == ["MSFT$US:depth", "MSFT$US:quote"]
    assert aenv.interest.calls == []
    assert aenv.dispatcher.mode_of(conn.id)[0] == "immediate"
    assert aenv.hub.counters.client_errors == errors_before + 1


OK: list[tuple[dict[str, Any], dict[str, Any]]] = [
    (
        {
            "action": "subscribe",
            "symbols": ["aapl.us", "700$HK", "AAPL$US"],
            "types": ["tick", "quote"],
            "id": 1,
        },
        {
            "type": "success",
            "action": "subscribe",
            "msg": "Subscribed to 700$HK,AAPL$US",
            "symbols": ["AAPL$US", "700$HK"],
            "types": ["tick", "quote"],
            "channels": ["AAPL$US:tick", "AAPL$US:quote", "700$HK:tick", "700$HK:quote"],
            "epoch": "e",
            "id": 1,
        },
    ),
    (
        {"action": "subscribe", "symbols": "AAPL$US, 700.hk", "types": "quote,tick"},
        {
            "type": "success",
            "action": "subscribe",
            "msg": "Subscribed to 700$HK,AAPL$US",
            "symbols": ["AAPL$US", "700$HK"],
            "types": ["quote", "tick"],
            "channels": ["AAPL$US:quote", "AAPL$US:tick", "700$HK:quote", "700$HK:tick"],
            "epoch": "e",
        },
    ),
    (
        {"action": "subscribe", "symbols": ["600519.SH"]},  # types default to quote
        {
            "type": "success",
            "action": "subscribe",
            "msg": "Subscribed to 600519$SH",
            "symbols": ["600519$SH"],
            "types": ["quote"],
            "channels": ["600519$SH:quote"],
            "epoch": "e",
        },
    ),
    (
        {"action": "query_subscribe", "id": None},
        {"type": "subscriptions", "symbols": [], "types": [], "channels": [], "epoch": "e", "id": None},
    ),
    (
        {"action": "unsubscribe", "symbols": ["AAPL$US"], "id": [1, 2]},
        {
            "type": "success",
            "action": "unsubscribe",
            "msg": "Unsubscribed from AAPL$US",
            "symbols": ["AAPL$US"],
            "channels": [],
            "id": [1, 2],
        },
    ),
    (
        {"action": "set_mode", "mode": "batch", "interval_ms": 200},
        {"type": "success", "action": "set_mode", "mode": "batch", "interval_ms": 200},
    ),
    (
        {"action": "set_mode", "mode": "batch"},  # the configured default interval
        {"type": "success", "action": "set_mode", "mode": "batch", "interval_ms": 500},
    ),
    (
        {"action": "set_mode", "mode": "immediate", "interval_ms": 200},
        {"type": "success", "action": "set_mode", "mode": "immediate"},
    ),
]


@pytest.mark.parametrize(("payload", "expected"), OK)
async def test_good_requests_get_their_reply(
    aenv: Setup, payload: dict[str, Any], expected: dict[str, Any]
) -> None:
    conn = aenv.connect()
    reply = aenv.handle(conn, payload)
    assert isinstance(reply, Reply), reply
    assert as_json(reply) == expected
    assert aenv.hub.counters.client_errors == 0


def test_ping_answers_with_a_timestamp_and_echoes_a_null_id(env: Setup) -> None:
    conn = env.connect()
    pong = as_json(env.handle(conn, {"action": "ping", "id": None}))
    assert pong["type"] == "pong" and pong["id"] is None
    assert pong["timestamp"] > 1_600_000_000_000
    assert "id" not in as_json(env.handle(conn, {"action": "ping"}))


def test_subscribe_unsubscribe_query_without_an_event_loop(env: Setup) -> None:
    a, b = env.connect(), env.connect()
    env.handle(a, {"action": "subscribe", "symbols": ["AAPL$US", "MSFT$US"], "types": ["quote", "tick"]})
    assert env.interest.calls == [("add", ["AAPL$US:quote", "AAPL$US:tick", "MSFT$US:quote", "MSFT$US:tick"])]
    env.handle(b, {"action": "subscribe", "symbols": ["AAPL$US", "TSLA$US"], "types": ["quote"]})
    assert env.interest.calls[1:] == [("add", ["TSLA$US:quote"])]  # only the new channel
    env.handle(b, {"action": "subscribe", "symbols": ["AAPL$US"]})  # held already: no-op
    assert len(env.interest.calls) == 2

    # Unsubscribing with no types: every type held for those symbols.
    reply = as_json(env.handle(a, {"action": "unsubscribe", "symbols": "MSFT.US"}))
    assert reply["channels"] == ["MSFT$US:quote", "MSFT$US:tick"]
    assert env.interest.calls[2:] == [("remove", ["MSFT$US:quote", "MSFT$US:tick"])]
    # AAPL$US:quote is still held by b: no remove for it.
    reply = as_json(
        env.handle(a, {"action": "unsubscribe", "symbols": ["AAPL$US"], "types": ["quote", "depth"]})
    )
    assert reply["channels"] == ["AAPL$US:quote"]
    assert len(env.interest.calls) == 3

    q = as_json(env.handle(a, {"action": "query_subscribe"}))
    assert (q["symbols"], q["types"], q["channels"]) == (["AAPL$US"], ["tick"], ["AAPL$US:tick"])
    q = as_json(env.handle(b, {"action": "query_subscribe"}))
    assert q["channels"] == ["AAPL$US:quote", "TSLA$US:quote"]

    env.hub.detach(a)  # type: ignore[arg-type]
    env.hub.detach(b)  # type: ignore[arg-type]
    env.hub.detach(b)  # type: ignore[arg-type]  # safe twice
    assert env.interest.calls[3:] == [
        ("remove", ["AAPL$US:tick"]),
        ("remove", ["AAPL$US:quote", "TSLA$US:quote"]),
    ]
    assert env.dispatcher.connection_count == 0 and env.dispatcher.channel_count == 0


def test_channel_limit_counts_only_new_channels(env: Setup) -> None:
    conn = env.connect()
    symbols = ["A$US", "B$US", "C$US"]
    assert (
        env.handle(conn, {"action": "subscribe", "symbols": symbols, "types": ["quote", "tick"]}).type
        == "success"
    )
    # At the limit, re-subscribing what is held is fine; one more is not.
    assert (
        env.handle(conn, {"action": "subscribe", "symbols": symbols[:2], "types": ["tick"]}).type == "success"
    )
    err = env.handle(conn, {"action": "subscribe", "symbols": ["A$US", "D$US"], "types": ["quote"]})
    assert err.code == "too_many_subscriptions"
    assert len(env.dispatcher.channels_of(conn.id)) == LIMIT


@pytest.mark.parametrize("fmt", ["proto", "proto+zstd"])
def test_protobuf_requests(env: Setup, fmt: str) -> None:
    conn = env.connect(fmt)
    message = proto.ClientMessage(action="subscribe", symbols=["aapl.us"], types=["tick"], id="x")
    reply = env.handle(conn, message.SerializeToString(), binary=True)
    assert isinstance(reply, Reply) and reply.channels == ["AAPL$US:tick"] and reply.id == "x"
    err = env.handle(conn, proto.ClientMessage(action="fly", id="y").SerializeToString(), binary=True)
    assert (err.code, err.id) == ("unknown_action", "y")
    err = env.handle(conn, proto.ClientMessage(action="ping").SerializeToString() + b"\x0a\xff", binary=True)
    assert err.code == "invalid_message"
    # JSON text still works on a binary subprotocol.
    assert env.handle(conn, {"action": "ping", "id": 5}, binary=False).id == 5


def test_a_binary_frame_on_json_is_read_as_json(env: Setup) -> None:
    conn = env.connect()
    assert env.handle(conn, b'{"action":"ping","id":1}', binary=True).type == "pong"
    err = env.handle(conn, proto.ClientMessage(action="ping").SerializeToString(), binary=True)
    assert err.code == "invalid_json"


# -- fan-out through the hub ------------------------------------------------------------------


async def test_publish_fans_out_to_each_subscriber_only(aenv: Setup) -> None:
    a, b, c = aenv.connect(), aenv.connect(), aenv.connect()
    aenv.handle(a, {"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote", "tick"]})
    aenv.handle(b, {"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]})
    aenv.handle(c, {"action": "subscribe", "symbols": ["MSFT$US"], "types": ["quote"]})
    assert aenv.interest.calls == [
        ("add", ["AAPL$US:quote", "AAPL$US:tick"]),
        ("add", ["MSFT$US:quote"]),
    ]
    processor = FeedProcessor("itick")
    updates = (
        processor.ingest(QUOTE, RECV_MS)[0]
        + processor.ingest(TICK, RECV_MS)[0]
        + processor.ingest(quote("AAPL.US", 226.0), RECV_MS)[0]
    )
    assert [u.channel for u in updates] == ["AAPL$US:quote", "AAPL$US:tick", "AAPL$US:quote"]
    aenv.hub.publish(updates)
    assert aenv.hub.counters.updates_in == 3

    out = {conn: data for conn, data in aenv.dispatcher.flush()}
    assert set(out) == {a, b}  # c holds another channel
    got_a = pushes(out[a])
    assert [(m["data"]["type"], m["data"]["seq"]) for m in got_a] == [("quote", 1), ("tick", 1), ("quote", 2)]
    assert [m["data"]["lastDealPrice"] for m in got_a] == [225.215, 225.2, 226.0]
    assert all(m["type"] == "stock_quote" and m["data"]["symbol"] == "AAPL$US" for m in got_a)
    got_b = pushes(out[b])
    assert [(m["data"]["type"], m["data"]["seq"]) for m in got_b] == [("quote", 1), ("quote", 2)]
    assert out[b] == updates[0].json_frame + updates[2].json_frame  # the core's frames, as is
    assert aenv.dispatcher.flush() == []  # nothing twice

    # Last receivers leaving: one remove per channel, when the last holder goes.
    aenv.handle(a, {"action": "unsubscribe", "symbols": ["AAPL$US"]})
    assert aenv.interest.calls[2:] == [("remove", ["AAPL$US:tick"])]
    aenv.hub.detach(b)  # type: ignore[arg-type]
    assert aenv.interest.calls[3:] == [("remove", ["AAPL$US:quote"])]
    aenv.hub.publish(processor.ingest(tick("AAPL$US", 225.3, 50), RECV_MS)[0])
    assert aenv.dispatcher.flush() == []


async def test_hub_flush_writes_one_buffer_per_connection(aenv: Setup) -> None:
    a = aenv.connect()
    aenv.handle(a, {"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]})
    processor = FeedProcessor("itick")
    for i in range(3):
        aenv.hub.publish(processor.ingest(quote("AAPL$US", 100.0 + i), RECV_MS)[0])
    aenv.hub.flush()
    assert len(a.written) == 1
    assert [m["data"]["seq"] for m in pushes(a.written[0])] == [1, 2, 3]


async def test_leaving_batch_mode_sends_what_was_pending_as_pushes(aenv: Setup) -> None:
    a = aenv.connect()
    aenv.handle(a, {"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote", "tick"]})
    assert aenv.handle(a, {"action": "set_mode", "mode": "batch", "interval_ms": 60_000}).mode == "batch"
    processor = FeedProcessor("itick")
    for i in range(3):
        aenv.hub.publish(processor.ingest(quote("AAPL$US", 100.0 + i), RECV_MS)[0])
        aenv.hub.publish(processor.ingest(tick("AAPL$US", 100.0 + i, 10), RECV_MS)[0])
    assert aenv.dispatcher.flush() == []  # held for the batch
    reply = aenv.handle(a, {"action": "set_mode", "mode": "immediate"})
    assert as_json(reply) == {"type": "success", "action": "set_mode", "mode": "immediate"}
    out = aenv.dispatcher.flush()
    assert [conn for conn, _ in out] == [a]
    got = [(m["data"]["type"], m["data"]["seq"]) for m in pushes(out[0][1])]
    # The latest quote (conflated), then every tick in order.
    assert got == [("quote", 3), ("tick", 1), ("tick", 2), ("tick", 3)]
    assert aenv.dispatcher.stats()["conflated"] == 2


async def test_a_failing_write_drops_only_that_connection(aenv: Setup) -> None:
    a, b = aenv.connect(), aenv.connect()
    for conn in (a, b):
        aenv.handle(conn, {"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]})
    a.broken = True
    aenv.hub.publish(FeedProcessor("itick").ingest(QUOTE, RECV_MS)[0])
    aenv.hub.flush()
    assert a.aborted and not b.aborted
    assert [m["data"]["seq"] for m in pushes(b.written[0])] == [1]


async def test_backpressure_reported_from_inside_a_write_pauses_the_connection(aenv: Setup) -> None:
    """asyncio's transport calls ``pause_writing`` synchronously from ``write`` when the buffer
    crosses the high watermark; the hub must accept that while it is flushing."""
    a, b = aenv.connect(), aenv.connect()
    for conn in (a, b):
        aenv.handle(conn, {"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote", "tick"]})
    a.on_write = lambda: aenv.hub.paused(a, True)  # type: ignore[arg-type]
    processor = FeedProcessor("itick")
    aenv.hub.publish(processor.ingest(QUOTE, RECV_MS)[0])
    aenv.hub.flush()
    assert not a.aborted
    assert a.paused
    assert aenv.dispatcher.stats()["paused_connections"] == 1
    # While paused, a's updates are conflated and held; b gets everything.
    a.on_write = None
    for i in range(3):
        aenv.hub.publish(processor.ingest(quote("AAPL$US", 200.0 + i), RECV_MS)[0])
    aenv.hub.publish(processor.ingest(TICK, RECV_MS)[0])
    aenv.hub.flush()
    assert len(a.written) == 1
    assert [m["data"]["seq"] for m in pushes(b"".join(b.written))] == [1, 2, 3, 4, 1]
    aenv.hub.paused(a, False)  # type: ignore[arg-type]
    aenv.hub.flush()
    got = [(m["data"]["type"], m["data"]["seq"]) for m in pushes(a.written[1])]
    assert got == [("quote", 4), ("tick", 1)]  # the latest state, then the held tick


def test_resume_parses_from_json_and_protobuf() -> None:
    s1 = "1f." + "ab" * 12
    want = commands.Resume(session=s1, epoch="e1", last_seq={"AAPL$US:quote": 5, "AAPL$US:tick": 2**64 - 1})
    binary = proto.ClientMessage(
        action="resume", session=s1, epoch="e1", last_seq={"AAPL$US:quote": 5, "AAPL$US:tick": 2**64 - 1}
    ).SerializeToString()
    assert commands.parse_proto(binary) == want
    text = json.dumps({"action": "resume", "session": s1, "epoch": "e1", "last_seq": want.last_seq})
    assert commands.parse_json(text.encode()) == want
    with pytest.raises(commands.ProtocolError):
        commands.parse_json(b'{"action":"resume","session":"s","last_seq":{}}')  # not an issued form
    for seq in (b"-1", b"18446744073709551616", b"1e30", b'"x"'):
        body = b'{"action":"resume","session":"%s","last_seq":{"A$US:quote":%s}}' % (s1.encode(), seq)
        with pytest.raises(commands.ProtocolError) as refused:
            commands.parse_json(body)
        assert refused.value.code == "invalid_message" and "last_seq" in refused.value.msg


async def test_a_fault_costs_only_its_request_and_its_log_lines_are_throttled(
    aenv: Setup, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from tickgate.edge import commands

    def broken(*_: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(commands, "apply", broken)
    monkeypatch.setattr(commands, "_internal_errors", commands.LogThrottle(commands.log))
    conn = aenv.connect()
    with caplog.at_level("ERROR", logger="tickgate.edge.commands"):
        replies = [aenv.handle(conn, {"action": "ping", "id": i}) for i in range(100)]
    assert all(r.code == "internal" for r in replies) and [r.id for r in replies] == list(range(100))
    assert len([r for r in caplog.records if "request from" in r.getMessage()]) == 1
