"""Guard against skipped input. After a rebalance Faust can deliver a prefetched record
ahead of the ones before it and then commit past them (faust-streaming #221): those
records would never be processed. Each agent keeps, in its own table, the highest
offset it processed per partition (``wm:<topic>:<partition>``, written with the
event's other state and flushed before the offset commit). A record more than one
offset ahead is checked: if real records lie in between (transaction markers do not
count), the worker exits before acknowledging it, so it restarts from the committed
offset and processes them in order."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

# verify(topic, partition, start, end): are there committed records in [start, end)?
Verify = Callable[[str, int, int, int], bool]


class SkippedRecords(RuntimeError):
    pass


class OffsetGuard:
    def __init__(self, table: MutableMapping[str, Any], topic: str):
        self.table = table
        self.topic = topic

    def key(self, partition: int) -> str:
        return f"wm:{self.topic}:{partition}"

    def gap(self, partition: int, offset: int) -> tuple[int, int] | None:
        """The offsets [start, end) between the last processed record and ``offset``, if any."""
        last = self.table.get(self.key(partition))
        if last is None or offset <= last + 1:
            return None
        return last + 1, offset

    def advance(self, partition: int, offset: int) -> None:
        last = self.table.get(self.key(partition))
        if last is None or offset > last:
            self.table[self.key(partition)] = offset


def records_between(bootstrap: str, topic: str, partition: int, start: int, end: int) -> bool:
    """True if ``topic``/``partition`` holds a committed record with start <= offset < end."""
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
            return (msg.offset() or 0) < end
        return False
    finally:
        probe.close()
