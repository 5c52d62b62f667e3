"""Consumer-group lag: how far each stage is behind its input topics. The demo and
tests use it to know the pipeline has settled; operators use ``tributary status``."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from tributary.topics import Topic
from tributary.topology import stages


def stage_groups() -> dict[str, tuple[str, list[Topic]]]:
    """stage -> (consumer group, the topics that group subscribes to), from the topology
    registry (:mod:`tributary.topology`). What else a stage reads by assignment (catalog
    chunks, its state topic) is outside any group and has no lag."""
    return {name: (stage.group, list(stage.inputs)) for name, stage in stages().items()}


# the group coordinator is not ready yet (a broker that just started): ask again
COORDINATOR_STARTING = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                        KafkaError.COORDINATOR_NOT_AVAILABLE}


class LagReader:
    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "tributary-lag-reader",
                                  "enable.auto.commit": False})
        self._in_group: dict[str, Consumer] = {}

    def committed(self, group: str, partitions: list[TopicPartition], timeout: float = 10.0) -> dict[tuple[str, int], int]:
        """``group``'s committed offsets (negative: none), read by a consumer configured
        with that group id that never subscribes, so it never joins or disturbs the group.
        (Not the admin client's list_consumer_group_offsets: librdkafka crashes the whole
        process in it when the group coordinator is not ready, as right after the broker
        starts; confluentinc/librdkafka#5040.)"""
        consumer = self._in_group.get(group)
        if consumer is None:
            consumer = self._in_group[group] = Consumer({
                "bootstrap.servers": self.bootstrap, "group.id": group, "enable.auto.commit": False})
        deadline = time.monotonic() + timeout
        while True:
            try:
                found = consumer.committed(partitions, timeout=max(1.0, deadline - time.monotonic()))
                return {(tp.topic, tp.partition): tp.offset for tp in found}
            except KafkaException as exc:
                if exc.args[0].code() not in COORDINATOR_STARTING or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def group_lag(self, group: str, topics: list[Topic]) -> int:
        """Messages in ``topics`` not yet committed by ``group`` (transaction markers
        count, so a fully caught-up transactional topic can show a lag of 1 per
        partition until the next commit; callers compare successive readings)."""
        partitions = []
        for topic in topics:
            meta = self.admin.list_topics(topic.value, timeout=10).topics[topic.value]
            partitions += [TopicPartition(topic.value, p) for p in meta.partitions]
        committed = self.committed(group, partitions)
        lag = 0
        for tp in partitions:
            low, high = self.consumer.get_watermark_offsets(tp, timeout=10)
            done = committed.get((tp.topic, tp.partition), -1)
            lag += high - (done if done >= 0 else low)
        return lag

    def backlog(self, group: str, topics: list[Topic], timeout: float = 10.0) -> int:
        """Partitions of ``topics`` holding a committed record ``group`` has not committed
        past: unlike :meth:`group_lag`, exact on transactional topics, whose last offset is
        a commit marker that lag counts."""
        partitions = []
        for topic in topics:
            meta = self.admin.list_topics(topic.value, timeout=10).topics[topic.value]
            partitions += [TopicPartition(topic.value, p) for p in meta.partitions]
        return len(self.pending(group, partitions, timeout))

    def pending(self, group: str, partitions: list[TopicPartition], timeout: float = 10.0,
                committed: dict[tuple[str, int], int] | None = None) -> set[tuple[str, int]]:
        """Those of ``partitions`` holding a committed record ``group`` has not committed
        past. Reads read_committed from each committed offset until the first record or
        the end of the partition, so transaction markers (which count in the high
        watermark) are not mistaken for work; a partition that does not answer within
        ``timeout`` counts as pending. ``committed``: the group's offsets, if already read."""
        committed = self.committed(group, partitions) if committed is None else committed
        start = {}
        for tp in partitions:
            low, high = self.consumer.get_watermark_offsets(tp, timeout=10)
            done = committed.get((tp.topic, tp.partition), -1)
            done = done if done >= 0 else low
            if high > done:
                start[(tp.topic, tp.partition)] = done
        if not start:
            return set()
        probe = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"{group}-backlog-probe",
                          "enable.auto.commit": False, "isolation.level": "read_committed",
                          "enable.partition.eof": True})
        try:
            probe.assign([TopicPartition(t, p, o) for (t, p), o in start.items()])
            waiting, pending = set(start), set()
            deadline = time.monotonic() + timeout
            while waiting and time.monotonic() < deadline:
                msg = probe.poll(0.5)
                if msg is None:
                    continue
                where = (msg.topic(), msg.partition())
                if where not in waiting:
                    continue
                waiting.discard(where)
                err = msg.error()
                if err is None:
                    pending.add(where)
                elif err.code() != KafkaError._PARTITION_EOF:
                    waiting.add(where)
            return pending | waiting
        finally:
            probe.close()

    def stage_lags(self) -> dict[str, int]:
        return {stage: self.group_lag(group, topics) for stage, (group, topics) in stage_groups().items()}

    def close(self) -> None:
        self.consumer.close()
        for consumer in self._in_group.values():
            consumer.close()
        self._in_group.clear()


def probe_partitions(bootstrap: str, group: str, partitions: list[tuple[str, int]]
                     ) -> tuple[dict[tuple[str, int], int], list[tuple[str, int]]]:
    """``group``'s committed offset of each of ``partitions`` (negative: none), and those
    where it has at least one committed record it has not committed past
    (:meth:`LagReader.pending`): one read of the offsets for both."""
    if not partitions:
        return {}, []
    reader = LagReader(bootstrap)
    try:
        tps = [TopicPartition(t, p) for t, p in partitions]
        committed = reader.committed(group, tps)
        return committed, sorted(reader.pending(group, tps, committed=committed))
    finally:
        reader.close()
