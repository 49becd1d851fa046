"""The node-wide view an edge reports: its own live figures merged with the others' relayed ones."""

from __future__ import annotations

from tickgate.node.view import UPSTREAM_UNKNOWN, health_of, merge_workers, node_stats

UP = {"provider": "itick", "state": "ready", "reconnects": 0, "frames_in": 9, "decode_errors": 0}


def figures(connections: int, pid: int, channels: int = 3) -> dict[str, int]:
    return {"connections": connections, "subscriptions": 2 * connections, "channels": channels, "pid": pid}


def test_counts_are_summed_and_pids_are_not() -> None:
    total = merge_workers({"edge-1": figures(3, 101), "edge-2": figures(4, 102)})
    assert total["connections"] == 7 and total["subscriptions"] == 14
    assert "pid" not in total


def test_own_figures_replace_relayed_ones_and_channels_come_from_the_pool() -> None:
    relayed = {
        "upstream": UP,
        "channels": 5,
        "ingest": {"pid": 100, "rss_bytes": 1},
        "workers": {"edge-1": figures(3, 101), "edge-2": figures(1, 102)},
    }
    stats = node_stats("edge-2", figures(6, 102), relayed, ingest_up=True)
    assert stats["connections"] == 9  # edge-2's live 6, not its relayed 1
    assert stats["channels"] == 5
    health = health_of(stats, "e1")
    assert health["status"] == "ok"
    assert health["workers"] == {
        "edge-1": {"pid": 101, "connections": 3},
        "edge-2": {"pid": 102, "connections": 6},
    }
    assert health["ingest"] == {"up": True, "pid": 100, "rss_bytes": 1}


def test_before_the_ingest_is_heard_from_the_node_is_degraded() -> None:
    stats = node_stats("edge-1", figures(2, 101), {}, ingest_up=False)
    assert stats["upstream"] == UPSTREAM_UNKNOWN and stats["channels"] == 3
    assert health_of(stats, "")["status"] == "degraded"
    relayed = {"upstream": UP, "workers": {}, "ingest": {}}
    assert (
        health_of(node_stats("edge-1", figures(2, 101), relayed, ingest_up=False), "")["status"] == "degraded"
    )
