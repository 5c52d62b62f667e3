"""When is a streams worker stuck? Pure bookkeeping for the watchdog in :mod:`streams.app`.

Faust can stop fetching after a rebalance (faust-streaming #175, #640), so a worker
whose own partitions have records waiting and that makes no progress on them exits to
be restarted. "Waiting" must be observed, not inferred: a topic that was idle for an
hour and received its first record a moment ago is not stalled. So a partition is
stalled only when it was seen with records waiting at least ``stall_after_s`` ago, is
still seen waiting now, and its topic made no progress in between.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

Partition = tuple[str, int]


class StallDetector:
    def __init__(self, stall_after_s: float, clock: Callable[[], float] = time.monotonic):
        self.stall_after_s = stall_after_s
        self.clock = clock
        self._progress: dict[str, float] = {}  # topic -> when its agent last handled an event
        self._waiting_since: dict[Partition, float] = {}  # partition -> first seen waiting
        self._started = clock()

    def progressed(self, topic: str) -> None:
        """An agent handled an event of ``topic`` (cheap: called per event)."""
        self._progress[topic] = self.clock()

    def reset(self, topics: Iterable[str]) -> None:
        """A rebalance or a recovery: every clock starts again."""
        now = self.clock()
        for topic in topics:
            self._progress[topic] = now
        self._waiting_since.clear()

    def quiet(self, topics: Iterable[str]) -> set[str]:
        """Topics with no progress for ``stall_after_s``: the only ones worth probing."""
        now = self.clock()
        quiet = {t for t in topics if now - self._progress.get(t, self._started) >= self.stall_after_s}
        for partition in [p for p in self._waiting_since if p[0] not in quiet]:
            del self._waiting_since[partition]
        return quiet

    def stalled(self, waiting: Iterable[Partition], probed: Iterable[Partition]) -> list[tuple[Partition, float]]:
        """Given the partitions found ``waiting`` among those ``probed`` (all of a quiet
        topic's partitions this worker owns), the ones stuck: (partition, seconds waited)."""
        now = self.clock()
        waiting = set(waiting)
        for partition in set(probed) - waiting:
            self._waiting_since.pop(partition, None)
        stuck = []
        for partition in sorted(waiting):
            since = self._waiting_since.setdefault(partition, now)
            moved = self._progress.get(partition[0], self._started) > since
            if moved:
                self._waiting_since[partition] = now
            elif now - since >= self.stall_after_s:
                stuck.append((partition, now - since))
        return stuck
