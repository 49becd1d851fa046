"""Throttled log lines: the first goes out, repeats within the interval are counted, the next
line after it says how many were left out."""

from __future__ import annotations

import logging

import pytest

from tickgate.logs import LogThrottle


def test_repeats_are_counted_and_reported_with_the_next_line(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("tickgate.test.throttle")
    throttle = LogThrottle(log, interval_s=3600)
    with caplog.at_level(logging.INFO, logger=log.name):
        assert throttle.log(logging.WARNING, "refused %d", 1)
        assert not any(throttle.log(logging.WARNING, "refused %d", n) for n in range(2, 6))
        assert [r.getMessage() for r in caplog.records] == ["refused 1"]
        throttle._last = -1e9  # the interval has passed
        assert throttle.log(logging.WARNING, "refused %d", 6)
    assert [r.getMessage() for r in caplog.records] == [
        "refused 1",
        "refused 6 (4 more since the last report)",
    ]


def test_no_interval_logs_every_line(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("tickgate.test.throttle0")
    throttle = LogThrottle(log, interval_s=0)
    with caplog.at_level(logging.INFO, logger=log.name):
        for n in range(3):
            throttle.log(logging.ERROR, "x %d", n)
    assert [r.getMessage() for r in caplog.records] == ["x 0", "x 1", "x 2"]
