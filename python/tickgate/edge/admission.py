"""Admission: how many clients one process takes, and listening sockets that survive running
out of file descriptors.

A process that runs out of descriptors can no longer accept anything, answer ``/healthz``, open
its upstream again or even log to a file. So each process admits at most ``max_connections``
WebSocket clients, below its file limit with headroom for everything else (the upstream, the
listening sockets, clients still in their handshake, health checks); past it a client gets an
HTTP 503 at once and is closed. Should the limit be reached anyway (a flood of half-open
handshakes), accepting pauses for a second and resumes by itself, logging a throttled line.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import resource
import socket
import time
from collections.abc import Callable
from typing import Any

from tickgate.logs import LogThrottle

__all__ = [
    "ListeningSocket",
    "derive_max_connections",
    "install_accept_error_filter",
    "open_listeners",
    "raise_file_limit",
]

log = logging.getLogger("tickgate.edge")

#: Descriptors kept free for everything that is not an admitted client: at least this many...
MIN_HEADROOM = 64
#: ...or this share of the file limit, whichever is larger.
HEADROOM_SHARE = 0.05
#: Pending connections the kernel queues per listening socket while the process is busy.
LISTEN_BACKLOG = 4096
#: The resource-exhaustion message asyncio-style servers report on EMFILE.
_ACCEPT_EXHAUSTED = "socket.accept() out of system resource"


def raise_file_limit() -> int:
    """Raises this process's soft file limit to its hard limit; returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as e:  # a sandbox may refuse; keep what we have
            log.warning("cannot raise the file limit from %d to %d: %s", soft, hard, e)
    return soft


def derive_max_connections(file_limit: int) -> int:
    """The default admission limit for a process allowed ``file_limit`` descriptors."""
    headroom = max(MIN_HEADROOM, int(file_limit * HEADROOM_SHARE))
    return max(1, file_limit - headroom)


class ListeningSocket(socket.socket):
    """A listening socket for picows's server layer (aiofastnet 1.2.0).

    On EMFILE that layer means to stop watching the socket for a second, but calls
    ``remove_reader`` on the socket object instead of the loop; a plain socket has no such
    method, the AttributeError is swallowed by the loop and accepting is never paused, so the
    process spins at 100 % CPU logging the error. This method makes the call do what was meant.
    """

    def remove_reader(self, fd: int) -> None:
        asyncio.get_running_loop().remove_reader(fd)


def open_listeners(host: str, port: int, *, reuse_port: bool = False) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for ``host`` (every address it resolves to; all
    interfaces for ``""``) and ``port``. ``reuse_port`` lets several processes share the port,
    the kernel spreading new connections over them."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _name, address in dict.fromkeys(infos):
            sock = ListeningSocket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                # One port for every address when the kernel picks it.
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
            sock.listen(LISTEN_BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def install_accept_error_filter(loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """Throttles aiofastnet's "out of system resource" reports (one each time accepting pauses)
    to one line per ``LOG_INTERVAL_S``, with a count, instead of a traceback each. Other reports
    go to the handler that was there before. Returns the function that puts that one back (an
    embedding service keeps its own handler after the gateway stops)."""
    previous = loop.get_exception_handler()
    throttle = LogThrottle(log)

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != _ACCEPT_EXHAUSTED:
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        throttle.log(
            logging.ERROR,
            "out of file descriptors accepting clients: %s; accepting paused for a second",
            context.get("exception"),
        )

    loop.set_exception_handler(handler)
    return lambda: loop.set_exception_handler(previous)


class AddressRate:
    """New connections per source address: a token bucket each (``rate`` per second, bursts
    up to ``burst``), so one address cannot take the node's connection slots or its
    handshake CPU in a burst. Addresses in ``exempt`` (networks; loopback by default, where
    sidecars, health checks and load tests connect from) are not counted.

    Memory is bounded: past ``max_addresses`` buckets, those that have refilled (an address
    quiet long enough to be back at a full burst) are forgotten, and if that is not enough
    the oldest are."""

    def __init__(self, rate: float, burst: int, exempt: str | None, max_addresses: int = 100_000) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._max = max_addresses
        self._buckets: dict[str, tuple[float, float]] = {}
        self._exempt = [
            ipaddress.ip_network(n.strip(), strict=False) for n in (exempt or "").split(",") if n.strip()
        ]
        #: Connections refused (HTTP 429).
        self.refused = 0

    def allows(self, address: str, now: float | None = None) -> bool:
        try:
            ip: Any = ipaddress.ip_address(address)
        except ValueError:
            ip = None
        if ip is not None and ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # an IPv4 client on a dual-stack socket
        if ip is not None and any(ip in net for net in self._exempt):
            return True
        if ip is not None:
            # IPv6 by /64: one host commonly holds a whole /64, and would otherwise get a
            # fresh bucket per address it makes up.
            address = str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)
        now = time.monotonic() if now is None else now
        allowance, at = self._buckets.pop(address, (self._burst, now))
        allowance = min(self._burst, allowance + (now - at) * self._rate)
        allowed = allowance >= 1.0
        self._buckets[address] = (allowance - 1.0 if allowed else allowance, now)  # newest last
        if not allowed:
            self.refused += 1
        if len(self._buckets) > self._max:
            self._forget(now)
        return allowed

    def _forget(self, now: float) -> None:
        full = [a for a, (left, at) in self._buckets.items() if left + (now - at) * self._rate >= self._burst]
        for address in full:
            del self._buckets[address]
        excess = len(self._buckets) - self._max // 2
        if excess > 0 and len(self._buckets) > self._max * 3 // 4:
            for address in list(itertools.islice(self._buckets, excess)):
                del self._buckets[address]
