"""Consumer-group lag: how far each stage is behind its input topics. The demo and
tests use it to know the pipeline has settled; operators use ``tributary status``."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from schemas import topic_manifests
from sinks.clickhouse.rows import SOURCE_TOPICS as CLICKHOUSE_SOURCES
from tributary.config import streams_app_id
from tributary.topics import Topic


def consumed_by(component: str) -> list[Topic]:
    """The topics whose manifest (schemas/topics) names ``component`` or one of its parts
    (``streams`` covers ``streams.ingest``, ``streams.accrue``, ...) as a consumer."""
    return [Topic(name) for name, manifest in sorted(topic_manifests().items())
            if any(c == component or c.startswith(f"{component}.") for c in manifest.consumers)]


def stage_groups() -> dict[str, tuple[str, list[Topic]]]:
    """stage -> (consumer group, the topics that group subscribes to), from the topology's
    own registries: every streams agent consumes through the Faust app's one group (the
    topic manifests name them), the ClickHouse sink subscribes to its SOURCE_TOPICS. The
    other stages subscribe to one topic each; what else their manifests list (catalog
    chunks, holder records, payout results) they read by assignment, outside any group."""
    return {
        "streams": (streams_app_id(), consumed_by("streams")),
        "indexer": ("tributary-indexer", [Topic.CATALOG_UPDATES]),
        "attribution": ("tributary-attribution", [Topic.ATTRIBUTION_REQUESTS]),
        "sink-clickhouse": ("tributary-sink-clickhouse", list(CLICKHOUSE_SOURCES)),
        "sink-stripe": ("tributary-sink-stripe", [Topic.PAYOUT_REQUESTS]),
    }


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

    def stage_lags(self) -> dict[str, int]:
        return {stage: self.group_lag(group, topics) for stage, (group, topics) in stage_groups().items()}

    def close(self) -> None:
        self.consumer.close()
        for consumer in self._in_group.values():
            consumer.close()
        self._in_group.clear()


def pending_partitions(bootstrap: str, group: str, partitions: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The partitions where ``group`` has at least one committed record it has not
    committed past. Reads (read_committed) from the committed offset, so transaction
    markers, which count in the high watermark, are not mistaken for work."""
    if not partitions:
        return []
    reader = LagReader(bootstrap)
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{group}-lag-probe",
                      "enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        tps = [TopicPartition(t, p) for t, p in partitions]
        committed = reader.committed(group, tps)
        pending = []
        for tp in tps:
            low, high = reader.consumer.get_watermark_offsets(tp, timeout=10)
            start = committed.get((tp.topic, tp.partition), -1)
            start = start if start >= 0 else low
            if high <= start:
                continue
            probe.assign([TopicPartition(tp.topic, tp.partition, start)])
            msg = probe.poll(3.0)
            if msg is not None and not msg.error():
                pending.append((tp.topic, tp.partition))
        return pending
    finally:
        probe.close()
        reader.close()
