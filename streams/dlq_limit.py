"""The dead-letter rate limit: halt ingest when most recent events are rejected.

A few bad events are data; most events failing means a bad deploy upstream, and
dead-lettering everything would hide it. The rule holds over the real recent history,
not over what one process happened to see since it started: each input partition's
history lives in the ingest table under ``dlq:<partition>`` (written while handling an
event of that partition, so it lands in that partition's changelog and is restored
with it after a restart or a rebalance).

History is kept as buckets of ``[events, rejected]``, oldest first, so a partition's
state is a few dozen integers however large the window: the window covers between
``window`` and ``window + bucket`` of the partition's latest events.

A halt is sticky: a worker restarted on the same history halts again before handling
anything. An operator who has fixed the producers resumes with ``tributary resume
ingest``, which writes an empty history for every partition (:func:`reset_records`),
so the limit then judges only what arrives after the fix.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any

KEY_PREFIX = "dlq:"


def key(partition: int) -> str:
    return f"{KEY_PREFIX}{partition}"


class DeadLetterLimit:
    def __init__(self, table: MutableMapping[str, Any], window: int, max_fraction: float,
                 min_events: int = 50, buckets: int = 20):
        self.table = table
        self.window = window
        self.max_fraction = max_fraction
        self.min_events = min_events
        self.bucket = max(1, window // buckets)

    def record(self, partition: int, rejected: bool) -> None:
        history = [list(b) for b in self._history(partition)]
        if not history or history[-1][0] >= self.bucket:
            history.append([0, 0])
        history[-1][0] += 1
        history[-1][1] += int(rejected)
        while history and sum(b[0] for b in history) - history[0][0] >= self.window:
            history.pop(0)
        self.table[key(partition)] = {"b": history}

    def reset(self, partition: int) -> None:
        self.table[key(partition)] = {"b": []}

    def _history(self, partition: int) -> list[list[int]]:
        value = self.table.get(key(partition))
        return list(value.get("b", [])) if isinstance(value, dict) else []

    def counts(self, partitions: Iterable[int]) -> tuple[int, int]:
        """(events, rejected) in the recent history of ``partitions``."""
        seen = rejected = 0
        for partition in partitions:
            for events, bad in self._history(partition):
                seen += events
                rejected += bad
        return seen, rejected

    def exceeded(self, partitions: Iterable[int]) -> str | None:
        """Why ingest must halt, judged over ``partitions`` (those this worker owns), or None."""
        seen, rejected = self.counts(partitions)
        if seen < self.min_events or rejected / seen <= self.max_fraction:
            return None
        return (f"{rejected / seen:.0%} of the last {seen} events were dead-lettered (limit "
                f"{self.max_fraction:.0%}); fix the producers' deploy, then run `tributary resume ingest`")


def reset_records(partitions: int) -> list[tuple[int, str, dict[str, Any]]]:
    """(changelog partition, table key, value) that empty every partition's history."""
    return [(p, key(p), {"b": []}) for p in range(partitions)]
