"""Prometheus metrics, read from the gateway's plain counters at scrape time.

The hot path only increments counters (in the core's dispatcher, or Python ints); building
metric families happens when ``/metrics`` is scraped, so an update fanned out to 10,000
clients costs no metric calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class GatewayCollector(Collector):
    def __init__(self, stats: Callable[[], dict[str, Any]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Any]:
        s = self._stats()
        up = s["upstream"]
        gauge, counter = GaugeMetricFamily, CounterMetricFamily
        for family, name, doc, value in (
            (gauge, "connections", "Open client WebSocket connections.", s["connections"]),
            (gauge, "max_connections", "Admission limit of client connections.", s["max_connections"]),
            (
                counter,
                "connections_refused",
                "Clients refused with 503 at the admission limit.",
                s["connections_refused"],
            ),
            (gauge, "batch_connections", "Clients in batch mode.", s["batch_connections"]),
            (gauge, "paused_connections", "Clients over the soft cap (conflated).", s["paused_connections"]),
            (
                gauge,
                "degradation_level",
                "Load shedding in force: 0 none, 1 no depth/klines live, 2 coarse batches, 3 snapshots only.",
                s["degradation_level"],
            ),
            (counter, "shed", "Deliveries left out to shed load.", s["shed"]),
            (
                gauge,
                "stale_channels",
                "Channels clients were told are stale (upstream down or silent, ingest away, degraded).",
                s["stale_channels"],
            ),
            (gauge, "subscribed_channels", "Channels with at least one subscriber.", s["channels"]),
            (gauge, "subscriptions", "Client x channel subscriptions.", s["subscriptions"]),
            (counter, "updates_in", "Updates decoded from providers.", s["updates_in"]),
            (
                counter,
                "deliveries",
                "Updates delivered to clients (pushes and batch entries).",
                s["deliveries"],
            ),
            (counter, "batches", "Batch frames sent.", s["batches"]),
            (
                counter,
                "batch_encodes",
                "Distinct batch frames encoded (shared by equal batches).",
                s["batch_encodes"],
            ),
            (counter, "conflated", "Updates replaced by a newer one before being sent.", s["conflated"]),
            (counter, "ticks_dropped", "Ticks dropped past the per-client cap.", s["ticks_dropped"]),
            (counter, "bytes_out", "Bytes of market data handed to sockets.", s["bytes_out"]),
            (
                counter,
                "slow_conflations",
                "Times a client was switched to conflation for being slow.",
                s["slow_conflations"],
            ),
            (
                counter,
                "slow_consumers_closed",
                "Clients closed (1013) for being too slow.",
                s["slow_consumers_closed"],
            ),
            (counter, "client_errors", "Error replies sent to clients.", s["client_errors"]),
            (
                counter,
                "unresponsive_closed",
                "Clients dropped for not answering a ping in time.",
                s["unresponsive_closed"],
            ),
            (
                counter,
                "resumes_recovered",
                "Resumes that replayed every missed update.",
                s["resumes_recovered"],
            ),
            (counter, "resumes_failed", "Resumes answered recovered:false.", s["resumes_failed"]),
            (counter, "rate_limited", "Commands refused over a connection's rate limit.", s["rate_limited"]),
            (
                counter,
                "origins_refused",
                "Browser connections refused for their Origin.",
                s["origins_refused"],
            ),
            (gauge, "sessions_detached", "Sessions kept for clients that went away.", s["sessions_detached"]),
            (gauge, "redis_up", "1 when Redis answers, 0 when not, -1 without Redis.", s["redis_up"]),
            (counter, "redis_writes", "Session writes to Redis.", s["redis_writes"]),
            (counter, "upstream_reconnects", "Provider reconnects.", up["reconnects"]),
            (counter, "upstream_frames", "Frames received from providers.", up["frames_in"]),
            (counter, "upstream_decode_errors", "Provider frames the core refused.", up["decode_errors"]),
        ):
            yield family(f"tickgate_{name}", doc, value=value)
        ready = GaugeMetricFamily(
            "tickgate_upstream_ready", "1 when the provider connection is ready.", labels=["provider"]
        )
        ready.add_metric([up["provider"]], 1 if up["state"] == "ready" else 0)
        yield ready
        dropped = CounterMetricFamily(
            "tickgate_upstream_dropped",
            "Provider updates dropped as implausible (never forwarded), by reason.",
            labels=["reason"],
        )
        for reason, count in sorted(up.get("dropped", {}).items()):
            dropped.add_metric([reason], count)
        yield dropped
        replay = s.get("replay")
        if replay:
            yield GaugeMetricFamily(
                "tickgate_replay_updates", "Updates kept for resume.", value=replay["updates"]
            )
            yield GaugeMetricFamily("tickgate_replay_bytes", "Bytes kept for resume.", value=replay["bytes"])
        yield from _security(s)
        if "workers" in s:
            yield from _per_worker(s)


def _security(s: dict[str, Any]) -> Iterator[Any]:
    counter = CounterMetricFamily
    yield counter(
        "tickgate_address_rate_refused",
        "Connections refused (429) over the new-connection rate of their source address.",
        value=s["address_rate_refused"],
    )
    yield counter("tickgate_audit_lines", "Audit log lines written.", value=s["audit_written"])
    yield counter(
        "tickgate_audit_dropped",
        "Audit log lines dropped (the disk did not keep up).",
        value=s["audit_dropped"],
    )
    if "auth_succeeded" not in s:  # auth = none
        return
    yield counter("tickgate_auth_succeeded", "Tokens accepted.", value=s["auth_succeeded"])
    failed = counter("tickgate_auth_failed", "Tokens or connections refused, by reason.", labels=["reason"])
    for reason, count in sorted(s["auth_failed"].items()):
        failed.add_metric([reason], count)
    yield failed
    yield counter(
        "tickgate_auth_expired_closed",
        "Connections closed (4001) for an expired token not renewed in the grace period.",
        value=s["auth_expired_closed"],
    )
    yield counter(
        "tickgate_not_entitled",
        "Subscribes refused outside the token's entitlements.",
        value=s["not_entitled"],
    )
    yield counter(
        "tickgate_key_reload_failures",
        "Key file reloads refused (the previous keys stayed in use).",
        value=s["key_reload_failures"],
    )


#: Figures of a node of workers also reported per edge worker, labelled ``worker``.
PER_WORKER = (
    (GaugeMetricFamily, "connections", "Open client connections of one edge worker."),
    (GaugeMetricFamily, "subscriptions", "Client x channel subscriptions of one edge worker."),
    (CounterMetricFamily, "deliveries", "Updates delivered by one edge worker."),
    (CounterMetricFamily, "bytes_out", "Bytes of market data one edge worker handed to sockets."),
    (GaugeMetricFamily, "rss_bytes", "Resident memory of one edge worker."),
)


def _per_worker(s: dict[str, Any]) -> Iterator[Any]:
    workers = sorted(s["workers"].items())
    for family, name, doc in PER_WORKER:
        metric = family(f"tickgate_worker_{name}", doc, labels=["worker"])
        for worker, figures in workers:
            metric.add_metric([worker], figures.get(name, 0))
        yield metric
    ingest = GaugeMetricFamily("tickgate_ingest_up", "1 while the edges are joined to the ingest.")
    ingest.add_metric([], 1 if s["ingest_up"] else 0)
    yield ingest
    if "rss_bytes" in s["ingest"]:
        rss = s["ingest"]["rss_bytes"]
        yield GaugeMetricFamily("tickgate_ingest_rss_bytes", "Resident memory of the ingest.", value=rss)


def make_renderer(stats: Callable[[], dict[str, Any]]) -> Callable[[], bytes]:
    """``stats`` returns the edge's figures with the upstream's under ``"upstream"``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(stats))
    return lambda: generate_latest(registry)
