"""Ingest's dedupe marks, written once per take instead of once per event.

A Faust table write costs a changelog send per key: measured in the streams benchmark,
one mark per event took ~180 us of the worker's ~260 us per event. Here each partition's
marks live in a local RocksDB (:class:`tributary.state.PartitionState`), and what a take
changed on a partition (marks, expiry lists, expired keys) goes to Kafka as ONE record on
``<app id>-ingest-marks`` (same partition number), sent through Faust's producer, so it
is flushed before the offsets of the records it covers are committed. A worker that is
assigned a partition catches its copy up from that topic (from where the copy left off,
or from the start of the log), exactly as the money stages restore their state. A
replay after a crash finds the marks of every committed record; a record decided again
is a redelivery of the same producer message and decides the same.

The topic keeps records for the dedupe window plus a day (``delete`` policy: each
record is the change of one take, keyed by partition/offset).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson

from tributary import kafka
from tributary.state import PartitionState, catch_up, topic_id

log = logging.getLogger("tributary.marks")


def marks_topic(app_id: str) -> str:
    return f"{app_id}-ingest-marks"


def ensure_marks_topic(bootstrap: str, app_id: str, partitions: int, window_s: float) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    name = marks_topic(app_id)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=10).topics
    if name in existing:
        if len(existing[name].partitions) != partitions:
            raise RuntimeError(f"topic {name} has {len(existing[name].partitions)} partitions, inference-events "
                               f"{partitions}: delete it or reset the data dir (tributary down --wipe)")
        return
    retention_ms = str(int((window_s + 86_400) * 1000))
    future = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                           config={"cleanup.policy": "delete", "retention.ms": retention_ms})])
    try:
        future[name].result(30)
    except Exception as exc:  # noqa: BLE001 - created meanwhile by another worker
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise
    log.info("created %s (%d partitions, retention %s ms)", name, partitions, retention_ms)


def _expand(_key: bytes, value: bytes | None) -> list[tuple[bytes, bytes | None]]:
    """One take's record -> the writes it stands for."""
    if not value:
        return []
    changes: dict[str, Any] = orjson.loads(value)
    return [(k.encode(), None if v is None else orjson.dumps(v)) for k, v in changes.items()]


class MarkStore:
    """The marks of the partitions this worker owns."""

    def __init__(self, bootstrap: str, app_id: str, folder: Path):
        self.bootstrap = bootstrap
        self.topic = marks_topic(app_id)
        self.folder = folder
        self.states: dict[int, PartitionState] = {}

    def view(self, partition: int) -> PartitionState:
        state = self.states.get(partition)
        if state is None:
            raise KeyError(f"partition {partition} of the marks is not restored on this worker")
        return state

    def restore(self, partitions: list[int]) -> None:
        """Own exactly ``partitions``: close the others, catch the new ones up (blocking)."""
        for p in set(self.states) - set(partitions):
            self.states.pop(p).backend.close()
        new = [p for p in partitions if p not in self.states]
        if not new:
            return
        ident = topic_id(self.bootstrap, self.topic)
        reader = kafka.consumer(self.bootstrap, f"{self.topic}-restore", **{"enable.partition.eof": True})
        try:
            for p in new:
                self.states[p] = catch_up(reader, self.topic, p, self.folder / str(p), ident, what="ingest marks",
                                          expand=_expand)
        finally:
            reader.close()
        log.info("ingest marks restored for partitions %s", sorted(new))

    def pending(self, partition: int) -> bytes | None:
        """The record of what this take changed on ``partition`` (None: nothing)."""
        state = self.states.get(partition)
        if state is None or not state.dirty:
            return None
        # the JSON object {key: value or null}, from the values as encoded for the local copy
        return b"{" + b",".join(orjson.dumps(k) + b":" + (b"null" if v is None else v) for k, v in state.changes()) + b"}"

    def committed(self, partition: int) -> None:
        """The take's record is sent: its changes become the local copy."""
        state = self.states.get(partition)
        if state is not None:
            state.commit()

    def close(self) -> None:
        for state in self.states.values():
            state.backend.close()
        self.states.clear()
