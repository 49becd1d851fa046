"""What the gateway needs from a provider connection, whatever the provider."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Protocol

from tickgate._core import Update


class UpstreamState(StrEnum):
    IDLE = "idle"
    CONNECTING = "connecting"
    AUTHENTICATING = "authenticating"
    READY = "ready"
    BACKOFF = "backoff"
    CLOSED = "closed"


#: Called with each provider frame's updates, in provider order.
UpdateSink = Callable[[list[Update]], None]
#: Called with the channels a provider refused and its reason.
RejectSink = Callable[[list[str], str], None]
#: Called when the feed stops or starts delivering: ``(up, reason)`` (a ``StaleReason`` when
#: down, "" when up).
FeedSink = Callable[[bool, str], None]


class UpstreamAdapter(Protocol):
    name: str

    @property
    def state(self) -> UpstreamState: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def subscribe(self, channels: Iterable[str]) -> None:
        """Adds channels (``SYMBOL:type``) to what the provider streams; idempotent."""

    def unsubscribe(self, channels: Iterable[str]) -> None:
        """Drops channels no client wants any more."""

    def status(self) -> dict[str, object]: ...
