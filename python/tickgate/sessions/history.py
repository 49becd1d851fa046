"""``History``: what the ingest can tell an edge about updates already sent: the latest of a
channel (snapshots) and every update after a seq (resume), from the core's ``ReplayRing``
checked against the processor's sequence numbers."""

from __future__ import annotations

from tickgate._core import FeedProcessor, ReplayRing, Update


class History:
    def __init__(self, ring: ReplayRing, processor: FeedProcessor) -> None:
        self.ring = ring
        self._processor = processor

    @property
    def epoch(self) -> str:
        return self._processor.epoch

    def latest(self, channels: list[str]) -> list[Update]:
        return [u for u in map(self.ring.latest, channels) if u is not None]

    def since(self, channel: str, after_seq: int) -> list[Update] | None:
        """Every update on ``channel`` after ``after_seq``, in order, or None if the ring no
        longer reaches back (or the seq was never given out in this epoch)."""
        return self.ring.since(channel, after_seq, self._processor.last_seq(channel))
