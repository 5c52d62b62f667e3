"""Guard against skipped input. Around rebalances Faust can commit offsets of records
no agent ever processed: a prefetched record delivered ahead of the ones before it
(faust-streaming #221), or its read-offset bookkeeping treating the records between
two fetches as a gap it acknowledges (``Consumer._add_gap``). Seen here: a worker that
was stopped had committed 35 records of a partition its agent never received.

Each agent keeps, in its own table, the highest offset it processed per partition
(``wm:<topic>:<partition>``, written with the event's other state and flushed before
the offset commit). A record that does not follow it (or, on a partition this agent
never processed, any record after the start of the log) is checked: if real records
lie in between (transaction markers do not count), the worker commits the offset of
the first of them (below what Faust committed) and exits before acknowledging the
record, so it restarts there and handles everything in order.

A skipped record with nothing after it (the last of its partition) is never followed by
a record to notice it, and the stall watchdog sees no backlog (the committed offset is
past it). So the watchdog also compares, for each of its quiet partitions, the group's
committed offset with the watermark (:meth:`OffsetGuard.committed_past`): committed past
real records the agent never processed is the same skip, rewound the same way. With
batched producers a partition holds few records, and a skipped last one lost a whole
batch's events in a scale-out run (239 of 240 events priced)."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

# verify(topic, partition, start, end): are there committed records in [start, end)?
Verify = Callable[[str, int, int, int], bool]


class SkippedRecords(RuntimeError):
    pass


class OffsetGuard:
    """The watermark per partition, read from the table once and kept in memory; advanced
    per record in memory and written to the table once per partition per take
    (:meth:`flush`), before the take's records are acknowledged. :meth:`reset` after every
    (re)assignment: another worker may have moved a partition on meanwhile."""

    def __init__(self, table: MutableMapping[str, Any], topic: str):
        self.table = table
        self.topic = topic
        self._last: dict[int, int | None] = {}
        self._unwritten: set[int] = set()

    def key(self, partition: int) -> str:
        return f"wm:{self.topic}:{partition}"

    def last(self, partition: int) -> int | None:
        """The highest offset processed on ``partition`` (None: none)."""
        if partition not in self._last:
            self._last[partition] = self.table.get(self.key(partition))
        return self._last[partition]

    def gap(self, partition: int, offset: int) -> tuple[int, int] | None:
        """The offsets [start, end) between the last processed record and ``offset``, if any
        (from the start of the log when nothing was processed on this partition yet)."""
        last = self.last(partition)
        if last is None:
            return (0, offset) if offset > 0 else None
        if offset <= last + 1:
            return None
        return last + 1, offset

    def committed_past(self, partition: int, committed: int) -> tuple[int, int] | None:
        """The offsets [start, committed) the group committed past without this agent
        processing them, if any (``committed`` < 0: nothing committed)."""
        last = self.last(partition)
        start = 0 if last is None else last + 1
        return (start, committed) if committed > start else None

    def advance(self, partition: int, offset: int) -> None:
        last = self.last(partition)
        if last is None or offset > last:
            self._last[partition] = offset
            self._unwritten.add(partition)

    def flush(self, partition: int) -> None:
        """Write ``partition``'s watermark to the table (the current event's changelog
        partition must be ``partition``'s)."""
        if partition in self._unwritten:
            self._unwritten.discard(partition)
            self.table[self.key(partition)] = self._last[partition]

    def reset(self) -> None:
        self._last.clear()
        self._unwritten.clear()


def records_between(bootstrap: str, topic: str, partition: int, start: int, end: int) -> int | None:
    """The offset of the first committed record with start <= offset < end, if any."""
    from confluent_kafka import Consumer, TopicPartition

    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "tributary-gap-probe",
                      "enable.auto.commit": False, "isolation.level": "read_committed",
                      "auto.offset.reset": "earliest"})
    try:
        probe.assign([TopicPartition(topic, partition, start)])
        for _ in range(10):
            msg = probe.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                continue
            offset = msg.offset() or 0
            return offset if offset < end else None
        return None
    finally:
        probe.close()
