"""The audit log: who connected, was refused, subscribed to what, and why each connection ended.

JSON lines, one file per UTC day (``audit-2026-11-30.jsonl``) in ``audit_dir``, files older
than ``audit_keep_days`` removed. Lines are gathered in memory and written once a second (or
when 64 KiB are waiting) with one ``write`` on a file opened ``O_APPEND``, so the edge workers
of a node share a day's file without interleaving lines and the event loop never waits on a
write per event. If the disk stops taking writes, what waits is capped
(``MAX_PENDING_BYTES``): lines past it are dropped and counted, never held without bound.

    {"ts":"2026-11-30T23:41:07.123Z","event":"auth","sub":"alice","addr":"10.0.0.7:51234","ok":true}
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from tickgate.logs import LogThrottle

__all__ = ["AuditLog"]

log = logging.getLogger("tickgate.audit")

FLUSH_S = 1.0
FLUSH_BYTES = 64 * 1024
MAX_PENDING_BYTES = 8 * 1024 * 1024
_NAME = re.compile(r"^audit-(\d{4}-\d{2}-\d{2})\.jsonl$")
_encode = msgspec.json.Encoder().encode


class AuditLog:
    def __init__(
        self, directory: str | Path, keep_days: int = 90, clock: Callable[[], float] = time.time
    ) -> None:
        """``clock``: seconds since the epoch; it stamps the lines and names the day's file (a
        test sets the date through it)."""
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.keep_days = keep_days
        self._clock = clock
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._day = ""
        self._fd: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._error_log = LogThrottle(log)
        # The last write failed or was short: only the timer tries again.
        self._failing = False
        #: Lines written, and dropped because the disk did not keep up.
        self.written = 0
        self.dropped = 0

    def start(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(FLUSH_S, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def record(self, event: str, **fields: Any) -> None:
        """One event; fields that are None are left out."""
        line = {"ts": _timestamp(self._clock()), "event": event}
        line.update((k, v) for k, v in fields.items() if v is not None)
        data = _encode(line) + b"\n"
        if self._pending_bytes + len(data) > MAX_PENDING_BYTES:
            self.dropped += 1
            return
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= FLUSH_BYTES and not self._failing:
            self.flush()  # after a failure only the timer tries again, not every line

    def _tick(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(FLUSH_S, self._tick)
        self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        # Lines are filed by the day they are written in (at most FLUSH_S after the event).
        data = b"".join(self._pending)
        lines = len(self._pending)
        self._pending.clear()
        try:
            fd = self._file(self._today().strftime("%Y-%m-%d"))
            done = os.write(fd, data)
        except OSError as e:
            done = 0
            self._error_log.log(logging.ERROR, "audit log not written (%s); %d lines waiting", e, lines)
        if done < len(data):
            # What did not go out waits, whole lines and a cut line's rest alike, so no line in
            # the file runs into the next.
            rest = data[done:]
            self._pending.append(rest)
            self._pending_bytes = len(rest)
            self._failing = True
            self.written += data.count(b"\n", 0, done)
            return
        self._failing = False
        self.written += data.count(b"\n")  # lines (a retried rest holds several)
        self._pending_bytes = 0

    def _file(self, day: str) -> int:
        if day != self._day or self._fd is None:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            path = self.directory / f"audit-{day}.jsonl"
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            self._day = day
            self.prune()
        return self._fd

    def prune(self, today: datetime | None = None) -> list[Path]:
        """Removes the day files older than ``keep_days``; returns what it removed."""
        oldest = ((today or self._today()) - timedelta(days=self.keep_days)).strftime("%Y-%m-%d")
        removed = []
        for path in self.directory.iterdir():
            m = _NAME.match(path.name)
            if m and m.group(1) < oldest:
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed.append(path)
        return removed

    def _today(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)


def _timestamp(now: float) -> str:
    ms = int(now * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"
