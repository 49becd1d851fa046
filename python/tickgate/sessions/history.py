"""``History``: what the ingest can tell an edge about updates already sent: the latest of a
channel (snapshots) and every update after a seq (resume), from the core's ``ReplayRing``
checked against the processor's sequence numbers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tickgate._core import FeedProcessor, ReplayRing, Update


@dataclass(slots=True)
class Found:
    """What the history had for a query."""

    #: Every update after the asked seq, per channel in order (only channels without a gap).
    missed: list[Update] = field(default_factory=list)
    #: Channels whose history no longer reaches back to the asked seq.
    gaps: list[str] = field(default_factory=list)
    #: The latest update of each asked channel that has one.
    latest: list[Update] = field(default_factory=list)
    #: For a query that asked for admission: why the channels were refused upstream ("": they
    #: were admitted), and the symbols they brought to the upstream connection.
    refused: str = ""
    added: list[str] = field(default_factory=list)


#: Called with what was found, or None when the history cannot be reached.
FoundCallback = Callable[[Found | None], None]


class History:
    def __init__(self, ring: ReplayRing, processor: FeedProcessor) -> None:
        self.ring = ring
        self._processor = processor

    @property
    def epoch(self) -> str:
        return self._processor.epoch

    def latest(self, channels: list[str]) -> list[Update]:
        return [u for u in map(self.ring.latest, channels) if u is not None]

    def find(self, channels: list[str], since: dict[str, int]) -> Found:
        """The latest of ``channels``, and everything after ``since[channel]`` for each given."""
        found = Found(latest=self.latest(channels))
        for channel, seq in since.items():
            got = self.since(channel, seq)
            if got is None:
                found.gaps.append(channel)
            else:
                found.missed.extend(got)
        return found

    def since(self, channel: str, after_seq: int) -> list[Update] | None:
        """Every update on ``channel`` after ``after_seq``, in order, or None if the ring no
        longer reaches back (or the seq was never given out in this epoch)."""
        return self.ring.since(channel, after_seq, self._processor.last_seq(channel))
