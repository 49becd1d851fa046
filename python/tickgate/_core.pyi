"""Types of the compiled core (rust/py/). Private: import from ``tickgate`` instead."""

from collections.abc import Hashable, Iterable
from typing import Any, Final, Literal, final

__version__: Final[str]
#: The wire schema (proto/tickgate/v1) as a serialized google.protobuf.FileDescriptorSet.
FILE_DESCRIPTOR_SET: Final[bytes]
#: WebSocket subprotocols the edge speaks: tickgate.v1.json, tickgate.v1.proto, tickgate.v1.proto+zstd.
SUBPROTOCOLS: Final[list[str]]
#: Layout version of ``pack_updates`` records, agreed when an edge joins the bus.
BUS_RECORD_VERSION: Final[int]

def error_catalogue() -> list[tuple[str, str]]:
    """The one error-code catalogue, ``[(code, description), ...]`` in order."""

class DecodeError(ValueError):
    """A provider frame or value the core cannot accept."""

    code: str

class InvalidSymbolError(DecodeError):
    """A symbol that is not CODE$REGION / CODE.REGION."""

class InvalidTypeError(DecodeError):
    """A type other than tick, quote, depth, kline@1..kline@10."""

class InvalidModeError(ValueError):
    """A delivery mode or batch interval the gateway does not allow."""

    code: str

FrameLike = bytes | str | bytearray | memoryview

@final
class Update:
    """A normalized, derived, sequenced update. Encodings are computed once and cached."""

    @property
    def kind(self) -> str: ...
    @property
    def symbol(self) -> str: ...
    @property
    def channel(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def epoch(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def event_time_ms(self) -> int: ...
    @property
    def recv_time_ms(self) -> int: ...
    @property
    def json(self) -> bytes: ...
    @property
    def json_frame(self) -> bytes: ...
    @property
    def protobuf(self) -> bytes: ...
    @property
    def protobuf_frame(self) -> bytes: ...
    def to_dict(self) -> dict[str, Any]: ...

@final
class ControlEvent:
    """A provider control frame."""

    kind: Literal["connected", "auth", "subscribe", "unsubscribe", "pong", "notice"]
    ok: bool
    message: str
    params: str | None
    action: str

@final
class FrameError:
    """A frame of a batch that could not be decoded."""

    index: int
    code: str
    message: str

@final
class FeedProcessor:
    """Decode -> normalize -> derive -> sequence for one provider's frames."""

    def __init__(
        self,
        provider: str,
        *,
        epoch: str | None = None,
        max_frame_bytes: int = 1048576,
        max_symbols: int = 1000000,
        max_past_ms: int | None = None,
        max_future_ms: int | None = None,
    ) -> None: ...
    def ingest(
        self, frame: FrameLike, recv_time_ms: int | None = None, provider: str | None = None
    ) -> tuple[list[Update], list[ControlEvent]]:
        """``provider``: the frame's protocol (``itick``, ``finnhub``) when not this one's."""
    def ingest_many(
        self, frames: Iterable[FrameLike], recv_time_ms: int | None = None
    ) -> tuple[list[Update], list[ControlEvent], list[FrameError]]: ...
    def last_seq(self, channel: str) -> int: ...
    def set_symbol_map(self, provider: str, mapping: dict[str, str]) -> None:
        """``{their spelling: our symbol}`` for ``provider``'s frames."""
    def release(self, symbols: list[str]) -> int:
        """Forgets these symbols' state; how many had any. Back later, they are numbered above
        every seq given out before."""
    def mark_gap(self, channels: list[str]) -> None:
        """A hole in each of ``channels``' stream: the next update of each skips one seq."""
    @property
    def epoch(self) -> str: ...
    @property
    def provider(self) -> str: ...
    def stats(self) -> dict[str, Any]:
        """``frames``, ``updates``, ``errors``, ``symbols``, and ``dropped``: updates dropped as
        implausible by reason (``price``, ``volume``, ``time``)."""

@final
class SubscriptionIndex:
    """channel -> connections (any hashable-by-identity objects), with first/last edges."""

    def __init__(self) -> None: ...
    def subscribe(self, conn: Hashable, channels: list[str]) -> list[str]: ...
    def unsubscribe(self, conn: Hashable, channels: list[str]) -> list[str]: ...
    def remove(self, conn: Hashable) -> list[str]: ...
    def receivers(self, channel: str) -> tuple[Any, ...]: ...
    def count(self, channel: str) -> int: ...
    def is_subscribed(self, conn: Hashable, channel: str) -> bool: ...
    def channels_of(self, conn: Hashable) -> list[str]: ...
    def channels(self) -> list[str]: ...
    @property
    def channel_count(self) -> int: ...
    @property
    def connection_count(self) -> int: ...
    def __len__(self) -> int: ...

@final
class Dispatcher:
    """The fan-out: subscriptions, one outbox per connection, conflation and batches."""

    def __init__(
        self,
        *,
        soft_cap_bytes: int,
        tick_cap: int,
        lag_deadline_ms: int,
        wheel_tick_ms: int,
        min_interval_ms: int,
        max_interval_ms: int,
        zstd_dictionary: bytes | None = None,
    ) -> None: ...
    def connect(
        self,
        handle: Any,
        format: str = "json",
        mode: str = "immediate",
        interval_ms: int = 500,
        transport: Any = None,
    ) -> int: ...
    def handle_of(self, conn: int) -> Any: ...
    def disconnect(self, conn: int) -> list[str]: ...
    def subscribe(self, conn: int, channels: list[str]) -> list[str]: ...
    def unsubscribe(self, conn: int, channels: list[str]) -> list[str]: ...
    def drop_channels(self, channels: list[str]) -> list[tuple[Any, list[str]]]: ...
    def channels_of(self, conn: int) -> list[str]: ...
    def is_subscribed(self, conn: int, channel: str) -> bool: ...
    def channels(self) -> list[str]: ...
    def check_mode(self, mode: str, interval_ms: int = 500) -> None: ...
    def set_mode(self, conn: int, mode: str, interval_ms: int = 500) -> None: ...
    def mode_of(self, conn: int) -> tuple[str, int] | None: ...
    def set_paused(self, conn: int, paused: bool) -> None: ...
    def set_shedding(self, level: int) -> None:
        """Load shedding: 1-2 leave depth and klines out for immediate-mode connections, 3
        delivers nothing live."""
    def lagging(self) -> list[Any]: ...
    def publish(self, updates: list[Update]) -> int: ...
    def publish_packed(self, record: bytes) -> tuple[int, int]:
        """Fans out a bus record from ``pack_updates``: ``(updates, receivers reached)``;
        raises ``DecodeError`` if it is corrupt."""
    def frames_for(
        self, conn: int, updates: list[Update], snapshot: bool = False, refresh: bool = False
    ) -> bytes | None:
        """``updates`` for ``conn`` alone in its format: snapshots, refreshes (data back after
        its channels were stale), or a resume's missed updates."""
    def delivered(self, conn: int) -> dict[str, int]:
        """``{channel: seq}`` last handed out to ``conn``, for channels with nothing queued."""
    def take_outbox(self, conn: int) -> bytes | None: ...
    def flush(self) -> list[tuple[Any, bytes]]: ...
    def write_out(self) -> list[tuple[Any, BaseException]]: ...
    def frame_message(self, format: str, payload: bytes) -> bytes: ...
    @property
    def zstd_dictionary_id(self) -> int | None: ...
    @property
    def wheel_tick_ms(self) -> int: ...
    @property
    def connection_count(self) -> int: ...
    @property
    def channel_count(self) -> int: ...
    @property
    def subscription_count(self) -> int: ...
    def stats(self) -> dict[str, int]: ...

@final
class ReplayRing:
    """Each channel's recent updates (by age and total size) and every channel's latest."""

    def __init__(self, *, window_ms: int, max_bytes: int) -> None: ...
    def append(self, updates: list[Update]) -> None: ...
    def evict(self) -> None: ...
    def since(self, channel: str, after_seq: int, last_seq: int) -> list[Update] | None: ...
    def latest(self, channel: str) -> Update | None: ...
    def forget_symbols(self, symbols: list[str]) -> None:
        """Drops everything held for every channel of ``symbols``."""
    def stats(self) -> dict[str, int]: ...

def normalize_symbol(raw: str) -> str: ...
def normalize_type(raw: str) -> str: ...
def make_channel(symbol: str, type: str) -> str: ...
def split_channel(channel: str) -> tuple[str, str]: ...
def ws_frame(payload: bytes, binary: bool = False) -> bytes: ...
def pack_updates(updates: list[Update]) -> bytes:
    """One bus record: the updates with their JSON and Protobuf encodings."""

def unpack_updates(record: bytes) -> list[Update]:
    """The updates of a bus record, encodings in place; ``DecodeError`` if corrupt."""
