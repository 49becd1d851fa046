"""Why a client's channels are ``stale``: the one catalogue of the ``reason`` in
``{"type":"status","state":"stale","reason":...}`` (docs/protocol.md lists the same)."""

from __future__ import annotations

from enum import StrEnum


class StaleReason(StrEnum):
    #: The provider connection is down (refused, closed, failing to authenticate).
    UPSTREAM_DOWN = "upstream_down"
    #: The provider connection stopped answering (no pong, nothing received, no data) and was
    #: dropped; it is being re-established.
    PROVIDER_SILENT = "provider_silent"
    #: The primary provider is down and its channels are moving to the backup provider (or
    #: back); also for kinds the backup cannot serve, while it serves the rest.
    FAILING_OVER = "failing_over"
    #: A node's edge lost its ingest process (it is restarted by the supervisor).
    INGEST_DOWN = "ingest_down"
    #: This edge is shedding load (``tickgate.edge.degrade``): level 1 leaves depth and klines
    #: out for immediate-mode clients, level 2 moves them to coarse batches, level 3 sends
    #: periodic refreshes only.
    DEGRADED = "degraded"
