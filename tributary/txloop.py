"""A confluent-kafka consume-transform-produce loop, exactly once.

Each batch of input records is handled against the state of its partitions
(:mod:`tributary.state`); the outputs, the state changes (to the stage's compacted state
topic, same partition number as the input) and the input offsets go to Kafka in one
transaction. Either all of a batch happened or none of it did: after a crash, a
broker restart or a rebalance, the next owner of a partition restores its state from
the state topic (read_committed, so an aborted batch left no trace) and resumes at the
committed offset. No guards, no marks, no replays to deduplicate downstream.

The stage's logic is a :class:`Stage`: ``handle(record, state)`` returns the records to
produce; everything it wrote to ``state`` is committed with them. A stage without a
state topic (the Stripe sink) gets a state that lives only in the process: what it
wrote commits with the batch and is dropped with an aborted one. ``handle`` may raise
:class:`Interrupted` to give a batch up unfinished (shutting down while it waits on
Stripe): nothing of that batch is committed, and it is read again. All input topics of a
stage must have the same partition count (they are co-partitioned by key), and the
state topic has that count too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson
from confluent_kafka import KafkaException, Message, TopicPartition
from prometheus_client import Counter, Gauge, Histogram

from tributary import kafka
from tributary.health import Health
from tributary.state import DictBackend, PartitionState, catch_up, topic_id

log = logging.getLogger("tributary.txloop")

RECORDS_IN = Counter("tributary_stage_records_in_total", "Input records handled and committed", ["stage"])
RECORDS_OUT = Counter("tributary_stage_records_out_total", "Records produced in committed transactions", ["stage"])
ABORTS = Counter("tributary_stage_aborted_transactions_total", "Transactions aborted (their batch is re-read)",
                 ["stage"])
BATCH_SECONDS = Histogram("tributary_stage_batch_seconds", "Time to handle and commit one batch", ["stage"],
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
RESTORE_SECONDS = Gauge("tributary_stage_restore_seconds", "Time the last state restore took", ["stage"])
LAG = Gauge("tributary_stage_lag_records", "Records of the assigned partitions not yet consumed: the last stable "
            "offset minus the next offset the stage reads (librdkafka statistics); 0 for topics no longer assigned",
            ["stage", "topic"])


@dataclass
class Output:
    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None


class Stage(Protocol):
    name: str  # the consumer group is tributary-<name>
    inputs: list[str]

    @property
    def state_topic(self) -> str | None:
        """The compacted topic mirroring the state; None: state in memory only, from
        empty on every assignment."""
        ...

    def handle(self, msg: Message, state: PartitionState) -> list[Output]: ...

    def end_batch(self, state: PartitionState) -> list[Output]:
        """Called once per partition per batch, after its records (e.g. to expire state)."""
        ...


@dataclass
class LoopConfig:
    bootstrap: str
    instance_id: str = "0"
    batch_max: int = 1000
    batch_wait_s: float = 0.05
    state_dir: Path | None = None  # None: state in memory (rebuilt from the state topic on every assignment)
    consumer_extra: dict[str, Any] = field(default_factory=dict)
    fetch_stuck_s: float = 60.0  # see FetchWatchdog


class Interrupted(Exception):
    """Raised by ``Stage.handle`` to give the batch up: nothing of it commits, it is re-read."""


class FatalStageError(RuntimeError):
    """The producer was fenced or failed for good: exit, to be restarted from Kafka."""


class FetchWatchdog:
    """Exits a loop whose consumer holds partitions it has stopped fetching from.

    Seen in the chaos suite: a stage restarted just before the broker restarted got its
    assignment, the fetch of its committed offsets failed (NOT_COORDINATOR), and
    librdkafka never fetched those partitions again: the group stable, the main loop
    alive and idle, 800 records waiting for good. librdkafka's statistics (every
    ``STATS_INTERVAL_MS``) tell each partition's fetch state; an assigned partition that
    is not ``active`` for ``stuck_s`` raises FatalStageError: the process exits, its
    supervisor (or Kubernetes) restarts it, and the new consumer starts from the
    committed offsets. (Lag alone cannot tell: an aborted transaction at a partition's
    tail leaves records no read_committed consumer will ever be given.)"""

    STATS_INTERVAL_MS = 5_000

    def __init__(self, stage: str, stuck_s: float):
        self.stage, self.stuck_s = stage, stuck_s
        self.consumer: Any = None
        self._not_active_since: dict[tuple[str, int], tuple[str, float]] = {}
        self._lag_topics: set[str] = set()

    def on_stats(self, raw: str) -> None:
        """librdkafka's statistics callback (called from the consumer's poll)."""
        now = time.monotonic()
        try:
            topics = orjson.loads(raw).get("topics") or {}
        except orjson.JSONDecodeError:
            return
        assigned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()} if self.consumer else set()
        seen: dict[tuple[str, int], tuple[str, float]] = {}
        lag: dict[str, int] = {}
        for topic, info in topics.items():
            for partition, p in (info.get("partitions") or {}).items():
                key = (topic, int(partition))
                if key not in assigned:
                    continue
                # not librdkafka's consumer_lag: that counts from the consumer's own committed offset,
                # which a transactional stage never moves (its offsets commit through the producer)
                end, position = int(p.get("ls_offset", -1)), int(p.get("app_offset", -1))
                lag[topic] = lag.get(topic, 0) + (max(end - position, 0) if end >= 0 and position >= 0 else 0)
                if p.get("fetch_state") == "active":
                    continue
                state = str(p.get("fetch_state"))
                seen[key] = (state, self._not_active_since.get(key, (state, now))[1])
        self._not_active_since = seen
        for topic in self._lag_topics - set(lag):  # partitions moved to another process
            LAG.labels(self.stage, topic).set(0)
        for topic, records in lag.items():
            LAG.labels(self.stage, topic).set(records)
        self._lag_topics = set(lag)

    def check(self) -> None:
        now = time.monotonic()
        stuck = {f"{t}/{p} ({state})": now - since for (t, p), (state, since) in self._not_active_since.items()
                 if now - since >= self.stuck_s}
        if stuck:
            raise FatalStageError(f"stage {self.stage}: assigned partitions not fetched for {self.stuck_s:.0f}s or "
                                  f"more: {', '.join(sorted(stuck))}; exiting to restart from the committed offsets")


class TransactionalLoop:
    def __init__(self, stage: Stage, cfg: LoopConfig, *, on_commit: Callable[[int], None] | None = None):
        self.stage = stage
        self.cfg = cfg
        self.group = f"tributary-{stage.name}"
        self.on_commit = on_commit
        self.watchdog = FetchWatchdog(stage.name, cfg.fetch_stuck_s)
        RECORDS_IN.labels(stage.name)  # a series from 0: a stage stuck from its start still shows as stalled
        self.consumer = kafka.consumer(cfg.bootstrap, self.group, **{
            "statistics.interval.ms": FetchWatchdog.STATS_INTERVAL_MS, "stats_cb": self.watchdog.on_stats,
            "partition.assignment.strategy": "range",
            # under load, fewer and fuller fetches (less CPU per record here and in the
            # broker); an idle partition's record waits at most 10 ms more
            "fetch.min.bytes": 64 * 1024, "fetch.wait.max.ms": 10,
            **cfg.consumer_extra})
        self.watchdog.consumer = self.consumer
        self.producer = kafka.producer(cfg.bootstrap, **{
            "transactional.id": f"{self.group}-{cfg.instance_id}",
            "transaction.timeout.ms": 30_000,
            # commit_transaction() flushes: a batch's records go out in few requests
            "linger.ms": 20,
        })
        self.producer.init_transactions(60)
        self.states: dict[int, PartitionState] = {}

    # --- assignment ----------------------------------------------------------------

    def _on_assign(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        mine = sorted({tp.partition for tp in partitions})
        started = time.monotonic()
        new = [p for p in mine if p not in self.states]
        if new and self.stage.state_topic is None:
            self.states.update((p, PartitionState(p, DictBackend())) for p in new)
        elif new:
            topic_id = self._topic_id()
            reader = kafka.consumer(self.cfg.bootstrap, f"{self.group}-restore", **{"enable.partition.eof": True})
            try:
                for p in new:
                    self.states[p] = self._restore(p, reader, topic_id)
            finally:
                reader.close()
        RESTORE_SECONDS.labels(self.stage.name).set(time.monotonic() - started)
        log.info("stage=%s assigned partitions=%s state restored in %.2fs", self.stage.name, mine,
                 time.monotonic() - started)

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        # called inside consume(), between batches: no transaction is open
        gone = {tp.partition for tp in partitions}
        for p in gone:
            state = self.states.pop(p, None)
            if state is not None:
                state.backend.close()
        log.info("stage=%s revoked partitions=%s", self.stage.name, sorted(gone))

    def _restore(self, partition: int, reader: Any, topic_id: str) -> PartitionState:
        """The partition's state: the local copy, caught up with the state topic."""
        folder = self.cfg.state_dir / self.stage.name / str(partition) if self.cfg.state_dir else None
        assert self.stage.state_topic is not None
        return catch_up(reader, self.stage.state_topic, partition, folder, topic_id, what=f"stage={self.stage.name}")

    def _topic_id(self) -> str:
        assert self.stage.state_topic is not None
        return topic_id(self.cfg.bootstrap, self.stage.state_topic)

    # --- the loop ------------------------------------------------------------------

    def run(self, stop: threading.Event, health: Health | None = None) -> None:
        health = health or Health()
        self.consumer.subscribe(self.stage.inputs, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_revoke)
        health.mark_ready(stage=self.stage.name)
        log.info("stage=%s running group=%s inputs=%s state_topic=%s", self.stage.name, self.group,
                 self.stage.inputs, self.stage.state_topic)
        try:
            while not stop.is_set():
                health.beat()
                messages = kafka.good_messages(
                    self.consumer.consume(num_messages=self.cfg.batch_max, timeout=self.cfg.batch_wait_s))
                if messages:
                    self._batch(messages)
                self.watchdog.check()
        finally:
            self.consumer.close()
            for state in self.states.values():
                state.backend.close()

    def _batch(self, messages: list[Message]) -> None:
        started = time.perf_counter()
        outputs: list[Output] = []
        touched: dict[int, PartitionState] = {}
        try:
            for msg in messages:
                _, partition, _ = kafka.position(msg)
                state = self.states.get(partition)
                if state is None:  # revoked while in the fetch buffer: the next owner reads it
                    continue
                touched[partition] = state
                outputs += self.stage.handle(msg, state)
            for state in touched.values():
                outputs += self.stage.end_batch(state)
        except Interrupted:
            for state in touched.values():
                state.rollback()
            self._rewind(messages)
            log.info("stage=%s batch given up unfinished: it will be read again", self.stage.name)
            return
        if not touched:  # every record's partition was revoked meanwhile: nothing to commit
            return
        try:
            self.producer.begin_transaction()
            for out in outputs:
                self._produce(out.topic, out.key, out.value, out.partition)
            applied: dict[int, int] = {}  # state-topic partition -> offset after its last record

            def delivered(err: Any, msg: Message) -> None:
                p, offset = msg.partition(), msg.offset()
                if err is None and p is not None and offset is not None:
                    applied[p] = max(applied.get(p, 0), offset + 1)

            state_topic = self.stage.state_topic or ""  # "": no state topic, nothing to mirror
            for partition, state in touched.items() if state_topic else ():
                for key, value in state.changes():
                    self._produce(state_topic, key.encode(), value, partition, delivered)
            offsets = kafka.next_offsets([m for m in messages if kafka.position(m)[1] in touched])
            self.producer.send_offsets_to_transaction(offsets, self.consumer.consumer_group_metadata(), 30)
            self.producer.commit_transaction(60)
        except KafkaException as exc:
            error = exc.args[0]
            for state in touched.values():
                state.rollback()
            if error.fatal() or not error.txn_requires_abort():
                raise FatalStageError(f"stage {self.stage.name}: {error}") from exc
            ABORTS.labels(self.stage.name).inc()
            log.warning("stage=%s transaction aborted (%s): re-reading the batch", self.stage.name, error)
            self.producer.abort_transaction(60)
            self._rewind(messages)
            return
        self.producer.poll(0)  # the delivery reports of the committed records (commit flushed them)
        for partition, state in touched.items():
            state.commit(applied.get(partition))
        RECORDS_IN.labels(self.stage.name).inc(len(messages))
        RECORDS_OUT.labels(self.stage.name).inc(len(outputs))
        BATCH_SECONDS.labels(self.stage.name).observe(time.perf_counter() - started)
        if self.on_commit:
            self.on_commit(len(messages))

    def _produce(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None,
                 on_delivery: Callable[[Any, Message], None] | None = None) -> None:
        while True:
            try:
                if partition is None:
                    self.producer.produce(topic, key=key, value=value)
                elif on_delivery is None:
                    self.producer.produce(topic, key=key, value=value, partition=partition)
                else:
                    self.producer.produce(topic, key=key, value=value, partition=partition, on_delivery=on_delivery)
                return
            except BufferError:
                self.producer.poll(0.05)

    def _rewind(self, messages: list[Message]) -> None:
        """Seek each partition of an aborted batch back to its first record."""
        first: dict[tuple[str, int], int] = {}
        for topic, partition, offset in map(kafka.position, messages):
            first[(topic, partition)] = min(first.get((topic, partition), offset), offset)
        for (topic, partition), offset in first.items():
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:  # no longer ours: the next owner starts from the commit
                log.warning("could not seek %s/%d: %s", topic, partition, exc)
