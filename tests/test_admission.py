"""Admission at the file limit: a real `tickgate serve` process under `ulimit -n 200`.

Clients past the admission limit get a quick 503 while the admitted ones keep their data and
`/healthz` keeps answering; running out of descriptors anyway (half-open connections that never
finish their handshake) pauses accepting without spinning or flooding the log, and the gateway
recovers by itself."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from gatewaykit import http_get
from tickgate.edge.admission import derive_max_connections

FILE_LIMIT = 200
ADMITTED = derive_max_connections(FILE_LIMIT)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree_cpu_seconds(pid: int) -> float:
    """CPU of ``pid`` and its children (a node's supervisor and workers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return _cpu_seconds(pid) + sum(_cpu_seconds(int(c)) for c in children)


def _limit_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, FILE_LIMIT))


@contextlib.asynccontextmanager
async def low_limit_gateway(
    transport: str = "uvloop", workers: int = 0
) -> AsyncIterator[tuple[subprocess.Popen[bytes], int, str]]:
    port = _free_port()
    with tempfile.NamedTemporaryFile(prefix="tickgate-admission-", suffix=".log") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tickgate", "serve", "--port", str(port), "--log-level", "info"]
            + (["--workers", str(workers)] if workers else []),
            stdout=subprocess.DEVNULL,
            stderr=log,
            preexec_fn=_limit_files,
            env={**os.environ, "TICKGATE_CLIENT_TRANSPORT": transport},
        )
        try:
            deadline = time.monotonic() + 20
            while await asyncio.to_thread(_status_or_none, port) != 200:
                assert proc.poll() is None, Path(log.name).read_text()
                assert time.monotonic() < deadline, "gateway did not become healthy"
                await asyncio.sleep(0.1)
            yield proc, port, log.name
        finally:
            proc.kill()
            proc.wait()


def _status_or_none(port: int) -> int | None:
    """The /healthz status, or None while nothing answers."""
    try:
        return http_get(f"http://127.0.0.1:{port}/healthz")[0]
    except OSError:
        return None


async def _client(port: int) -> ClientConnection:
    return await connect(f"ws://127.0.0.1:{port}/", open_timeout=5, close_timeout=0.5, ping_interval=None)


async def _next_push(ws: ClientConnection) -> dict[str, object]:
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if msg.get("type") == "stock_quote":
            return msg


async def test_clients_past_the_limit_get_503_and_the_others_keep_their_data() -> None:
    async with low_limit_gateway() as (_proc, port, log_path):
        admitted: list[ClientConnection] = []
        try:
            for _ in range(ADMITTED):
                admitted.append(await _client(port))
            for _ in range(5):
                with pytest.raises(InvalidStatus) as refused:
                    await _client(port)
                assert refused.value.response.status_code == 503
                assert refused.value.response.headers["Retry-After"] == "5"
            assert await asyncio.to_thread(_status_or_none, port) == 200
            metrics = (await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/metrics"))[2].decode()
            assert f"tickgate_connections {float(ADMITTED)}" in metrics
            assert "tickgate_connections_refused_total 5.0" in metrics
            assert f"tickgate_max_connections {float(ADMITTED)}" in metrics

            first, last = admitted[0], admitted[-1]
            for ws in (first, last):
                await ws.send(json.dumps({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]}))
            seqs = [(await _next_push(ws))["data"]["seq"] for ws in (first, last)]  # type: ignore[index]
            assert all(isinstance(s, int) for s in seqs)

            # A freed place is taken again.
            await admitted.pop().close()
            await asyncio.sleep(0.2)
            admitted.append(await _client(port))
        finally:
            await asyncio.gather(*(ws.close() for ws in admitted), return_exceptions=True)
        with open(log_path) as fh:
            refusals = [line for line in fh if "at max_connections" in line]
        assert len(refusals) == 1  # rate-limited: one line for the five refusals


async def test_each_worker_of_a_node_admits_below_its_own_file_limit() -> None:
    workers = 2
    async with low_limit_gateway(workers=workers) as (proc, port, _log_path):
        admitted: list[ClientConnection] = []
        refused = 0
        try:
            # The kernel spreads clients over the workers by address hash: keep connecting
            # until every worker is full (refusals come from whichever is full already).
            for _ in range(4 * workers * ADMITTED):
                try:
                    admitted.append(await _client(port))
                except InvalidStatus as e:
                    assert e.response.status_code == 503
                    refused += 1
                if len(admitted) == workers * ADMITTED and refused >= 3:
                    break
            assert len(admitted) == workers * ADMITTED and refused >= 3
            metrics = ""
            deadline = time.monotonic() + 10
            while f"tickgate_connections {float(workers * ADMITTED)}" not in metrics:
                assert time.monotonic() < deadline, metrics
                await asyncio.sleep(0.2)
                metrics = (await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/metrics"))[2].decode()
            assert f"tickgate_max_connections {float(workers * ADMITTED)}" in metrics
            first, last = admitted[0], admitted[-1]
            for ws in (first, last):
                await ws.send(json.dumps({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]}))
                await _next_push(ws)
            before = _tree_cpu_seconds(proc.pid)
            await asyncio.sleep(2.0)
            cpu = _tree_cpu_seconds(proc.pid) - before
            assert cpu < 0.5, f"the node used {cpu:.2f} s of CPU in 2 s at its admission limit"
        finally:
            await asyncio.gather(*(ws.close() for ws in admitted), return_exceptions=True)


# aiofastnet's server spins on EMFILE unless tickgate's ListeningSocket works around it.
@pytest.mark.parametrize("transport", ["uvloop", "aiofastnet"])
async def test_running_out_of_descriptors_pauses_accepting_without_spinning(transport: str) -> None:
    async with low_limit_gateway(transport) as (proc, port, log_path):
        ws = await _client(port)
        await ws.send(json.dumps({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]}))
        await _next_push(ws)
        # Half-open connections that never send a handshake take every descriptor left.
        hogs = []
        try:
            for _ in range(FILE_LIMIT + 20):
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
                hogs.append(s)
            await asyncio.sleep(0.5)
            before = _cpu_seconds(proc.pid)
            t0 = time.monotonic()
            pushes = 0
            while time.monotonic() - t0 < 2.0:
                await _next_push(ws)  # the admitted client keeps its data meanwhile
                pushes += 1
            cpu = _cpu_seconds(proc.pid) - before
            assert pushes > 0
            assert cpu < 0.5, f"gateway used {cpu:.2f} s of CPU in 2 s while out of descriptors"
        finally:
            for s in hogs:
                s.close()
        # The half-open handshakes time out, descriptors come back, accepting resumes by itself.
        deadline = time.monotonic() + 15
        while await asyncio.to_thread(_status_or_none, port) != 200:
            assert time.monotonic() < deadline, "gateway did not recover after the descriptors came back"
            await asyncio.sleep(0.2)
        await ws.close()
        log_size = os.path.getsize(log_path)
        assert log_size < 20_000, f"{log_size} bytes of log while out of descriptors"
