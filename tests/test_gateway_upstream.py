"""The global subscription pool and the upstream connection's failure handling, observed at
the real simulator."""

from __future__ import annotations

import asyncio
import json
import time

from picows import WSListener, WSMsgType, WSTransport, ws_create_server

from gatewaykit import (
    FAST_DETECTION,
    TOKEN,
    Client,
    channel_of,
    http_get,
    start_gateway,
    start_simulator,
    wait_until,
)
from tickgate.upstream import UpstreamState
from tickgate.upstream.backoff import Backoff


def quote_now(symbol: str = "AAPL.US", last: float = 1.5) -> bytes:
    """A quote stamped now, as a live provider's is (a fixed date would one day be too old for
    the gateway's event-age check)."""
    t = int(time.time() * 1000)
    return json.dumps({"code": 1, "data": {"s": symbol, "ld": last, "t": t, "type": "quote"}}).encode()


async def test_pool_subscribes_first_and_unsubscribes_last() -> None:
    sim = await start_simulator()
    gw = await start_gateway(sim)
    try:
        a, b = await Client.connect(gw), await Client.connect(gw)
        await a.request({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote", "tick"]})
        await wait_until(
            lambda: sim.subscriptions().get("AAPL$US") == {"quote", "tick"}, what="upstream subscribe"
        )
        subscribes = [c for c in sim.commands if c.get("ac") == "subscribe"]
        await b.request({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]})
        assert gw.dispatcher.subscription_count == 3  # a: quote + tick, b: quote
        # A barrier: a channel new upstream goes out on the same provider connection, after any
        # subscribe b's first request could have caused, so once it is there, that one would be.
        await b.request({"action": "subscribe", "symbols": ["MSFT$US"], "types": ["quote"]})
        await wait_until(lambda: "MSFT$US" in sim.subscriptions(), what="the barrier's subscribe")
        # The second client's channel was already upstream: no new upstream subscribe for it.
        now = [c for c in sim.commands if c.get("ac") == "subscribe"]
        assert now[: len(subscribes)] == subscribes
        assert [c.get("params") for c in now[len(subscribes) :]] == ["MSFT$US"]

        await a.request({"action": "unsubscribe", "symbols": ["AAPL$US"]})
        await wait_until(
            lambda: sim.subscriptions().get("AAPL$US") == {"quote"}, what="tick dropped upstream"
        )
        await b.close()  # the last holder leaves by disconnecting
        await wait_until(lambda: "AAPL$US" not in sim.subscriptions(), what="quote dropped upstream")
        assert gw.dispatcher.channel_count == 0
        await a.close()
    finally:
        await gw.stop()
        await sim.stop()


async def test_upstream_loss_reconnects_resubscribes_and_streams_resume() -> None:
    sim = await start_simulator()
    gw = await start_gateway(sim)
    try:
        c = await Client.connect(gw)
        await c.request({"action": "subscribe", "symbols": ["AAPL$US", "700$HK"], "types": ["quote"]})
        before = await c.push()
        assert gw.upstream is not None
        assert sim.drop_connections() == 1
        await wait_until(lambda: gw.upstream.reconnects >= 1, what="reconnect")
        await wait_until(lambda: gw.upstream.state is UpstreamState.READY, what="ready again")
        await wait_until(lambda: set(sim.subscriptions()) == {"AAPL$US", "700$HK"}, what="re-subscribe")
        # Live pushes (a refresh of the channel's state comes first, marked as a snapshot).
        after = await c.push(
            lambda m: m["data"]["symbol"] == before["data"]["symbol"] and "snapshot" not in m
        )
        # Same gateway process: sequence numbers keep counting up across the upstream loss.
        assert after["data"]["seq"] > before["data"]["seq"]
        await c.close()
    finally:
        await gw.stop()
        await sim.stop()


async def test_reconnects_when_upstream_goes_away_and_comes_back() -> None:
    sim = await start_simulator()
    port = sim.port
    gw = await start_gateway(sim)
    try:
        c = await Client.connect(gw)
        await c.request({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["tick"]})
        await c.push()
        await sim.stop()
        await wait_until(lambda: gw.upstream.state is not UpstreamState.READY, what="upstream down")
        # Several refused connection attempts, with backoff (the loss, then two refused).
        await wait_until(lambda: gw.upstream.reconnects >= 3, what="refused reconnects")
        assert "Refused" in gw.upstream.status()["last_error"], gw.upstream.status()
        sim = await start_simulator(port=port)
        await wait_until(lambda: gw.upstream.state is UpstreamState.READY, what="upstream back")
        await wait_until(lambda: "AAPL$US" in sim.subscriptions(), what="re-subscribe")
        await c.push()
        assert gw.upstream.reconnects >= 3
        await c.close()
    finally:
        await gw.stop()
        await sim.stop()


def test_backoff_never_overflows_and_stays_capped() -> None:
    b = Backoff(0.5, 30.0)
    delays = [b.next_delay() for _ in range(5000)]
    assert max(delays) <= 30.0 and min(delays) > 0


async def test_provider_refusal_becomes_an_error_to_the_clients_that_asked() -> None:
    sim = await start_simulator(max_subscriptions=2)
    gw = await start_gateway(sim)
    try:
        ok, greedy = await Client.connect(gw), await Client.connect(gw)
        await ok.request({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]})
        await wait_until(lambda: "AAPL$US" in sim.subscriptions(), what="first subscribe")
        reply = await greedy.request({"action": "subscribe", "symbols": ["A$US", "B$US"], "types": ["quote"]})
        assert reply["type"] == "success"  # accepted by the gateway, then refused upstream
        err = await greedy.reply()
        assert err["code"] == "upstream_rejected"
        assert "maximum subscription limit" in err["msg"]
        assert err["channels"] == ["A$US:quote", "B$US:quote"]
        assert (await greedy.request({"action": "query_subscribe"}))["channels"] == []
        # The other client is untouched.
        assert channel_of(await ok.push()) == "AAPL$US:quote"
        await ok.close()
        await greedy.close()
    finally:
        await gw.stop()
        await sim.stop()


async def test_bad_token_keeps_retrying_and_reports_degraded() -> None:
    sim = await start_simulator()
    gw = await start_gateway(sim, upstream_token="wrong")
    try:
        await wait_until(lambda: gw.upstream.reconnects >= 2, what="retries after auth failure")
        health = gw.health()
        assert health["status"] == "degraded"
        assert "auth failed" in health["upstream"]["last_error"] or health["upstream"]["state"] != "ready"
    finally:
        await gw.stop()
        await sim.stop()


async def test_every_auth_form_works() -> None:
    sim = await start_simulator()
    try:
        for form in ("header", "query", "message"):
            gw = await start_gateway(sim, upstream_auth=form)
            try:
                await wait_until(lambda gw=gw: gw.upstream.state is UpstreamState.READY, what=f"{form} auth")
            finally:
                await gw.stop()
            await wait_until(lambda: sim.connection_count == 0, what="disconnect")
    finally:
        await sim.stop()


async def test_resend_mode_resubscribes_the_reduced_set() -> None:
    sim = await start_simulator()
    gw = await start_gateway(sim, upstream_unsubscribe="resend")
    try:
        c = await Client.connect(gw)
        await c.request({"action": "subscribe", "symbols": ["AAPL$US", "MSFT$US"], "types": ["quote"]})
        await wait_until(lambda: len(sim.subscriptions()) == 2, what="subscribe")
        await c.request({"action": "unsubscribe", "symbols": ["AAPL$US"]})
        await wait_until(
            lambda: any(
                cmd.get("ac") == "subscribe" and cmd.get("params") == "MSFT$US" for cmd in sim.commands[-3:]
            ),
            what="reduced set re-sent",
        )
        assert not any(cmd.get("ac") == "unsubscribe" for cmd in sim.commands)
        await c.close()
    finally:
        await gw.stop()
        await sim.stop()


class _HungProvider(WSListener):
    """Greets and authenticates like iTick, then never answers anything again."""

    def on_ws_connected(self, transport: WSTransport) -> None:
        transport.send(WSMsgType.TEXT, b'{"code":1,"msg":"Connected Successfully"}')
        transport.send(WSMsgType.TEXT, b'{"code":1,"resAc":"auth","msg":"authenticated"}')


async def test_provider_that_stops_answering_is_declared_dead() -> None:
    server = await ws_create_server(lambda _request: _HungProvider(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # Fast detection, but the rule under test is the missed pong: the "nothing received" rule is
    # kept well out of its way, so a stalled event loop cannot make that one fire first.
    detection = {**FAST_DETECTION, "upstream_idle_timeout": 10.0}
    gw = await start_gateway(
        None, upstream_url=f"ws://127.0.0.1:{port}/stock", upstream_token="t", **detection
    )
    try:
        await wait_until(lambda: gw.upstream.reconnects >= 1, what="dead-peer detection")
        assert gw.upstream.status()["last_error"].startswith("no pong within")
    finally:
        await gw.stop()
        server.close()


async def test_feed_that_answers_pings_but_sends_no_data_is_redialled() -> None:
    sim = await start_simulator(rate=0.0)
    # Pings every second, answered (the line is alive), but no data for 3 s: the data rule fires.
    # (Not shorter: the socket's own ping waits for its pong only as long as the ping interval,
    # and a loaded machine can hold the event loop for a few hundred milliseconds.)
    gw = await start_gateway(sim, upstream_data_timeout=3.0, upstream_ping_interval=1.0)
    try:
        c = await Client.connect(gw)
        await c.request({"action": "subscribe", "symbols": ["AAPL$US"]})
        await wait_until(lambda: gw.upstream.reconnects >= 1, what="data timeout")
        assert gw.upstream.status()["last_error"].startswith("no market data")
        await wait_until(lambda: gw.upstream.state is UpstreamState.READY, what="back")
        await c.close()
    finally:
        await gw.stop()
        await sim.stop()


class _FragmentingProvider(WSListener):
    """An iTick-protocol provider that splits a market message into three WebSocket frames."""

    def on_ws_connected(self, transport: WSTransport) -> None:
        quote = quote_now()
        transport.send(WSMsgType.TEXT, b'{"code":1,"msg":"Connected Successfully"}')
        transport.send(WSMsgType.TEXT, b'{"code":1,"resAc":"auth","msg":"authenticated"}')
        transport.send(WSMsgType.TEXT, quote[:20], fin=False)
        transport.send(WSMsgType.CONTINUATION, quote[20:40], fin=False)
        transport.send(WSMsgType.CONTINUATION, quote[40:], fin=True)


async def test_fragmented_provider_messages_are_reassembled() -> None:
    server = await ws_create_server(lambda _r: _FragmentingProvider(), "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/stock"
    gw = await start_gateway(None, upstream_url=url, upstream_token="t")
    try:
        await wait_until(lambda: gw.hub.counters.updates_in == 1, what="reassembled update")
        assert gw.upstream.decode_errors == 0
    finally:
        await gw.stop()
        server.close()


async def test_embedded_default_uses_the_built_in_simulator() -> None:
    gw = await start_gateway(None)
    try:
        assert gw.simulator is not None
        assert gw.upstream.url == gw.simulator.url
        c = await Client.connect(gw)
        await c.request({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]})
        push = await c.push()
        assert push["data"]["symbol"] == "AAPL$US"
        await c.close()
    finally:
        await gw.stop()


async def test_feed_api_pushes_a_services_own_frames() -> None:
    gw = await start_gateway(None, simulator_rate=0.0)
    try:
        c = await Client.connect(gw)
        await c.request({"action": "subscribe", "symbols": ["OWN$US"], "types": ["quote"]})
        sent = gw.feed(quote_now("OWN.US", 12.5))
        assert sent == 1
        push = await c.push()
        assert push["data"]["lastDealPrice"] == 12.5
        await c.close()
    finally:
        await gw.stop()


assert TOKEN  # shared with gatewaykit's simulator config


async def test_impossible_provider_values_are_dropped_counted_and_leave_no_seq_hole() -> None:
    gw = await start_gateway(None, simulator_rate=0.0, upstream_max_event_lead=60.0)
    try:
        c = await Client.connect(gw)
        await c.request({"action": "subscribe", "symbols": ["OWN$US"], "types": ["tick"]})
        now = int(time.time() * 1000)

        def tick(price: float, volume: float, t: int = now) -> bytes:
            return json.dumps(
                {"code": 1, "data": {"s": "OWN.US", "ld": price, "v": volume, "t": t, "type": "tick"}}
            ).encode()

        frames = [
            tick(10.0, 100),
            tick(-5.0, 100),  # negative price
            tick(10.1, -100),  # negative volume
            tick(10.2, 1.18e21),  # no market trades that
            tick(10.3, 100, t=now + 3_600_000),  # an hour ahead: past the 60 s lead allowed here
            tick(10.4, 100, t=99_999_999_999_999),  # year 5138
            tick(10.5, 200),
        ]
        assert [gw.feed(f) for f in frames] == [1, 0, 0, 0, 0, 0, 1]
        first, second = await c.push(), await c.push()
        assert (first["data"]["lastDealPrice"], second["data"]["lastDealPrice"]) == (10.0, 10.5)
        assert (first["data"]["seq"], second["data"]["seq"]) == (1, 2)  # no hole for what was dropped
        assert gw.processor.stats()["dropped"] == {"price": 1, "volume": 2, "time": 2}
        text = (await asyncio.to_thread(http_get, gw.url.replace("ws://", "http://") + "metrics"))[2].decode()
        assert 'tickgate_upstream_dropped_total{reason="volume"} 2.0' in text
        await c.close()
    finally:
        await gw.stop()


async def test_symbol_state_is_released_after_the_last_holder_and_numbering_never_goes_back() -> None:
    sim = await start_simulator()
    gw = await start_gateway(sim, symbol_release_grace=0.2)
    try:
        c = await Client.connect(gw)
        last_seq = 0
        for round_ in range(5):  # new symbols each round, as a client browsing a market would
            symbols = [f"R{round_}X{i}$US" for i in range(50)] + ["AAPL$US"]
            assert (await c.request({"action": "subscribe", "symbols": symbols, "types": ["quote"]}))[
                "type"
            ] == "success"
            push = await c.push(lambda m: m["data"]["symbol"] == "AAPL$US" and "snapshot" not in m)
            assert push["data"]["seq"] > last_seq  # AAPL's numbering carries on above, never from 1
            last_seq = push["data"]["seq"]
            # Every symbol has had an update (has state to release) before it is let go.
            await wait_until(
                lambda: gw.processor.stats()["symbols"] == 51, what="the round's 51 symbols' first updates"
            )
            await c.request({"action": "unsubscribe", "symbols": symbols, "types": ["quote"]})
            await wait_until(
                lambda: gw.processor.stats()["symbols"] == 0, what="every symbol's state released"
            )
            assert gw.ingest.history.ring.stats()["channels"] == 0
            assert gw.ingest.history.ring.latest("AAPL$US:quote") is None
        # AAPL each round, and each other symbol (each had an update before it was let go).
        assert gw.processor.stats()["released"] >= 5 * 51
        await c.close()
    finally:
        await gw.stop()
        await sim.stop()


def test_credentials_never_leave_in_status_or_logs() -> None:
    from tickgate.logs import redact_url

    assert redact_url("wss://api.example/stock?token=s3cret&x=1") == "wss://api.example/stock?token=***&x=1"
    assert redact_url("wss://user:pw@host/ws?apikey=k") == "wss://***@host/ws?apikey=***"
    assert redact_url(None) == ""


async def test_a_token_in_the_upstream_url_is_not_shown_in_healthz() -> None:
    sim = await start_simulator()
    gw = await start_gateway(
        None, upstream_url=sim.url + "?token=" + TOKEN, upstream_auth="query", upstream_token=TOKEN
    )
    try:
        await wait_until(
            lambda: gw.upstream is not None and gw.upstream.state is UpstreamState.READY, what="ready"
        )
        health = json.dumps(gw.health())
        assert TOKEN not in health and "token=***" in health
    finally:
        await gw.stop()
        await sim.stop()
