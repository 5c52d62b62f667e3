"""The dead-letter rate limit: halt ingest when most recent events are rejected.

A few bad events are data; most events failing means a bad deploy upstream, and
dead-lettering everything would hide it. The rule holds over the real recent history,
not over what one process happened to see since it started: each input partition's
history lives in the ingest table under ``dlq:<partition>`` (written while handling an
event of that partition, so it lands in that partition's changelog and is restored
with it after a restart or a rebalance).

History is kept as buckets of ``[events, rejected]``, oldest first, so a partition's
state is a few dozen integers however large the window. ``window`` is the number of
recent events judged over the whole input: each of its ``partitions`` keeps its share
(between ``window / partitions`` and one bucket more of its latest events), so the
setting means the same at 4 or 12 partitions (with a whole window per partition, 12
partitions judged 12 windows together and a flood of bad events was diluted by old
good ones).

A halt is sticky: a worker restarted on the same history halts again before handling
anything. An operator who has fixed the producers resumes with ``tributary resume
ingest``, which writes an empty history for every partition (:func:`reset_records`)
that starts at the partition's current end: the bad events already in the log (the
rest of the bad deploy's output) are still dead-lettered one by one, but only what
arrives after the resume counts towards the limit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, MutableMapping
from typing import Any

from tributary.config import streams_app_id

KEY_PREFIX = "dlq:"


def key(partition: int) -> str:
    return f"{KEY_PREFIX}{partition}"


class DeadLetterLimit:
    def __init__(self, table: MutableMapping[str, Any], window: int, max_fraction: float,
                 min_events: int = 50, buckets: int = 20, partitions: int = 1):
        self.table = table
        self.window = -(-window // partitions)  # each partition's share, rounded up
        self.max_fraction = max_fraction
        self.min_events = min_events
        self.bucket = max(1, self.window // buckets)

    def record(self, partition: int, offset: int, rejected: bool | int, events: int = 1) -> None:
        """Count the record at ``offset``: ``events`` events (a batch record carries many),
        ``rejected`` of them dead-lettered."""
        self.record_many(partition, [(offset, events, int(rejected))])

    def record_many(self, partition: int, records: list[tuple[int, int, int]]) -> None:
        """Count records of ``partition`` in offset order, each (offset, events, rejected):
        one read and one write of the table for all of them (ingest: once per take)."""
        value = self.table.get(key(partition))
        value = value if isinstance(value, dict) else {}
        start, last = value.get("from", 0), value.get("last", -1)
        history = [list(b) for b in value.get("b", [])]
        counted = False
        for offset, events, rejected in records:
            if offset < start:
                continue  # acknowledged by the operator's resume
            if offset <= last:
                continue  # counted already: a replay (after a stall exit, a halt or a rewind)
            if not history or history[-1][0] >= self.bucket:
                history.append([0, 0])
            history[-1][0] += events
            history[-1][1] += rejected
            last, counted = offset, True
        if not counted:
            return
        total = sum(b[0] for b in history)
        while history and total - history[0][0] >= self.window:
            total -= history.pop(0)[0]
        self.table[key(partition)] = {**value, "b": history, "from": start, "last": last}

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
        """Why ingest must halt, or None: a halt recorded on one of ``partitions`` (those
        this worker owns), or too many dead letters in their recent history together. A
        bad deploy floods every partition; judging them together keeps a burst of junk
        that a producer's sticky partitioner put on one partition from halting ingest."""
        partitions = sorted(partitions)
        for partition in partitions:
            value = self.table.get(key(partition))
            if isinstance(value, dict) and value.get("halted"):
                return str(value["halted"])
        seen, rejected = self.counts(partitions)
        if seen < self.min_events or rejected / seen <= self.max_fraction:
            return None
        return (f"{rejected / seen:.0%} of the last {seen} events were dead-lettered (limit "
                f"{self.max_fraction:.0%}); fix the producers' deploy, then run `tributary resume ingest`")

    def halt(self, partition: int, reason: str) -> None:
        """Record the halt on the partition being handled (its changelog): whichever worker
        owns that partition next halts too, however the partitions are assigned."""
        value = self.table.get(key(partition))
        self.table[key(partition)] = {**(value if isinstance(value, dict) else {"b": []}), "halted": reason}


def reset_records(ends: dict[int, int]) -> list[tuple[int, str, dict[str, Any]]]:
    """(changelog partition, table key, value) that empty every partition's history and
    count only offsets from ``ends[partition]`` on."""
    return [(p, key(p), {"b": [], "from": end}) for p, end in sorted(ends.items())]


INGEST_TABLE = "ingest-seen-events"  # the table that holds the history (streams.app)


def resume(bootstrap: str) -> int:
    """Empty the history of every ingest partition by writing to the table's changelog
    (what Faust restores the table from), so the next worker starts with a clean slate.
    Run while the worker is stopped (halted). Returns the number of partitions reset."""
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient

    from tributary import kafka
    from tributary.topics import Topic

    topic = f"{streams_app_id()}-{INGEST_TABLE}-changelog"
    meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise RuntimeError(f"no changelog topic {topic} on {bootstrap}: has the streams worker ever run there?")
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "tributary-resume", "enable.auto.commit": False})
    try:
        ends = {p: probe.get_watermark_offsets(TopicPartition(Topic.INFERENCE_EVENTS.value, p), timeout=10)[1]
                for p in meta.partitions}
    finally:
        probe.close()
    producer = kafka.producer(bootstrap)
    records = reset_records(ends)
    for partition, name, value in records:
        # Faust's json serializer for table keys and values
        producer.produce(topic, key=json.dumps(name).encode(), value=json.dumps(value).encode(), partition=partition)
    if producer.flush(30):
        raise RuntimeError(f"Kafka did not acknowledge the reset of {topic} within 30s")
    return len(records)
