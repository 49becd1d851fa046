"""Client authentication against a real gateway: tokens at the handshake and in an ``auth``
message, every refusal (401, 4001), entitlements, expiry and renewal, sessions bound to their
subject, key rotation, and the audit trail."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import jwt
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gatewaykit import TIMEOUT, Client, http_get, start_gateway, wait_until
from tickgate.auth import KeyRing, issue, rotate
from tickgate.edge.auth import _GRACE_OVER

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
KEYS = KeyRing.from_secret(SECRET)
ISSUER = "https://auth.example"
US = {"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]}


def token(sub: str = "alice", ttl: float = 3600, **kw: object) -> str:
    return issue(KEYS, sub, ttl, **kw)  # type: ignore[arg-type]


async def jwt_gateway(**overrides: object):  # type: ignore[no-untyped-def]
    settings: dict[str, object] = dict(auth="jwt", jwt_secret=SECRET, simulator_rate=20.0)
    settings.update(overrides)
    return await start_gateway(None, **settings)


async def refused_status(gw, **kw: object) -> tuple[int, bytes]:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidStatus) as refused:
        await Client.connect(gw, **kw)  # type: ignore[arg-type]
    response = refused.value.response
    return response.status_code, response.body or b""


async def closed_with(client: Client) -> tuple[int, str, list[dict[str, object]]]:
    """Reads until the server closes; the close code, reason and what came before it."""
    seen = []
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            seen.append(await client.recv())
    rcvd = closed.value.rcvd
    assert rcvd is not None
    return rcvd.code, rcvd.reason, seen


def in_grace(gw, conn) -> bool:  # type: ignore[no-untyped-def]
    """Whether ``conn``'s grace period after a ``token_expired`` is still running (its deadline
    not yet taken off the gateway's heap by the once-a-second sweep)."""
    return any(what == _GRACE_OVER and c is conn for _, _, what, c, _ in gw.hub.auth._due)


async def test_a_token_at_the_handshake_or_in_an_auth_message_lets_a_client_in() -> None:
    gw = await jwt_gateway()
    try:
        by_header = await Client.connect(gw, token=token())
        assert (await by_header.request(US))["type"] == "success"
        await by_header.push()
        by_query = await Client.connect(gw, f"/?token={token('bob')}")
        assert (await by_query.request(US))["type"] == "success"
        later = await Client.connect(gw, welcome=False)
        # Nothing, not even the welcome, before the token.
        with pytest.raises(TimeoutError):
            await later.recv(timeout=0.3)
        reply = await later.request({"action": "auth", "token": token("carol"), "id": 1})
        assert reply["type"] == "success" and reply["action"] == "auth" and reply["id"] == 1
        assert reply["subject"] == "carol" and reply["expires_ms"] > time.time() * 1000
        assert (await later.recv())["type"] == "welcome"
        assert (await later.request(US))["type"] == "success"
        stats = gw.stats()
        assert stats["auth_succeeded"] == 3 and stats["auth_failed"] == {}
        for c in (by_header, by_query, later):
            await c.close()
    finally:
        await gw.stop()


async def test_bad_tokens_at_the_handshake_get_401_with_the_reason() -> None:
    gw = await jwt_gateway(jwt_audience="quotes", jwt_issuer="https://auth.example")
    other = KeyRing.from_secret("another-secret-that-is-also-long-enough!!")
    now = time.time()
    good = dict(audience="quotes", issuer="https://auth.example")
    unsigned = jwt.encode({"sub": "eve", "exp": now + 60}, None, algorithm="none")
    cases = {
        "expired": token(ttl=-120, **good),
        "bad_signature": issue(other, "eve", 60, **good),
        "wrong_algorithm": unsigned,
        "unknown_kid": jwt.encode({"sub": "eve", "exp": now + 60}, SECRET, headers={"kid": "nope"}),
        "wrong_audience": token(audience="other", issuer="https://auth.example"),
        "wrong_issuer": token(audience="quotes", issuer="https://evil.example"),
        "not_yet_valid": issue(KEYS, "eve", 600, now=now + 300, **good),
        "missing_claim": jwt.encode(
            {"exp": now + 60, "aud": "quotes", "iss": "https://auth.example"}, SECRET
        ),
        "malformed": "not.a.jwt",
        "bad_claim": jwt.encode(
            {
                "sub": "eve",
                "exp": now + 60,
                "aud": "quotes",
                "iss": "https://auth.example",
                "symbols": ["$$$"],
            },
            SECRET,
        ),
    }
    try:
        for reason, bad in cases.items():
            status, body = await refused_status(gw, token=bad)
            assert (status, body) == (401, f"unauthenticated: {reason}\n".encode()), reason
            assert bad not in body.decode()
        assert gw.stats()["auth_failed"] == {reason: 1 for reason in cases}
        ok = await Client.connect(gw, token=token(**good))
        await ok.close()
        status, _, body = await asyncio.to_thread(http_get, gw.url.replace("ws", "http") + "metrics")
        assert status == 200
        assert b'tickgate_auth_failed_total{reason="expired"} 1.0' in body
        assert b"tickgate_auth_succeeded_total 1.0" in body
    finally:
        await gw.stop()


async def test_no_token_in_time_a_command_first_or_a_bad_auth_message_close_with_4001() -> None:
    # The eager and lying clients must be read before auth_timeout runs out (else they too are
    # closed for "no token in time"): it is long, and the silent client waits it out meanwhile.
    gw = await jwt_gateway(auth_timeout=4.0)
    try:
        silent = await Client.connect(gw, welcome=False)
        eager = await Client.connect(gw, welcome=False)
        await eager.send(US)
        code, reason, seen = await closed_with(eager)
        assert (code, reason) == (4001, "unauthenticated: no_token")
        assert seen[0]["code"] == "unauthenticated"
        liar = await Client.connect(gw, welcome=False)
        await liar.send({"action": "auth", "token": token(ttl=-120)})
        code, reason, seen = await closed_with(liar)
        assert (code, reason) == (4001, "unauthenticated: expired")
        assert seen == [{"type": "error", "code": "unauthenticated", "msg": "expired: Signature has expired"}]
        code, reason, seen = await closed_with(silent)
        assert (code, reason, seen) == (4001, "unauthenticated: no token in time", [])
        assert gw.stats()["auth_failed"] == {"timeout": 1, "no_token": 1, "expired": 1}
    finally:
        await gw.stop()


async def test_entitlements_refuse_symbols_outside_the_tokens_claim() -> None:
    gw = await jwt_gateway()
    try:
        us_only = await Client.connect(gw, token=token(symbols=["*$US", "700$HK"]))
        err = await us_only.request({"action": "subscribe", "symbols": ["AAPL$US", "9988$HK"], "id": 3})
        assert err["type"] == "error" and err["code"] == "not_entitled" and err["id"] == 3
        assert "9988$HK" in err["msg"] and "AAPL$US" not in err["msg"]
        assert (await us_only.request({"action": "query_subscribe"}))["channels"] == []  # atomic
        ok = await us_only.request({"action": "subscribe", "symbols": ["AAPL$US", "TSLA$US", "700$HK"]})
        assert ok["type"] == "success"
        await us_only.push(lambda m: m["data"]["symbol"] == "700$HK")
        # A fresh token with a narrower claim: what it no longer allows is dropped, and said.
        reply = await us_only.request({"action": "auth", "token": token(symbols=["AAPL$US"])})
        assert reply["type"] == "success"
        notice = await us_only.reply()
        assert notice["code"] == "not_entitled"
        assert notice["channels"] == ["700$HK:quote", "TSLA$US:quote"]
        assert (await us_only.request({"action": "query_subscribe"}))["channels"] == ["AAPL$US:quote"]
        assert gw.stats()["not_entitled"] == 1
        await us_only.close()
    finally:
        await gw.stop()


async def test_an_expiring_token_is_renewed_in_the_grace_period_or_the_client_is_closed() -> None:
    # Both timers are what the clients must beat, so neither is short: a token's exp is whole
    # seconds (ttl 4: valid 3 to 4 s, to connect and subscribe), and the grace (3 s) is the time
    # to answer token_expired with a fresh token.
    gw = await jwt_gateway(jwt_leeway=0.0, reauth_grace=3.0)
    try:
        renews = await Client.connect(gw, token=token("alice", ttl=4))
        lapses = await Client.connect(gw, token=token("bob", ttl=4))
        for c in (renews, lapses):
            await c.request(US)
        expired = await renews.reply()
        assert expired["type"] == "error" and expired["code"] == "token_expired"
        reply = await renews.request({"action": "auth", "token": token("alice", ttl=3600)})
        assert reply["type"] == "success" and reply["subject"] == "alice"
        assert (await lapses.reply())["code"] == "token_expired"
        code, reason, _ = await closed_with(lapses)
        assert (code, reason) == (4001, "token_expired: no fresh token in time")
        # The renewed client keeps streaming past the grace period (its deadline came and went).
        conn = gw.hub.live_connection(renews.welcome["session"])
        assert conn is not None
        await wait_until(lambda: not in_grace(gw, conn), what="the renewed client's grace period over")
        renews.pushes.clear()
        await renews.push()
        assert not conn.closed
        # A fresh token must name the same subject.
        await renews.send({"action": "auth", "token": token("mallory")})
        code, reason, _ = await closed_with(renews)
        assert (code, reason) == (4001, "unauthenticated: subject_changed")
        assert gw.stats()["auth_expired_closed"] == 1
    finally:
        await gw.stop()


async def test_a_session_resumes_only_for_the_subject_that_held_it() -> None:
    gw = await jwt_gateway()
    try:
        alice = await Client.connect(gw, token=token("alice"))
        await alice.request(US)
        session, epoch = alice.welcome["session"], alice.welcome["epoch"]
        await alice.close()
        await wait_until(lambda: gw.stats()["connections"] == 0)
        mallory = await Client.connect(gw, token=token("mallory"))
        stolen = await mallory.request({"action": "resume", "session": session, "epoch": epoch})
        assert stolen["recovered"] is False and stolen["reason"] == "unknown_session"
        assert (await mallory.request({"action": "query_subscribe"}))["channels"] == []
        back = await Client.connect(gw, token=token("alice"))
        resumed = await back.request({"action": "resume", "session": session, "epoch": epoch})
        assert resumed.get("reason") != "unknown_session", resumed
        assert (await back.request({"action": "query_subscribe"}))["channels"] == ["AAPL$US:quote"]
        # Nor can it be taken from its live connection.
        again = await mallory.request({"action": "resume", "session": session, "epoch": epoch})
        assert again["reason"] == "unknown_session"
        await back.request({"action": "ping"})  # still connected
        for c in (mallory, back):
            await c.close()
    finally:
        await gw.stop()


async def test_rotated_keys_keep_old_tokens_valid_for_the_grace_then_refuse_them(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    rotate(keys, "ES256", grace_s=3600)
    old = issue(KeyRing.from_file(keys), "alice", 3600)
    gw = await jwt_gateway(jwt_secret=None, jwt_keys=str(keys))
    try:
        first = await Client.connect(gw, token=old)
        await first.close()
        # The old key retires at a whole second 3 to 4 s away: time to show its tokens still let
        # clients in.
        new_kid = rotate(keys, "EdDSA", grace_s=4.0)
        new = issue(KeyRing.from_file(keys), "alice", 3600)
        assert jwt.get_unverified_header(new)["kid"] == new_kid
        gw.edge.reload()  # what SIGHUP does; without it the file is polled every 2 s
        for t in (old, new):
            c = await Client.connect(gw, token=t)
            await c.close()
        old_key = gw.hub.auth.verifier.keys.get(jwt.get_unverified_header(old)["kid"])
        assert old_key is not None and old_key.retire_at is not None
        await wait_until(lambda: old_key.retired(time.time()), what="the old key's grace over")
        status, body = await refused_status(gw, token=old)
        assert (status, body) == (401, b"unauthenticated: unknown_kid\n")
        c = await Client.connect(gw, token=new)
        await c.close()
        # A broken key file is not taken: the keys in use stay.
        keys.write_text("{not json")
        gw.edge.reload()
        c = await Client.connect(gw, token=new)
        await c.close()
        assert gw.stats()["key_reload_failures"] == 1
    finally:
        await gw.stop()


async def test_the_audit_log_records_auth_subscriptions_and_disconnects(tmp_path: Path) -> None:
    gw = await jwt_gateway(audit_dir=str(tmp_path))
    try:
        await refused_status(gw, token=token(ttl=-120))
        alice = await Client.connect(gw, token=token("alice"))
        await alice.request(US)
        await alice.request({"action": "unsubscribe", "symbols": ["AAPL$US"]})
        await alice.close()
        await wait_until(lambda: gw.stats()["connections"] == 0)
    finally:
        await gw.stop()
    (path,) = tmp_path.glob("audit-*.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    events = [(e["event"], e.get("sub"), e.get("ok"), e.get("reason")) for e in lines]
    assert events == [
        ("auth", None, False, "expired"),
        ("auth", "alice", True, None),
        ("subscribe", "alice", None, None),
        ("unsubscribe", "alice", None, None),
        ("disconnect", "alice", None, "closed by the client"),
    ], events
    assert lines[2]["channels"] == ["AAPL$US:quote"] and lines[4]["code"] == 1000
    assert all(line["addr"].startswith("127.0.0.1:") for line in lines)
    assert SECRET not in path.read_text()


async def test_the_binary_protocol_authenticates_with_a_client_message() -> None:
    from websockets.asyncio.client import connect

    from tickgate import proto

    gw = await jwt_gateway()
    try:
        async with connect(gw.url, subprotocols=["tickgate.v1.proto"], ping_interval=None) as ws:  # type: ignore[list-item]
            await ws.send(proto.ClientMessage(action="auth", token=token("dana"), id="a").SerializeToString())
            reply = proto.ServerMessage.FromString(await ws.recv()).reply
            assert (reply.type, reply.action, reply.subject, reply.id) == ("success", "auth", "dana", "a")
            assert reply.expires_ms > time.time() * 1000
            assert proto.ServerMessage.FromString(await ws.recv()).reply.type == "welcome"
    finally:
        await gw.stop()


async def test_the_upstream_fair_share_is_per_subject_not_per_connection() -> None:
    gw = await jwt_gateway(upstream_symbols_per_connection=5, upstream_max_symbols=100)

    def subscribe(names: list[str]) -> dict[str, object]:
        return {"action": "subscribe", "symbols": names, "types": ["quote"]}

    try:
        first = await Client.connect(gw, token=token("alice"))
        second = await Client.connect(gw, token=token("alice"))
        other = await Client.connect(gw, token=token("bob"))
        assert (await first.request(subscribe([f"A{i}$US" for i in range(5)])))["type"] == "success"
        refused = await second.request(subscribe(["A9$US"]))
        assert refused["code"] == "capacity", refused
        assert (await other.request(subscribe([f"B{i}$US" for i in range(5)])))["type"] == "success"
        # Symbols already streamed cost nobody a share.
        assert (await second.request(subscribe(["A0$US"])))["type"] == "success"
        await first.close()
        await wait_until(lambda: gw.stats()["connections"] == 2)
        assert (await second.request(subscribe(["A9$US"])))["type"] == "success"
        for c in (second, other):
            await c.close()
    finally:
        await gw.stop()


async def test_hostile_tokens_and_headers_are_refused_cleanly(tmp_path: Path) -> None:
    import base64
    import hashlib
    import hmac

    gw = await jwt_gateway(reauth_grace=0.5)
    deep = base64.urlsafe_b64encode(b"[" * 3000 + b"]" * 3000).rstrip(b"=").decode() + ".e30.sig"
    try:
        assert (await refused_status(gw, token=deep)) == (401, b"unauthenticated: malformed\n")
        # An exp no float can hold is a refusal, not a crash.
        body = base64.urlsafe_b64encode(b'{"sub":"eve","exp":1' + b"0" * 400 + b"}").rstrip(b"=")
        head = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
        signing = head + b"." + body
        sig = base64.urlsafe_b64encode(hmac.new(SECRET.encode(), signing, hashlib.sha256).digest()).rstrip(
            b"="
        )
        status, _ = await refused_status(gw, token=(signing + b"." + sig).decode())
        assert status == 401

        # Header bytes past ASCII and too many query fields: 401 and 400, never a 500.
        async def status_of(path: str, extra: bytes = b"") -> int:
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(
                b"GET /" + path.encode() + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n" + extra + b"\r\n"
            )
            line = await asyncio.wait_for(reader.readline(), TIMEOUT)
            writer.close()
            return int(line.split()[1])

        assert await status_of("", b"Authorization: B\xe9arer x\r\n") == 101  # no bearer token: in, to auth
        assert await status_of("?" + "&".join(f"a{i}=1" for i in range(20))) == 400
        # The same token sent again and again adds nothing to watch.
        c = await Client.connect(gw, token=token())
        same = token()
        for _ in range(40):
            await c.request({"action": "auth", "token": same})
        assert gw.hub.auth is not None and len(gw.hub.auth._due) <= 3
        await c.close()
    finally:
        await gw.stop()


async def test_connections_on_a_key_taken_out_of_the_file_are_cut_off(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    rotate(keys, "ES256", grace_s=3600)
    leaked = issue(KeyRing.from_file(keys), "alice", 3600)
    gw = await jwt_gateway(jwt_secret=None, jwt_keys=str(keys), reauth_grace=0.5)
    try:
        c = await Client.connect(gw, token=leaked)
        await c.request(US)
        # The leaked key is replaced by a new one (not kept for a grace period).
        data = json.loads(keys.read_text())
        rotate(keys, "ES256")
        data["keys"] = [k for k in json.loads(keys.read_text())["keys"] if k["kid"] != data["keys"][0]["kid"]]
        keys.write_text(json.dumps(data))
        gw.edge.reload()
        assert (await c.reply())["code"] == "token_expired"
        code, reason, _ = await closed_with(c)
        assert (code, reason) == (4001, "token_expired: no fresh token in time")
        # A key entry PyJWT cannot read is refused like any broken file.
        keys.write_text(json.dumps({"keys": [{"kty": "oct", "kid": "x", "alg": "HS256"}]}))
        gw.edge.reload()
        assert gw.stats()["key_reload_failures"] == 1
    finally:
        await gw.stop()
