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

from gatewaykit import TIMEOUT, http_get, wait_until
from tickgate.edge.admission import derive_max_connections
from tickgate.logs import LOG_INTERVAL_S

FILE_LIMIT = 200
ADMITTED = derive_max_connections(FILE_LIMIT)
#: How long `tickgate serve` may take to say it serves: a node starts its workers one by one,
#: each in about a second on a loaded 2-core runner.
START_S = 60.0
#: A spinning process uses a whole core: CPU time equal to the time watched. The gateway's
#: normal use here is a few per cent, so half of the time watched is a huge margin that a
#: loaded machine (which slows the process, never makes it use more CPU) does not reach.
SPIN_SHARE = 0.5


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
            stdout=subprocess.PIPE,
            stderr=log,
            preexec_fn=_limit_files,
            env={**os.environ, "TICKGATE_CLIENT_TRANSPORT": transport},
        )
        try:
            # "tickgate serving on ..." comes once every worker listens: /healthz alone can be
            # answered by the first edge of a node while the next one is still starting.
            assert proc.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), START_S)
            assert b"serving on" in line, Path(log.name).read_text()
            await wait_until(
                lambda: proc.poll() is not None or _status_or_none(port) == 200, what="a healthy gateway"
            )
            assert proc.poll() is None, Path(log.name).read_text()
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


def _metrics(port: int) -> str:
    return http_get(f"http://127.0.0.1:{port}/metrics")[2].decode()


async def _client(port: int) -> ClientConnection:
    return await connect(
        f"ws://127.0.0.1:{port}/", open_timeout=TIMEOUT, close_timeout=0.5, ping_interval=None
    )


async def _next_push(ws: ClientConnection) -> dict[str, object]:
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        if msg.get("type") == "stock_quote":
            return msg


def _dropped_by_peer(s: socket.socket) -> bool:
    """Whether the other end closed ``s`` (a non-blocking socket that never gets data)."""
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True


async def test_clients_past_the_limit_get_503_and_the_others_keep_their_data() -> None:
    async with low_limit_gateway() as (_proc, port, log_path):
        admitted: list[ClientConnection] = []
        try:
            for _ in range(ADMITTED):
                admitted.append(await _client(port))
            refusing_from = time.monotonic()
            for _ in range(5):
                with pytest.raises(InvalidStatus) as refused:
                    await _client(port)
                assert refused.value.response.status_code == 503
                assert refused.value.response.headers["Retry-After"] == "5"
            refusing_s = time.monotonic() - refusing_from
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

            # A freed place is taken again, once the gateway has seen it freed.
            await admitted.pop().close()
            await wait_until(
                lambda: f"tickgate_connections {float(ADMITTED - 1)}" in _metrics(port), what="a freed place"
            )
            admitted.append(await _client(port))
            welcome = json.loads(await asyncio.wait_for(admitted[-1].recv(), TIMEOUT))
            assert welcome["type"] == "welcome"  # sent once the gateway counts the client
            assert f"tickgate_connections {float(ADMITTED)}" in await asyncio.to_thread(_metrics, port)
        finally:
            await asyncio.gather(*(ws.close() for ws in admitted), return_exceptions=True)
        with open(log_path) as fh:
            refusals = [line for line in fh if "at max_connections" in line]
        # Rate-limited: one line for the five refusals, which take well under LOG_INTERVAL_S; a
        # stalled machine stretching them could make it one more line per interval they took.
        assert 1 <= len(refusals) <= 1 + int(refusing_s // LOG_INTERVAL_S), (refusals, refusing_s)


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
            # The node-wide figures are relayed between workers: waited for, not read at once.
            await wait_until(
                lambda: f"tickgate_connections {float(workers * ADMITTED)}" in _metrics(port),
                what="every admitted client in the node's metrics",
            )
            metrics = await asyncio.to_thread(_metrics, port)
            assert f"tickgate_max_connections {float(workers * ADMITTED)}" in metrics
            first, last = admitted[0], admitted[-1]
            for ws in (first, last):
                await ws.send(json.dumps({"action": "subscribe", "symbols": ["AAPL$US"], "types": ["quote"]}))
                await _next_push(ws)
            # A spin detector, not a benchmark (see SPIN_SHARE): two seconds watched, the share
            # taken of the time that really passed.
            before, t0 = _tree_cpu_seconds(proc.pid), time.monotonic()
            await asyncio.sleep(2.0)
            cpu, watched = _tree_cpu_seconds(proc.pid) - before, time.monotonic() - t0
            assert cpu < SPIN_SHARE * watched, (
                f"the node used {cpu:.2f} s of CPU in {watched:.2f} s at its admission limit"
            )
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
                s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
                s.setblocking(False)
                hogs.append(s)

            def out_of_descriptors() -> bool:
                if transport == "aiofastnet":  # its accept fails with EMFILE, reported (throttled)
                    return "out of file descriptors accepting clients" in Path(log_path).read_text()
                # uvloop's server reports nothing: libuv closes at once what it cannot accept.
                return any(_dropped_by_peer(s) for s in hogs)

            await wait_until(out_of_descriptors, what="the gateway out of descriptors")
            # A spin detector, not a benchmark (see SPIN_SHARE): two seconds watched (the half-open
            # handshakes time out after a few), the share taken of the time that really passed.
            before, t0 = _cpu_seconds(proc.pid), time.monotonic()
            pushes = 0
            while time.monotonic() - t0 < 2.0:
                await _next_push(ws)  # the admitted client keeps its data meanwhile
                pushes += 1
            cpu, watched = _cpu_seconds(proc.pid) - before, time.monotonic() - t0
            assert pushes > 0
            assert cpu < SPIN_SHARE * watched, (
                f"gateway used {cpu:.2f} s of CPU in {watched:.2f} s while out of descriptors"
            )
        finally:
            for s in hogs:
                s.close()
        # The half-open handshakes time out, descriptors come back, accepting resumes by itself.
        await wait_until(
            lambda: _status_or_none(port) == 200, what="accepting again once descriptors came back"
        )
        await ws.close()
        log_size = os.path.getsize(log_path)
        assert log_size < 20_000, f"{log_size} bytes of log while out of descriptors"
