"""Consumer-group lag: how far each stage is behind its input topics. The demo and
tests use it to know the pipeline has settled; operators use ``tributary status``."""

from __future__ import annotations

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from tributary.topics import Topic

STAGE_GROUPS: dict[str, tuple[str, list[Topic]]] = {
    "streams": ("tributary-streams", [Topic.INFERENCE_EVENTS, Topic.ATTRIBUTIONS, Topic.ROYALTY_LEDGER,
                                      Topic.HOLDER_POLICIES]),
    "attribution": ("tributary-attribution", [Topic.ATTRIBUTION_REQUESTS]),
    "sink-clickhouse": ("tributary-sink-clickhouse", [
        Topic.ATTRIBUTION_REQUESTS, Topic.ATTRIBUTIONS, Topic.ROYALTY_LEDGER, Topic.PAYOUT_REQUESTS,
        Topic.PAYOUT_RESULTS, Topic.INFERENCE_EVENTS_DLQ, Topic.CATALOG_UPDATES, Topic.CORRECTIONS]),
    "sink-stripe": ("tributary-sink-stripe", [Topic.PAYOUT_REQUESTS]),
}


class LagReader:
    def __init__(self, bootstrap: str):
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "tributary-lag-reader",
                                  "enable.auto.commit": False})

    def group_lag(self, group: str, topics: list[Topic]) -> int:
        """Messages in ``topics`` not yet committed by ``group`` (transaction markers
        count, so a fully caught-up transactional topic can show a lag of 1 per
        partition until the next commit; callers compare successive readings)."""
        partitions = []
        for topic in topics:
            meta = self.admin.list_topics(topic.value, timeout=10).topics[topic.value]
            partitions += [TopicPartition(topic.value, p) for p in meta.partitions]
        future = self.admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, partitions)])
        committed = {(tp.topic, tp.partition): tp.offset
                     for tp in future[group].result().topic_partitions}
        lag = 0
        for tp in partitions:
            low, high = self.consumer.get_watermark_offsets(tp, timeout=10)
            done = committed.get((tp.topic, tp.partition), -1)
            lag += high - (done if done >= 0 else low)
        return lag

    def stage_lags(self) -> dict[str, int]:
        return {stage: self.group_lag(group, topics) for stage, (group, topics) in STAGE_GROUPS.items()}

    def close(self) -> None:
        self.consumer.close()


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
        future = reader.admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, tps)])
        committed = {(tp.topic, tp.partition): tp.offset for tp in future[group].result().topic_partitions}
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
