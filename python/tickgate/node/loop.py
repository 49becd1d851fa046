"""Running a role's main coroutine on uvloop until it returns or a stop signal arrives."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Iterable

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run(
    main: Callable[[asyncio.Event], Awaitable[None]], signals: Iterable[signal.Signals] = STOP_SIGNALS
) -> None:
    """Runs ``main(stop)`` on uvloop (when available); ``stop`` is set by any of ``signals``."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in signals:
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; this keeps odd platforms working
        asyncio.run(runner())
    else:
        uvloop.run(runner())
