"""Bounded state: table keys indexed by partition and position (event time or
offset), so an agent can expire what fell out of its window. Expiring happens while
processing an event of the same partition, which is where Faust writes the key's
changelog, so the tombstone lands in the right changelog partition."""

from __future__ import annotations

import bisect


class ExpiryIndex:
    def __init__(self, horizon: float):
        self.horizon = horizon
        self._by_partition: dict[int, list[tuple[float, str]]] = {}
        self._watermark: dict[int, float] = {}

    def clear(self) -> None:
        self._by_partition.clear()
        self._watermark.clear()

    def add(self, partition: int, position: float, key: str) -> None:
        bisect.insort(self._by_partition.setdefault(partition, []), (position, key))
        self._watermark[partition] = max(self._watermark.get(partition, position), position)

    def watermark(self, partition: int) -> float | None:
        """The highest position seen on ``partition``."""
        return self._watermark.get(partition)

    def too_old(self, partition: int, position: float) -> bool:
        mark = self._watermark.get(partition)
        return mark is not None and position < mark - self.horizon

    def expire(self, partition: int) -> list[str]:
        """Keys of ``partition`` older than its watermark minus the horizon (removed)."""
        keys = self._by_partition.get(partition, [])
        mark = self._watermark.get(partition)
        if mark is None:
            return []
        cut = bisect.bisect_left(keys, (mark - self.horizon, ""))
        expired = [key for _, key in keys[:cut]]
        del keys[:cut]
        return expired
