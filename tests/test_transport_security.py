"""WSS end to end with a certificate the test makes, the per-address connection rate, and the
command line's keys / token / serve --auth path with a key rotation picked up on SIGHUP."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from gatewaykit import TIMEOUT, Client, http_get, start_gateway
from tickgate.config import ConfigError, GatewayConfig
from tickgate.edge.admission import AddressRate


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tickgate test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def test_wss_end_to_end_with_a_token(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    secret = "a-test-secret-that-is-long-enough-for-hs256"
    gw = await start_gateway(
        None, simulator_rate=20.0, tls_cert=str(cert), tls_key=str(key), auth="jwt", jwt_secret=secret
    )
    trusting = ssl.create_default_context(cafile=str(cert))
    try:
        assert gw.url.startswith("wss://127.0.0.1:")
        from tickgate.auth import KeyRing, issue

        client = await Client.connect(gw, token=issue(KeyRing.from_secret(secret), "alice", 60), ssl=trusting)
        reply = await client.request({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]})
        assert reply["type"] == "success"
        push = await client.push()
        assert push["data"]["symbol"] == "AAPL$US"
        await client.close()
        # A client that does not trust the certificate does not get in; a plain ws:// one
        # does not speak TLS.
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect(gw.url, open_timeout=TIMEOUT)
        with pytest.raises(Exception):  # noqa: B017 - whatever a TLS port answers to plain HTTP
            await connect(gw.url.replace("wss://", "ws://"), open_timeout=TIMEOUT)
        # /healthz over https too.
        ctx = ssl.create_default_context(cafile=str(cert))

        def get() -> int:
            import urllib.request

            url = gw.url.replace("wss", "https") + "healthz"
            with urllib.request.urlopen(url, context=ctx, timeout=TIMEOUT) as r:
                return r.status

        assert await asyncio.to_thread(get) == 200
    finally:
        await gw.stop()


async def test_one_address_opening_too_many_connections_gets_429() -> None:
    gw = await start_gateway(
        None,
        simulator_rate=0.0,
        connection_rate_exempt=None,
        # A token every 20 s: the fourth connection is refused however slowly the first three came.
        connection_rate_per_address=0.05,
        connection_burst_per_address=3,
    )
    try:
        clients = [await Client.connect(gw) for _ in range(3)]
        with pytest.raises(InvalidStatus) as refused:
            await Client.connect(gw)
        assert refused.value.response.status_code == 429
        assert refused.value.response.headers["Retry-After"] == "1"
        assert gw.stats()["address_rate_refused"] == 1
        _, _, body = await asyncio.to_thread(http_get, gw.url.replace("ws", "http") + "metrics")
        assert b"tickgate_address_rate_refused_total 1.0" in body
        for c in clients:
            await c.close()
    finally:
        await gw.stop()


def test_address_rate_is_per_address_refills_and_stays_bounded() -> None:
    rate = AddressRate(rate=1.0, burst=2, exempt="10.0.0.0/8", max_addresses=100)
    assert [rate.allows("192.0.2.1", now=0.0) for _ in range(3)] == [True, True, False]
    assert rate.allows("192.0.2.2", now=0.0)  # another address has its own bucket
    assert rate.allows("192.0.2.1", now=1.0)  # refilled one
    assert all(rate.allows("10.1.2.3", now=0.0) for _ in range(50))  # exempt
    for i in range(10_000):
        rate.allows(f"2001:db8:{i:x}::1", now=float(i))  # 10,000 different /64s
    assert len(rate._buckets) <= 100
    refused = rate.refused
    # An IPv4 client seen on a dual-stack socket is the IPv4 address (exempt here).
    assert all(rate.allows("::ffff:10.1.2.3", now=0.0) for _ in range(10))
    # IPv6 is counted per /64: making up addresses in one's /64 buys nothing.
    v6 = [rate.allows(f"2001:db8:1:2::{i:x}", now=20_000.0) for i in range(3)]
    assert v6 == [True, True, False] and rate.refused == refused + 1


def test_security_settings_are_checked_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one of jwt_keys"):
        GatewayConfig(auth="jwt")
    with pytest.raises(ConfigError, match="tls_cert and tls_key"):
        GatewayConfig(tls_cert="x.pem")
    with pytest.raises(ConfigError, match="not a network"):
        GatewayConfig(connection_rate_exempt="127.0.0.0/8,nonsense")
    from tickgate.gateway import Gateway

    with pytest.raises(ConfigError, match="at least 32 bytes"):
        Gateway(GatewayConfig(auth="jwt", jwt_secret="short"))
    with pytest.raises(ConfigError, match="does not exist"):
        Gateway(GatewayConfig(auth="jwt", jwt_keys=str(tmp_path / "missing.json")))
    with pytest.raises(ConfigError, match="tls_cert"):
        Gateway(GatewayConfig(tls_cert=str(tmp_path / "c.pem"), tls_key=str(tmp_path / "k.pem")))


AUTH = ("--auth", "jwt", "--jwt-keys")


async def _tickgate(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m tickgate ARGS``, waited for by the loop: subprocess.run's timeout polls with
    time.sleep, which a moved clock (libfaketime) breaks (EINVAL)."""
    command = [sys.executable, "-m", "tickgate", *args]
    pipe = subprocess.PIPE
    proc = await asyncio.create_subprocess_exec(*command, stdout=pipe, stderr=pipe)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return subprocess.CompletedProcess(command, proc.returncode, out.decode(), err.decode())


async def test_cli_rotates_keys_issues_tokens_and_a_node_reloads_them_on_sighup(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    assert (await _tickgate("keys", "rotate", "--jwt-keys", str(keys))).returncode == 0
    assert oct(keys.stat().st_mode & 0o777) == "0o600"
    old = await _tickgate(
        "token", "--sub", "alice", "--ttl", "1h", "--symbols", "*$US", "--jwt-keys", str(keys)
    )
    assert old.returncode == 0, old.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickgate", "serve", "--port", "0", "--workers", "1", *AUTH, str(keys)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)  # type: ignore[union-attr]
        url = line.split()[-1]
        assert url.startswith("ws://")

        async def status(token: str) -> int:
            try:
                headers = {"Authorization": f"Bearer {token}"}
                async with connect(url, additional_headers=headers, open_timeout=TIMEOUT) as ws:
                    assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["type"] == "welcome"
                    return 101
            except InvalidStatus as e:
                return e.response.status_code

        assert await status(old.stdout.strip()) == 101
        assert await status("garbage") == 401
        # A new key, and a token signed with it, taken at once on SIGHUP (forwarded to the
        # edge workers) rather than at the next poll.
        assert (await _tickgate("keys", "rotate", "--jwt-keys", str(keys), "--alg", "EdDSA")).returncode == 0
        new = (await _tickgate("token", "--sub", "bob", "--jwt-keys", str(keys))).stdout.strip()
        os.kill(proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + TIMEOUT
        while (got := await status(new)) != 101 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # a poll: the worker may not have reloaded yet
        assert got == 101
        assert await status(old.stdout.strip()) == 101  # the old key is in its grace period
        assert proc.poll() is None  # SIGHUP reloads; it never stops the node
    finally:
        proc.send_signal(signal.SIGTERM)
        # proc.wait(timeout=) would poll with time.sleep (see _tickgate): a thread waits instead.
        await asyncio.wait_for(asyncio.to_thread(proc.wait), 30)
    bad = await _tickgate("serve", "--auth", "jwt", "--jwt-secret", "short")
    assert bad.returncode == 2 and "at least 32 bytes" in bad.stderr
