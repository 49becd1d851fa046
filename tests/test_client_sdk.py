"""The Python client SDK (``tickgate.client``) against a real gateway: typed updates in every
format, batch mode, tokens, and a connection cut in the middle of a stream that the caller
sees only as events: no gap, no duplicate."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

import tickgate.client as tc
from gatewaykit import TIMEOUT, Client, start_gateway, wait_for_seqs, wait_until
from tickgate.auth import KeyRing, issue
from tickgate.edge.auth import _GRACE_OVER

TYPES = ["quote", "tick", "depth", "kline@1"]


async def take(c: tc.Client, n: int, timeout: float = TIMEOUT) -> list[tc.Update]:
    out: list[tc.Update] = []

    async def run() -> None:
        async for update in c:
            out.append(update)
            if len(out) >= n:
                return

    await asyncio.wait_for(run(), timeout)
    return out


@pytest.mark.parametrize("protocol", ["json", "proto", "proto+zstd"])
async def test_typed_updates_in_every_format(protocol: str) -> None:
    gw = await start_gateway(None, simulator_rate=20.0)
    try:
        async with tc.connect(gw.url, protocol=protocol) as c:
            assert c.state == "live" and c.session
            channels = await c.subscribe(["AAPL$US", "700.HK"], types=TYPES)
            assert sorted(channels) == sorted(f"{s}:{t}" for s in ("AAPL$US", "700$HK") for t in TYPES)
            updates = await take(c, 60)
            kinds = {type(u) for u in updates}
            assert kinds == {tc.Quote, tc.Tick, tc.Depth, tc.Kline}, kinds
            for u in updates:
                assert u.channel in channels and u.seq >= 1
                if isinstance(u, tc.Quote):
                    assert u.last > 0 and u.time_ms > 0
                elif isinstance(u, tc.Tick):
                    assert u.price > 0 and u.volume >= 0
                elif isinstance(u, tc.Depth):
                    assert u.asks and u.bids and u.asks[0].price >= u.bids[0].price
                else:
                    assert u.period == 1 and u.low <= u.open <= u.high
            await c.unsubscribe(["700$HK"])
            assert c.channels == {f"AAPL$US:{t}" for t in TYPES}
            with pytest.raises(tc.ClientError) as refused:
                await c.subscribe(["NOT A SYMBOL"])
            assert refused.value.code == "invalid_symbol"
    finally:
        await gw.stop()


async def test_batch_mode_delivers_conflated_updates() -> None:
    gw = await start_gateway(None, simulator_rate=50.0)
    try:
        async with tc.connect(gw.url, mode="batch", interval_ms=200) as c:
            await c.subscribe(["AAPL$US"], types=["quote"])
            seqs = [u.seq for u in await take(c, 2)]  # the snapshot, then the first batch
            # Conflated: at 50 updates/s and 5 batches/s, a batch holds the latest quote of
            # several, so the seqs the client sees skip (read on until they do: a starved
            # simulator may fill a batch or two with one quote only).
            deadline = asyncio.get_running_loop().time() + TIMEOUT
            while not any(b - a > 1 for a, b in itertools.pairwise(seqs[1:])):
                assert asyncio.get_running_loop().time() < deadline, f"no conflation in {seqs}"
                seqs += [u.seq for u in await take(c, 1)]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
            assert gw.dispatcher.stats()["conflated"] > 0
    finally:
        await gw.stop()


async def test_a_cut_connection_is_resumed_without_a_gap_or_a_duplicate() -> None:
    gw = await start_gateway(None, simulator_rate=40.0)
    events: list[tc.ConnectionEvent] = []
    # A keeper holds the channels, so the provider keeps streaming them while the SDK is away.
    keeper = await Client.connect(gw)
    await keeper.request(
        {"action": "subscribe", "symbols": ["AAPL$US", "TSLA$US"], "types": ["quote", "tick"]}
    )
    try:
        async with tc.connect(gw.url, protocol="proto", on_event=events.append, backoff_initial=0.05) as c:
            await c.subscribe(["AAPL$US", "TSLA$US"], types=["quote", "tick"])
            before = await take(c, 40)
            for _ in range(2):  # twice, so a resumed session resumes again
                conn = gw.hub.live_connection(c.session or "")
                assert conn is not None
                conn.abort()  # the network drops it mid-stream
                await wait_for_seqs(gw, sorted(c.channels), more=5)  # updates go on meanwhile
                before += await take(c, 40)
            after = before
        kinds = [e.kind for e in events]
        assert kinds.count("reconnecting") == 2 and kinds.count("recovered") == 2, kinds
        by_channel: dict[str, list[int]] = {}
        for u in after:
            by_channel.setdefault(u.channel, []).append(u.seq)
        for channel, seqs in by_channel.items():
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), (channel, seqs)
        assert gw.stats()["resumes_recovered"] == 2
    finally:
        await keeper.close()
        await gw.stop()


async def test_a_gateway_restart_is_reported_not_recovered_and_the_stream_goes_on() -> None:
    gw = await start_gateway(None, simulator_rate=20.0)
    port = gw.port
    events: list[tc.ConnectionEvent] = []
    try:
        c = tc.connect(gw.url, on_event=events.append, backoff_initial=0.05)
        await c.start()
        await c.subscribe(["AAPL$US"], types=["quote"])
        await take(c, 3)
        await gw.stop()
        gw = await start_gateway(None, simulator_rate=20.0, port=port)
        await wait_until(lambda: c.state in ("recovered", "not_recovered"), what="reconnect")
        assert c.state == "not_recovered"
        assert any(e.kind == "not_recovered" and e.reason == "unknown_session" for e in events)
        update = (await take(c, 1))[0]
        assert update.channel == "AAPL$US:quote"  # subscribed again by itself
        # The session is the new gateway's from now on: the next drop resumes it.
        keeper = await Client.connect(gw)
        await keeper.request({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]})
        conn = gw.hub.live_connection(c.session or "")
        assert conn is not None
        seen = len(events)
        conn.abort()
        await wait_until(
            lambda: len(events) > seen + 1 and events[-1].kind in ("recovered", "not_recovered"),
            what="resume",
        )
        assert events[-1].kind == "recovered", events[-3:]
        await keeper.close()
        await c.close()
    finally:
        await gw.stop()


async def test_tokens_a_refused_one_raises_and_a_callable_is_asked_again() -> None:
    secret = "a-test-secret-that-is-long-enough-for-hs256"
    keys = KeyRing.from_secret(secret)
    # Neither timer is short, as the SDK must beat both: the first token (exp in whole seconds:
    # valid 2 to 3 s) must let it in, and the grace (3 s) is its time to send the renewal.
    gw = await start_gateway(
        None, simulator_rate=20.0, auth="jwt", jwt_secret=secret, jwt_leeway=0.0, reauth_grace=3.0
    )
    asked: list[float] = []

    def fresh() -> str:
        asked.append(1.0)
        return issue(keys, "alice", 3 if len(asked) == 1 else 3600)

    try:
        with pytest.raises(tc.AuthRefused):
            async with tc.connect(gw.url, token="garbage"):
                pass
        events: list[Any] = []
        async with tc.connect(gw.url, token=fresh, on_event=events.append) as c:
            await c.subscribe(["AAPL$US"])
            conn = gw.hub.live_connection(c.session or "")
            assert conn is not None
            await wait_until(lambda: len(asked) == 2, what="renewal")
            # Past the grace (its deadline taken off the gateway's heap): still connected, the
            # same connection, as it renewed.
            await wait_until(
                lambda: not any(w == _GRACE_OVER and x is conn for _, _, w, x, _ in gw.hub.auth._due),
                what="the grace period over",
            )
            assert c.state == "live"
            assert not conn.closed and gw.hub.live_connection(c.session or "") is conn
            assert gw.stats()["auth_expired_closed"] == 0
            await take(c, 1)
        assert any(e.kind == "token_expired" for e in events)
    finally:
        await gw.stop()


async def test_the_examples_run_against_a_gateway() -> None:
    import subprocess
    import sys
    from pathlib import Path

    examples = Path(__file__).resolve().parent.parent / "examples"
    gw = await start_gateway(None, simulator_rate=20.0)
    try:

        async def run(*args: str) -> str:
            # Waited for by the loop, not by subprocess.run's timeout, which polls with
            # time.sleep (broken under a moved clock: libfaketime fails it with EINVAL).
            pipe = subprocess.PIPE
            proc = await asyncio.create_subprocess_exec(sys.executable, *args, stdout=pipe, stderr=pipe)
            try:
                out, err = await asyncio.wait_for(proc.communicate(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise
            assert proc.returncode == 0, err.decode()
            return out.decode()

        quotes = await run(str(examples / "quotes.py"), "--url", gw.url, "--count", "5")
        lines = quotes.splitlines()
        assert len(lines) == 5 and all(line.split()[0] in ("AAPL$US", "700$HK") for line in lines), quotes
        # vwap.py prints a line a second once it has trades, for --seconds: 5 s leaves it 4 s
        # after the first second to get a trade, whatever a loaded machine delays.
        vwap = await run(str(examples / "vwap.py"), "--url", gw.url, "--seconds", "5")
        assert "AAPL$US vwap=" in vwap and "[connection] live" in vwap, vwap
    finally:
        await gw.stop()


async def test_a_caller_that_does_not_read_holds_bounded_memory() -> None:
    gw = await start_gateway(None, simulator_rate=100.0)
    try:
        async with tc.connect(gw.url, max_pending=100) as c:
            channels = await c.subscribe(["AAPL$US", "TSLA$US", "700$HK", "MSFT$US"], types=TYPES)
            await wait_until(lambda: c._paused, what="the SDK to stop reading at its cap")
            # Some 3,000 more updates meanwhile (200 on each of 16 channels); none read.
            await wait_for_seqs(gw, channels, more=200)
            # Reading stopped at the cap (what one socket read held past it may come in too).
            assert len(c._updates) <= 100 + 800, len(c._updates)
            assert c.state == "live" and c._paused  # the same connection, still not read
            # A request still gets its reply while the caller is behind.
            assert await asyncio.wait_for(c.subscribe(["NVDA$US"]), TIMEOUT) == ["NVDA$US:quote"]
            updates = await take(c, 1500)  # reading resumes as the caller catches up
            assert len(updates) == 1500
    finally:
        await gw.stop()


def test_protobuf_updates_with_zero_values_are_read() -> None:
    from tickgate import proto
    from tickgate.client.types import from_proto

    quote = from_proto(proto.Update(symbol="A$US", seq=3, quote=proto.Quote(last=0.0, open=1.5)))
    assert isinstance(quote, tc.Quote) and quote.last == 0.0 and quote.open == 1.5
    tick = from_proto(proto.Update(symbol="A$US", seq=4, tick=proto.Tick(price=0.0, volume=0.0)))
    assert isinstance(tick, tc.Tick) and (tick.price, tick.volume, tick.cumulative_volume) == (0.0, 0.0, 0.0)
    kline = from_proto(proto.Update(symbol="A$US", seq=5, kline=proto.Kline(period=5, high=1.0, close=1.0)))
    assert isinstance(kline, tc.Kline) and kline.kind == "kline@5" and kline.open == 0.0


async def test_requests_waiting_for_a_connection_end_when_the_client_closes() -> None:
    gw = await start_gateway(None, simulator_rate=0.0)
    c = tc.connect(gw.url, backoff_initial=0.05)
    await c.start()
    await gw.stop()  # gone for good: the client keeps trying
    await wait_until(lambda: c.state == "reconnecting", what="reconnecting")
    waiting = asyncio.create_task(c.subscribe(["AAPL$US"]))
    # The request is waiting for the connection (for the event that wakes requests).
    await wait_until(lambda: c._wake._waiters, what="the request waiting")  # type: ignore[attr-defined]
    await c.close()
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(waiting, TIMEOUT)
