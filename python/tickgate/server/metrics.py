"""Prometheus metrics, read from the gateway's plain counters at scrape time.

The hot path only increments Python ints; building metric families happens when
``/metrics`` is scraped, so an update fanned out to 10,000 clients costs no metric calls.
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
        for family, name, doc, value in (
            (GaugeMetricFamily, "connections", "Open client WebSocket connections.", s["connections"]),
            (
                GaugeMetricFamily,
                "subscribed_channels",
                "Channels with at least one subscriber.",
                s["channels"],
            ),
            (GaugeMetricFamily, "subscriptions", "Client x channel subscriptions.", s["subscriptions"]),
            (CounterMetricFamily, "updates_in", "Updates decoded from providers.", s["updates_in"]),
            (CounterMetricFamily, "messages_out", "Update frames written to clients.", s["messages_out"]),
            (CounterMetricFamily, "upstream_reconnects", "Provider reconnects.", up["reconnects"]),
            (CounterMetricFamily, "upstream_frames", "Frames received from providers.", up["frames_in"]),
            (
                CounterMetricFamily,
                "upstream_decode_errors",
                "Provider frames the core refused.",
                up["decode_errors"],
            ),
            (CounterMetricFamily, "client_errors", "Error replies sent to clients.", s["client_errors"]),
            (
                CounterMetricFamily,
                "slow_consumers_dropped",
                "Clients dropped for a full send buffer.",
                s["slow_consumers_dropped"],
            ),
        ):
            yield family(f"tickgate_{name}", doc, value=value)
        ready = GaugeMetricFamily(
            "tickgate_upstream_ready", "1 when the provider connection is ready.", labels=["provider"]
        )
        ready.add_metric([up["provider"]], 1 if up["state"] == "ready" else 0)
        yield ready


def make_registry(stats: Callable[[], dict[str, Any]]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(stats))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
