"""The audit log's files (a file per UTC day, old ones removed, memory bounded while the disk
does not take writes) and the entitlements claim's patterns."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tickgate import audit
from tickgate.audit import AuditLog
from tickgate.auth import EntitlementError, Entitlements


def test_lines_are_appended_to_the_days_file_and_old_days_are_pruned(tmp_path: Path) -> None:
    # The date is the log's clock's, not the calendar's: this runs the same on any day.
    now = datetime(2026, 11, 30, 23, 41, 7, 123000, tzinfo=UTC)
    clock = lambda: now.timestamp()  # noqa: E731
    for day in ("2026-08-01", "2026-09-02", "2026-11-29"):
        (tmp_path / f"audit-{day}.jsonl").write_text("{}\n")
    (tmp_path / "unrelated.txt").write_text("kept")
    log = AuditLog(tmp_path, keep_days=90, clock=clock)
    log.record("auth", sub="alice", addr="127.0.0.1:5", ok=True, reason=None)
    log.record("disconnect", sub="alice", code=1000)
    log.flush()
    lines = [json.loads(x) for x in (tmp_path / "audit-2026-11-30.jsonl").read_text().splitlines()]
    assert [x["event"] for x in lines] == ["auth", "disconnect"]
    assert "reason" not in lines[0] and lines[0]["ts"] == "2026-11-30T23:41:07.123Z"
    # A second process appends to the same file rather than replacing it.
    other = AuditLog(tmp_path, clock=clock)
    other.record("subscribe", sub="bob", channels=["AAPL$US:quote"])
    other.flush()
    assert len((tmp_path / "audit-2026-11-30.jsonl").read_text().splitlines()) == 3
    # Opening the day's file removed what is past 90 days (before 2026-09-01).
    assert not (tmp_path / "audit-2026-08-01.jsonl").exists()
    assert (tmp_path / "audit-2026-09-02.jsonl").exists()
    # Past midnight the next day's file is opened, and the prune runs again.
    now = datetime(2026, 12, 1, 0, 0, 0, 500000, tzinfo=UTC)
    log.record("connect", sub="carol")
    log.flush()
    assert json.loads((tmp_path / "audit-2026-12-01.jsonl").read_text())["event"] == "connect"
    removed = {p.name for p in log.prune(datetime(2027, 1, 1, tzinfo=UTC))}
    assert removed == {"audit-2026-09-02.jsonl"}
    assert (tmp_path / "audit-2026-11-29.jsonl").exists() and (tmp_path / "unrelated.txt").exists()
    log.stop()
    other.stop()


def test_a_disk_that_takes_no_writes_costs_bounded_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AuditLog(tmp_path)

    def full(day: str) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(log, "_file", full)
    for i in range(200_000):
        log.record("subscribe", sub=f"user{i}", channels=["AAPL$US:quote"])
    assert log._pending_bytes <= audit.MAX_PENDING_BYTES
    assert log.dropped > 0 and log.written == 0
    monkeypatch.undo()
    log.flush()
    assert log.written == 200_000 - log.dropped
    log.stop()


def test_entitlement_patterns() -> None:
    e = Entitlements.from_claim(["*$US", "700.HK"])
    assert e is not None
    assert e.allows("AAPL$US") and e.allows("700$HK") and not e.allows("9988$HK")
    assert e.refused(["TSLA$US", "9988$HK", "600519$SH"]) == ["9988$HK", "600519$SH"]
    assert Entitlements.from_claim(None) is None and Entitlements.from_claim(["*"]) is None
    assert Entitlements.from_claim("*$US, *$HK") is not None
    for bad in (["$$$"], [1], {"a": 1}, ["*$"], ["x"] * 1001):
        with pytest.raises(EntitlementError):
            Entitlements.from_claim(bad)
