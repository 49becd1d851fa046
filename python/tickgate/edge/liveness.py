"""Finding half-open clients with one timer for all connections.

A client that vanished without a FIN (a laptop lid closed, a NAT entry dropped) holds its socket
and subscriptions forever unless the server asks. Every ``sweep period`` one pass over the open
connections pings each client silent for ``client_ping_interval`` and drops each one that has
not answered a ping within ``client_pong_timeout``. Any frame from the client counts as an answer.

One timer, not one per connection: a per-connection timer (picows's auto-ping) costs about 2 KB
per idle client, 200 MB at 100k clients. A client is pinged between one and one-and-a-half ping
intervals after its last frame, and dropped within pong timeout plus half a sweep period.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tickgate.edge.connection import ClientConnection

__all__ = ["Liveness"]

log = logging.getLogger("tickgate.edge")


class Liveness:
    def __init__(
        self, connections: Iterable[ClientConnection], ping_interval: float, pong_timeout: float
    ) -> None:
        self._connections = connections
        self._ping_interval = ping_interval
        self._pong_timeout = pong_timeout
        self._period = min(ping_interval, pong_timeout) / 2
        self._timer: asyncio.TimerHandle | None = None
        #: Clients dropped for not answering a ping.
        self.dropped = 0
        #: When the last sweep ran (monotonic seconds): a new client's first "last seen",
        #: shared by all (at most one period early, so at worst pinged a little sooner).
        self.now = time.monotonic()

    def start(self) -> None:
        """Starts sweeping (idempotent; needs a running loop)."""
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._period, self._sweep)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _sweep(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self._period, self._sweep)
        now = self.now = time.monotonic()
        silent_since = now - self._ping_interval
        overdue_since = now - self._pong_timeout
        for conn in list(self._connections):
            if conn.closed:
                continue
            pinged = conn.ping_sent
            if pinged:
                if conn.last_seen >= pinged:
                    conn.ping_sent = 0.0  # answered (a pong, or any frame)
                elif pinged <= overdue_since:
                    self.dropped += 1
                    log.debug("%r did not answer a ping within %.0f s; dropping it", conn, self._pong_timeout)
                    conn.abort()
                continue
            if conn.last_seen <= silent_since:
                conn.ping()
