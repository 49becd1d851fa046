"""Minimal reproduction, for an upstream report: aiofastnet 1.2.0 spins at 100 % CPU on EMFILE.

    .venv/bin/python tools/repro/aiofastnet_emfile.py

``Server._accept_connection`` (aiofastnet/api_utils.py) handles EMFILE by calling
``listening_sock.remove_reader(listening_sock.fileno())``: a ``socket.socket`` has no
``remove_reader`` (the loop has), so the AttributeError escapes to the loop's exception handler,
the reader is never removed, the next loop turn reports the socket readable again, and the
process spins, logging each time. Expected: the reader removed and re-added after
ACCEPT_RETRY_DELAY, as asyncio's own selector loop does. Prints the CPU seconds the server
process used in 2 s while its descriptors were exhausted, and the log lines it wrote.
"""

import os
import resource
import socket
import subprocess
import sys
import tempfile
import time

SERVER = r"""
import asyncio, resource, sys
import aiofastnet
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
async def main():
    loop = asyncio.get_running_loop()
    server = await aiofastnet.create_server(loop, asyncio.Protocol, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(30)
asyncio.run(main())
"""


def cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    log = tempfile.TemporaryFile()  # noqa: SIM115 - not a pipe: a full one would block the spinning server
    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, stderr=log)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
    time.sleep(0.5)
    before = cpu(proc.pid)
    time.sleep(2)
    used = cpu(proc.pid) - before
    proc.kill()
    proc.wait()
    log.seek(0)
    err = log.read().decode(errors="replace")
    for s in socks:
        s.close()
    print(
        f"server CPU while out of descriptors: {used:.2f} s in 2 s; "
        f"{err.count('AttributeError')} AttributeError tracebacks, {len(err)} bytes of log"
    )


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    main()
