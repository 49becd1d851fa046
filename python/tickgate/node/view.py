"""One node, one view: the figures ``/healthz`` and ``/metrics`` report, whichever process
answers. In one process they are the edge's and the ingest's own; in a node of workers an
edge merges its live figures with the latest the ingest relayed from every other edge
(``BusServer.view``, at most ``node_view_interval`` old)."""

from __future__ import annotations

import os
from typing import Any

#: Per-worker figures that are not summed into the node's.
NOT_SUMMED = frozenset(
    {"pid", "max_connections_per_worker", "redis_up", "degradation_level", "stale_channels"}
)
#: What the upstream looks like before the ingest has said anything.
UPSTREAM_UNKNOWN = {
    "provider": "unknown",
    "state": "unknown",
    "reconnects": 0,
    "frames_in": 0,
    "decode_errors": 0,
    "dropped": {},
}
_PAGE = os.sysconf("SC_PAGE_SIZE")


#: Per-worker figures counted by a label (``{"expired": 3, ...}``), summed label by label.
SUMMED_BY_LABEL = ("auth_failed",)


def rss_bytes() -> int:
    """This process's resident memory."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def process_figures() -> dict[str, int]:
    return {"pid": os.getpid(), "rss_bytes": rss_bytes()}


def merge_workers(workers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The node's figures: every worker's numbers summed."""
    total: dict[str, Any] = {}
    for stats in workers.values():
        for key, value in stats.items():
            if key not in NOT_SUMMED and isinstance(value, int | float) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
            elif key in SUMMED_BY_LABEL:
                into = total.setdefault(key, {})
                for label, count in value.items():
                    into[label] = into.get(label, 0) + count
    return total


def node_stats(worker: str, own: dict[str, Any], relayed: dict[str, Any], ingest_up: bool) -> dict[str, Any]:
    """The node's figures as seen from edge ``worker``: its own live ``own`` figures and the
    ingest's ``relayed`` view (empty until the first one arrives)."""
    workers = dict(relayed.get("workers", {}))
    workers[worker] = own
    total = merge_workers(workers)
    # Channels are the pool's (one per channel however many edges hold it).
    total["channels"] = relayed.get("channels", own["channels"])
    total["upstream"] = relayed.get("upstream", UPSTREAM_UNKNOWN)
    total["ingest"] = relayed.get("ingest", {})
    # Redis is up for the node when every worker reaches it (-1: no Redis).
    total["redis_up"] = min(w.get("redis_up", -1) for w in workers.values())
    # The node is as degraded as its most loaded edge.
    total["degradation_level"] = max(w.get("degradation_level", 0) for w in workers.values())
    # Edges hold overlapping channels: the most any edge has stale.
    total["stale_channels"] = max(w.get("stale_channels", 0) for w in workers.values())
    total["stale_reason"] = own.get("stale_reason", "")
    for key in ("sessions_detached", "sessions_expired"):  # the ingest holds them (no Redis)
        if key in total["ingest"]:
            total[key] = total["ingest"][key]
    total["ingest_up"] = ingest_up
    total["workers"] = workers
    return total


def sessions_health(stats: dict[str, Any]) -> dict[str, Any]:
    """Where sessions are and whether that store answers. Redis being down never stops live
    data (sessions wait in memory), so it shows here rather than in ``status``."""
    redis_up = stats.get("redis_up", -1)
    out: dict[str, Any] = {
        "store": "memory" if redis_up < 0 else "redis",
        "detached": stats.get("sessions_detached", 0),
    }
    if redis_up >= 0:
        out["redis"] = "up" if redis_up else "down"
    return out


def health_of(stats: dict[str, Any], epoch: str) -> dict[str, Any]:
    """``/healthz``: ``ok`` while the upstream is ready (and, in a node, the ingest joined)."""
    ready = stats["upstream"]["state"] == "ready" and stats.get("ingest_up", True)
    out = {
        "status": "ok" if ready else "degraded",
        "epoch": epoch,
        "upstream": stats["upstream"],
        "connections": stats["connections"],
        "subscriptions": {"channels": stats["channels"], "pairs": stats["subscriptions"]},
        "sessions": sessions_health(stats),
        "degradation_level": stats.get("degradation_level", 0),
        "stale": {"channels": stats.get("stale_channels", 0), "reason": stats.get("stale_reason", "")},
    }
    if "workers" in stats:
        out["ingest"] = {"up": stats["ingest_up"], **stats["ingest"]}
        out["workers"] = {
            name: {"pid": w.get("pid", 0), "connections": w.get("connections", 0)}
            for name, w in sorted(stats["workers"].items())
        }
    return out
