"""When is a streams worker stuck? Pure bookkeeping for the watchdog in :mod:`streams.app`.

Faust can stop fetching after a rebalance (faust-streaming #175, #640), so a worker
whose own partitions have records waiting and that makes no progress on them exits to
be restarted. "Waiting" must be observed, not inferred: a partition that was idle for
an hour and received its first record a moment ago is not stalled. So a partition is
stalled only when it was seen with records waiting at least ``stall_after_s`` ago, is
still seen waiting now, and made no progress in between. Progress is tracked per
partition: one stuck partition is not hidden by its siblings moving.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

Partition = tuple[str, int]


class StallDetector:
    def __init__(self, stall_after_s: float, clock: Callable[[], float] = time.monotonic):
        self.stall_after_s = stall_after_s
        self.clock = clock
        self._progress: dict[Partition, float] = {}  # when an agent last handled an event of it
        self._waiting_since: dict[Partition, float] = {}  # first seen waiting
        self._started = clock()
        self._last_probe = float("-inf")

    def progressed(self, topic: str, partition: int) -> None:
        """An agent handled an event of ``topic``/``partition`` (cheap: called per event)."""
        self._progress[(topic, partition)] = self.clock()

    def reset(self) -> None:
        """A rebalance or a recovery: every clock starts again."""
        self._started = self.clock()
        self._progress.clear()
        self._waiting_since.clear()

    def _last(self, partition: Partition) -> float:
        return self._progress.get(partition, self._started)

    def quiet(self, partitions: Iterable[Partition]) -> list[Partition]:
        """Partitions with no progress for ``stall_after_s``: the ones worth probing, at most
        every quarter of the limit (each probe opens Kafka clients)."""
        now = self.clock()
        quiet = sorted(p for p in partitions if now - self._last(p) >= self.stall_after_s)
        for partition in [p for p in self._waiting_since if p not in quiet]:
            del self._waiting_since[partition]
        if not quiet or now - self._last_probe < self.stall_after_s / 4:
            return []
        self._last_probe = now
        return quiet

    def stalled(self, waiting: Iterable[Partition], probed: Iterable[Partition]) -> list[tuple[Partition, float]]:
        """Given the partitions found ``waiting`` among those ``probed``, the ones stuck:
        (partition, seconds seen waiting without progress)."""
        now = self.clock()
        waiting = set(waiting)
        for partition in set(probed) - waiting:
            self._waiting_since.pop(partition, None)
        stuck = []
        for partition in sorted(waiting):
            since = self._waiting_since.setdefault(partition, now)
            if self._last(partition) > since:
                self._waiting_since[partition] = now
            elif now - since >= self.stall_after_s:
                stuck.append((partition, now - since))
        return stuck
