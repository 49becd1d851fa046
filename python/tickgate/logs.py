"""Log lines that a flood must not multiply: at most one per interval, with a count of the rest.

A misbehaving crowd (clients refused at the admission limit, a listening socket out of
descriptors) repeats the same event thousands of times a second; logging each would fill the
disk and cost more CPU than the event itself.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

__all__ = ["LOG_INTERVAL_S", "LogThrottle"]

#: At most one line per this many seconds for each throttled kind of event.
LOG_INTERVAL_S = 10.0


class LogThrottle:
    """One kind of repeated event: the first is logged, then at most one per ``interval_s``,
    each saying how many were left out since the line before."""

    __slots__ = ("_interval_s", "_last", "_log", "_suppressed")

    def __init__(self, log: logging.Logger, interval_s: float = LOG_INTERVAL_S) -> None:
        self._log = log
        self._interval_s = interval_s
        self._last: float | None = None
        self._suppressed = 0

    def log(self, level: int, msg: str, *args: object, exc_info: bool = False) -> bool:
        """Logs ``msg % args`` (with the traceback if ``exc_info``) unless a line went out less
        than ``interval_s`` ago; returns whether it was logged."""
        now = time.monotonic()
        if self._last is not None and now - self._last < self._interval_s:
            self._suppressed += 1
            return False
        self._last = now
        if self._suppressed:
            msg += " (%d more since the last report)"
            args = (*args, self._suppressed)
            self._suppressed = 0
        self._log.log(level, msg, *args, exc_info=exc_info)
        return True


class ThrottledAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger for a library's lines about its connections (picows's "WS parser error" for
    each client sending a bad frame): lines at WARNING and above go out throttled, one per
    interval per level with a count, so clients that misbehave on purpose cannot flood the log."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, {})
        self._throttles: dict[int, LogThrottle] = {}

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        if level < logging.WARNING:
            self.logger.log(level, msg, *args, **kwargs)
            return
        throttle = self._throttles.get(level)
        if throttle is None:
            throttle = self._throttles[level] = LogThrottle(self.logger)
        throttle.log(level, str(msg), *args)


#: Query parameters that carry credentials (providers take tokens in the URL).
_SECRET_PARAMS = re.compile(r"([?&](?:token|apikey|api_key|key|secret|password)=)[^&#]*", re.IGNORECASE)


def redact_url(url: str | None) -> str:
    """``url`` with credentials blanked (query tokens, ``user:password@``), for logs and any
    response: a secret never leaves in either."""
    if not url:
        return ""
    url = _SECRET_PARAMS.sub(r"\1***", url)
    return re.sub(r"//[^/@]*@", "//***@", url)
