"""The fan-out index: edges for the global pool, receivers for each update."""

from __future__ import annotations

import gc
import weakref

from tickgate import SubscriptionIndex


class Conn:
    """Stands in for the gateway's connection objects: any object works, keyed by identity."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def test_first_and_last_edges() -> None:
    ix = SubscriptionIndex()
    a, b = Conn("a"), Conn("b")
    assert ix.subscribe(a, ["AAPL$US:quote", "AAPL$US:tick"]) == ["AAPL$US:quote", "AAPL$US:tick"]
    assert ix.subscribe(b, ["AAPL$US:quote", "700$HK:quote"]) == ["700$HK:quote"]
    assert ix.subscribe(b, ["AAPL$US:quote"]) == []  # duplicate
    assert (len(ix), ix.channel_count, ix.connection_count) == (4, 3, 2)
    assert ix.unsubscribe(a, ["AAPL$US:quote", "NOPE$US:quote"]) == []
    assert ix.unsubscribe(b, ["AAPL$US:quote"]) == ["AAPL$US:quote"]
    assert ix.remove(b) == ["700$HK:quote"]
    assert ix.remove(a) == ["AAPL$US:tick"]
    assert (len(ix), ix.channel_count, ix.connection_count) == (0, 0, 0)


def test_receivers_are_exactly_the_subscribers() -> None:
    ix = SubscriptionIndex()
    conns = [Conn(str(i)) for i in range(10)]
    for i, c in enumerate(conns):
        ix.subscribe(c, ["EVEN$US:quote" if i % 2 == 0 else "ODD$US:quote", "ALL$US:quote"])
    assert set(ix.receivers("EVEN$US:quote")) == set(conns[0::2])
    assert set(ix.receivers("ODD$US:quote")) == set(conns[1::2])
    assert len(ix.receivers("ALL$US:quote")) == 10
    assert ix.receivers("NONE$US:quote") == ()
    assert ix.count("ALL$US:quote") == 10
    assert ix.channels_of(conns[0]) == ["ALL$US:quote", "EVEN$US:quote"]
    assert ix.channels() == ["ALL$US:quote", "EVEN$US:quote", "ODD$US:quote"]
    assert ix.is_subscribed(conns[1], "ODD$US:quote")
    assert not ix.is_subscribed(conns[1], "EVEN$US:quote")


def test_receiver_tuple_is_cached_until_membership_changes() -> None:
    ix = SubscriptionIndex()
    a, b = Conn("a"), Conn("b")
    ix.subscribe(a, ["X$US:quote"])
    first = ix.receivers("X$US:quote")
    assert ix.receivers("X$US:quote") is first
    ix.subscribe(b, ["X$US:quote"])
    second = ix.receivers("X$US:quote")
    assert second is not first and set(second) == {a, b}
    ix.subscribe(b, ["Y$US:quote"])  # another channel: X's cache stays
    assert ix.receivers("X$US:quote") is second
    ix.remove(a)
    assert ix.receivers("X$US:quote") == (b,)


def test_equal_but_distinct_objects_are_distinct_connections() -> None:
    ix = SubscriptionIndex()
    ix.subscribe((1,), ["X$US:quote"])
    ix.subscribe("conn", ["X$US:quote"])
    assert ix.count("X$US:quote") == 2


def test_index_releases_connections_it_no_longer_needs() -> None:
    ix = SubscriptionIndex()
    c = Conn("c")
    ref = weakref.ref(c)
    ix.subscribe(c, ["X$US:quote", "Y$US:quote"])
    ix.receivers("X$US:quote")
    ix.unsubscribe(c, ["X$US:quote"])
    ix.unsubscribe(c, ["Y$US:quote"])
    del c
    gc.collect()
    assert ref() is None


def test_cycles_through_the_index_are_collected() -> None:
    ix = SubscriptionIndex()
    c = Conn("c")
    c.index = ix  # type: ignore[attr-defined]
    ix.subscribe(c, ["X$US:quote"])
    ix.receivers("X$US:quote")
    ref = weakref.ref(ix)
    del ix, c
    gc.collect()
    assert ref() is None


def test_many_connections() -> None:
    ix = SubscriptionIndex()
    conns = [Conn(str(i)) for i in range(5_000)]
    channels = [f"S{i}$US:quote" for i in range(100)]
    for i, c in enumerate(conns):
        ix.subscribe(c, [channels[(i + k * 13) % 100] for k in range(20)])
    assert len(ix) == 100_000
    assert sum(ix.count(ch) for ch in channels) == 100_000
    for c in conns[::2]:
        ix.remove(c)
    assert len(ix) == 50_000
    survivors = set(conns[1::2])
    assert all(set(ix.receivers(ch)) <= survivors for ch in channels)
