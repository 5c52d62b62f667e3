"""Shared confluent-kafka plumbing for the non-Faust processes (workers and sinks)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import Consumer, Message, Producer, TopicPartition

log = logging.getLogger("tributary.kafka")


# librdkafka's own log lines (a broker that went away, a retried request) go through
# Python logging, so they are JSON lines like every other (tributary.logs) instead of
# raw "%4|...|rdkafka#producer-1|" lines on stderr; served on each poll, flush and consume
RDKAFKA_LOGS = {"logger": logging.getLogger("rdkafka")}


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def producer(bootstrap: str, **extra: Any) -> Producer:
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        # the same key -> partition mapping as Java clients, aiokafka and Faust
        "partitioner": "murmur2_random",
        **RDKAFKA_LOGS,
    }
    config.update(extra)
    return Producer(config)


def publish(bootstrap: str, topic: str, items: list[tuple[str, Any]], what: str,
            partition: Callable[[str], int] | None = None) -> None:
    """Produce ``(key, value)`` records for a command-line tool and wait until Kafka has
    them all; a refused record or a missing acknowledgement is a PlatformError that says so.
    ``partition``: the partition of each key, when it is not the key's own."""
    from confluent_kafka import KafkaException

    from tributary.platform.procs import PlatformError

    out = producer(bootstrap)
    for key, value in items:
        try:
            if partition is None:
                out.produce(topic, key=key.encode(), value=dumps(value))
            else:
                out.produce(topic, key=key.encode(), value=dumps(value), partition=partition(key))
        except (KafkaException, BufferError) as exc:
            raise PlatformError(f"Kafka at {bootstrap} did not take the {what} for {key}: {exc}; nothing after it "
                                "was sent") from None
    if out.flush(30):
        raise PlatformError(f"{what} not acknowledged by Kafka at {bootstrap} within 30s: is it running? "
                            "(`tributary up`, `tributary status`)")


def consumer(bootstrap: str, group_id: str, **extra: Any) -> Consumer:
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "session.timeout.ms": 15000,
        "max.poll.interval.ms": 300000,
        **RDKAFKA_LOGS,
    }
    config.update(extra)
    return Consumer(config)


def position(msg: Message) -> tuple[str, int, int]:
    """(topic, partition, offset) of a consumed message (always set on those)."""
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    assert topic is not None and partition is not None and offset is not None
    return topic, partition, offset


def payload(msg: Message) -> bytes:
    """The value of a message that must have one (not a tombstone)."""
    value = msg.value()
    if value is None:
        raise ValueError(f"unexpected tombstone at {position(msg)}")
    return value


def next_offsets(messages: list[Message]) -> list[TopicPartition]:
    """The offsets to commit after processing ``messages``: last offset + 1 per partition."""
    last: dict[tuple[str, int], int] = {}
    for msg in messages:
        topic, partition, offset = position(msg)
        last[(topic, partition)] = max(last.get((topic, partition), -1), offset)
    return [TopicPartition(t, p, o + 1) for (t, p), o in sorted(last.items())]


def flush_then_commit(producer: Producer, consumer: Consumer, messages: list[Message], what: str) -> None:
    """The at-least-once commit order: outputs acknowledged by Kafka, then offsets."""
    if producer.flush(30):
        raise RuntimeError(f"{what} not acknowledged by Kafka within 30s")
    consumer.commit(offsets=next_offsets(messages), asynchronous=False)


def good_messages(messages: list[Message]) -> list[Message]:
    out = []
    for msg in messages:
        err = msg.error()
        if err is None:
            out.append(msg)
        elif not err.retriable() and err.fatal():
            raise RuntimeError(f"fatal Kafka error: {err}")
        else:
            log.warning("kafka: %s", err)
    return out


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM/SIGINT, so loops finish their batch and exit cleanly."""
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        log.info("signal %d: finishing the current batch, then stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


class TopicReader:
    """Reads a whole topic (every partition, from the beginning) without a consumer
    group, like a global table. ``read_to_end`` applies everything up to the current
    end of each partition, so callers see at least what existed when they asked."""

    def __init__(self, bootstrap: str, topic: str):
        from confluent_kafka import OFFSET_BEGINNING

        self.topic = topic
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": f"tributary-reader-{topic}",  # assign() only; never commits
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        })
        metadata = self._consumer.list_topics(topic, timeout=10)
        if topic not in metadata.topics or metadata.topics[topic].error is not None:
            raise RuntimeError(f"topic {topic} does not exist: run `tributary up` first")
        self._partitions = sorted(metadata.topics[topic].partitions)
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in self._partitions])
        self._next = {p: 0 for p in self._partitions}

    def read_to_end(self, handle: Any, timeout: float = 10.0) -> int:
        """Call ``handle(message)`` for each new record; returns how many."""
        targets = {}
        for p in self._partitions:
            low, high = self._watermarks(p, timeout)
            # with transactions the end may be a commit marker, hence the position check below
            if high > max(self._next[p], low):
                targets[p] = high
        count = 0
        while targets:
            msg = self._consumer.poll(min(timeout, 1.0))
            if msg is None:
                positions = self._consumer.position(
                    [TopicPartition(self.topic, p) for p in list(targets)])
                for tp in positions:
                    if tp.offset >= targets.get(tp.partition, 0):
                        self._next[tp.partition] = tp.offset
                        targets.pop(tp.partition, None)
                timeout -= 1.0
                if timeout <= 0 and targets:
                    raise TimeoutError(f"{self.topic} did not deliver up to {targets}")
                continue
            if msg.error():
                log.warning("%s reader: %s", self.topic, msg.error())
                continue
            _, p, offset = position(msg)
            self._next[p] = offset + 1
            if p in targets and self._next[p] >= targets[p]:
                del targets[p]
            handle(msg)
            count += 1
        return count

    def _watermarks(self, partition: int, timeout: float) -> tuple[int, int]:
        """The partition's (low, high) offsets; transient broker errors (a restart, a
        leader moving) are retried for up to ``timeout`` seconds."""
        from confluent_kafka import KafkaException

        deadline = time.monotonic() + timeout
        delay = 0.2
        while True:
            try:
                low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, partition), timeout=max(1.0, deadline - time.monotonic()))
                return int(low), int(high)
            except KafkaException as exc:
                error = exc.args[0]
                if time.monotonic() + delay > deadline or not (error.retriable() or error.code() in TRANSIENT):
                    raise
                log.warning("%s reader: %s; retrying in %.1fs", self.topic, error, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def close(self) -> None:
        self._consumer.close()


def _transient_codes() -> set[int]:
    from confluent_kafka import KafkaError

    return {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError._TRANSPORT,
            KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN, KafkaError.REQUEST_TIMED_OUT}


TRANSIENT = _transient_codes()
