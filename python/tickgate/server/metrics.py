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
        yield GaugeMetricFamily(
            "tickgate_connections", "Open client WebSocket connections.", value=s["connections"]
        )
        yield GaugeMetricFamily(
            "tickgate_subscribed_channels", "Channels with at least one subscriber.", value=s["channels"]
        )
        yield GaugeMetricFamily(
            "tickgate_subscriptions", "Client x channel subscriptions.", value=s["subscriptions"]
        )
        yield CounterMetricFamily(
            "tickgate_updates_in", "Updates decoded from providers.", value=s["updates_in"]
        )
        yield CounterMetricFamily(
            "tickgate_messages_out", "Update frames written to clients.", value=s["messages_out"]
        )
        yield CounterMetricFamily(
            "tickgate_upstream_reconnects", "Provider reconnects.", value=up["reconnects"]
        )
        yield CounterMetricFamily(
            "tickgate_upstream_frames", "Frames received from providers.", value=up["frames_in"]
        )
        yield CounterMetricFamily(
            "tickgate_upstream_decode_errors", "Provider frames the core refused.", value=up["decode_errors"]
        )
        yield CounterMetricFamily(
            "tickgate_client_errors", "Error replies sent to clients.", value=s["client_errors"]
        )
        yield CounterMetricFamily(
            "tickgate_slow_consumers_dropped",
            "Clients dropped for a full send buffer.",
            value=s["slow_consumers_dropped"],
        )
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
