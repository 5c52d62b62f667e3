"""EventProducer: emit inference events without slowing the model.

- idempotent confluent-kafka producer (``enable.idempotence``, acks=all): broker
  retries never duplicate a record;
- batching, on by default: events are grouped by their home partition (the one Kafka's
  default partitioner gives their event_id, :mod:`tributary.partitioner`) into batch
  records (``inference-batch.v1``) produced to that partition, keyed by their first
  event_id. A partition's batch goes when it holds ``batch_max_events`` events, when
  one more would take it past ``batch_max_bytes``, ``linger_ms`` after its first
  event, or on ``flush()``/``close()``. Ingest deduplicates per partition, so a batch
  never mixes partitions; a refund is keyed by the refunded event_id and so rides
  with (after) its event. A batch of one, and an event too big to share a record, go
  as the plain event record. ``batch_max_events=1`` sends one record per event keyed
  by its event_id, as does any event emitted before the topic's partition count is
  known (read in the background, never in ``emit()``);
- ``emit()`` never blocks: it validates, enqueues and returns. The buffer holds at
  most ``max_buffered_events`` events (in open batches or in librdkafka); when it is
  full the policy decides: ``"raise"`` (default, BufferFullError so the caller can
  decide), ``"drop"`` (counted in metrics), or ``"block"`` (wait up to
  ``block_timeout_s`` for room);
- delivery reports update counters and an optional callback, per event (a batch of
  200 delivered counts 200 sent; a failed one calls back for each of its event_ids);
- ``close()`` / context-manager exit flushes what is queued.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from prometheus_client import Counter, Gauge

from producers.events import InferenceEvent, InferenceRefund
from schemas.batches import BATCH_MAX_EVENTS
from tributary.partitioner import home_partition
from tributary.topics import Topic

log = logging.getLogger("tributary.producer")

EVENTS_SENT = Counter("tributary_producer_events_sent_total", "Events acknowledged by Kafka")
EVENTS_FAILED = Counter("tributary_producer_events_failed_total", "Events Kafka failed to accept")
EVENTS_DROPPED = Counter("tributary_producer_events_dropped_total", "Events dropped: buffer full")
EVENTS_QUEUED = Gauge("tributary_producer_events_queued", "Events waiting in batches or in the send buffer")

FullPolicy = Literal["raise", "drop", "block"]

# under Kafka's 1 MB per record; ingest's limit (900,000 bytes) applies to each event
MAX_BATCH_BYTES = 900_000
_HEAD = b'{"schema_version":1,"kind":"batch","events":['
_TAIL = b"]}"
_METADATA_TIMEOUT_S = 1.0
_METADATA_REFRESH_S = 300.0  # partitions are added rarely; a delivery error refreshes at once
_METADATA_RETRY_S = 5.0
_PARTITION_ERRORS = (KafkaError._UNKNOWN_PARTITION, KafkaError._UNKNOWN_TOPIC, KafkaError.UNKNOWN_TOPIC_OR_PART)


_FULL = ("send buffer full: Kafka is slow or unreachable; retry later, raise max_buffered_events, "
         "or use on_full='drop'/'block'")


class BufferFullError(RuntimeError):
    """The send buffer is full (Kafka is slow or down); the event was not queued."""


@dataclass
class _Batch:
    """The events waiting for one partition's next record, in emit order."""

    partition: int
    due: float  # time.monotonic() by which it is sent
    ids: list[str] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)
    size: int = len(_HEAD) + len(_TAIL) - 1  # the record's bytes, were it sent now

    def grown(self, payload: bytes) -> int:
        return self.size + 1 + len(payload)

    def add(self, event_id: str, payload: bytes) -> None:
        self.ids.append(event_id)
        self.payloads.append(payload)
        self.size = self.grown(payload)

    def record(self) -> bytes:
        if len(self.payloads) == 1:
            return self.payloads[0]
        return _HEAD + b",".join(self.payloads) + _TAIL


class EventProducer:
    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic: str = Topic.INFERENCE_EVENTS.value,
        max_buffered_events: int = 100_000,
        on_full: FullPolicy = "raise",
        block_timeout_s: float = 1.0,
        on_delivery: Callable[[str, Exception | None], None] | None = None,
        batch_max_events: int = 500,
        batch_max_bytes: int = 512_000,
        linger_ms: float = 5,
        extra_config: dict[str, Any] | None = None,
    ):
        """``batch_max_events``: events per batch record (1 to 1,000; 1 turns batching
        off: one record per event). ``batch_max_bytes``: a batch record's size limit (at
        most 900,000, under Kafka's 1 MB). ``linger_ms``: how long a partition's first
        event waits for company before its batch is sent."""
        problems = []
        if not 1 <= batch_max_events <= BATCH_MAX_EVENTS:
            problems.append(f"batch_max_events must be 1..{BATCH_MAX_EVENTS}, got {batch_max_events}")
        if not 1 <= batch_max_bytes <= MAX_BATCH_BYTES:
            problems.append(f"batch_max_bytes must be 1..{MAX_BATCH_BYTES:,}, got {batch_max_bytes}")
        if not linger_ms >= 0:
            problems.append(f"linger_ms must be >= 0, got {linger_ms}")
        if max_buffered_events < 1:
            problems.append(f"max_buffered_events must be >= 1, got {max_buffered_events}")
        if problems:
            raise ValueError("EventProducer: " + "; ".join(problems))
        self.topic = topic
        self.on_full = on_full
        self.block_timeout_s = block_timeout_s
        self.max_buffered_events = max_buffered_events
        self.batch_max_events = batch_max_events
        self.batch_max_bytes = batch_max_bytes
        self.linger_s = linger_ms / 1000
        self._on_delivery = on_delivery
        # counters, the open and sealed batches, and the events not yet settled
        self._state = threading.Condition()
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._outstanding = 0  # accepted events not yet delivered or failed
        self._open: dict[int, _Batch] = {}
        self._sealed: deque[_Batch] = deque()  # full or due, in order: sent oldest first
        self._sending = threading.Lock()  # one thread at a time produces the sealed batches
        self._partitions: int | None = None
        self._metadata_due = 0.0
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
            # records <= events, and events are limited by max_buffered_events first
            "queue.buffering.max.messages": max_buffered_events,
            # Java-compatible key hashing, so Kafka Streams/Faust/aiokafka agree on partitions
            "partitioner": "murmur2_random",
            "delivery.timeout.ms": 120_000,
        }
        config.update(extra_config or {})
        self._producer = Producer(config)
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="tributary-producer-poll", daemon=True)
        self._poller.start()
        self._sender: threading.Thread | None = None
        if batch_max_events > 1:
            self._sender = threading.Thread(target=self._send_loop, name="tributary-producer-batch", daemon=True)
            self._sender.start()

    # -- public API ---------------------------------------------------------------

    def emit(self, event: InferenceEvent) -> bool:
        """Validate and enqueue ``event``; True if queued. Never waits for Kafka
        unless ``on_full="block"``. Raises InvalidEvent naming the bad field."""
        return self._enqueue(event.event_id, event.encode())

    def refund(self, refund: InferenceRefund) -> bool:
        """Enqueue a refund; keyed by the refunded event_id, so it follows that event."""
        return self._enqueue(refund.event_id, refund.encode())

    def emit_raw(self, key: str | None, payload: bytes) -> bool:
        """Enqueue pre-encoded bytes as one record of their own, keyed ``key`` (no
        validation, no batching: used by tests and replay tools)."""
        if not self._admit(1):
            return False
        try:
            self._produce_one(key, payload)
        except BufferError:  # librdkafka's own limits (bytes) before ours
            self._release(1)
            if self.on_full == "block":
                self._producer.flush(self.block_timeout_s)
                if not self._admit(1):
                    return False
                try:
                    self._produce_one(key, payload)
                except BufferError as exc:
                    self._release(1)
                    raise BufferFullError(
                        f"send buffer still full after {self.block_timeout_s}s: is Kafka reachable?"
                    ) from exc
            elif self.on_full == "drop":
                self._drop(1)
                return False
            else:
                raise BufferFullError(_FULL) from None
        return True

    @property
    def queued(self) -> int:
        """Events not yet acknowledged or failed: in open batches or in librdkafka."""
        return self._outstanding

    @property
    def partitions(self) -> int | None:
        """The topic's partition count as last read, None until known (no batching yet)."""
        return self._partitions

    def flush(self, timeout: float = 30.0) -> int:
        """Send every open batch now and wait for what is queued; returns how many
        events are still undelivered."""
        deadline = time.monotonic() + timeout
        with self._state:
            self._seal()
        while not self._produce_sealed() and time.monotonic() < deadline:
            self._producer.poll(0.05)  # librdkafka full: serve deliveries to make room
        self._producer.flush(max(0.0, deadline - time.monotonic()))
        with self._state:  # a delivery report may still be running on the poll thread
            while self._outstanding and time.monotonic() < deadline:
                self._state.wait(min(0.05, max(0.0, deadline - time.monotonic())))
            return self._outstanding

    def close(self, timeout: float = 30.0) -> int:
        remaining = self.flush(timeout)
        self._stop.set()
        with self._state:
            self._state.notify_all()
        if self._sender is not None:
            self._sender.join(timeout=2)
        self._poller.join(timeout=2)
        if remaining:
            log.error("%d events not delivered at close", remaining)
        return remaining

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- admission: the buffer limit counts events ---------------------------------

    def _admit(self, n: int) -> bool:
        """Room for ``n`` more events, or the on_full policy: False (drop), BufferFullError
        (raise, or block past block_timeout_s)."""
        with self._state:
            if self._outstanding + n > self.max_buffered_events:
                if self.on_full == "drop":
                    self.dropped += n
                    EVENTS_DROPPED.inc(n)
                    return False
                if self.on_full != "block":
                    raise BufferFullError(_FULL)
                self._seal()  # what waits in open batches goes now
                self._state.notify_all()
                deadline = time.monotonic() + self.block_timeout_s
                while self._outstanding + n > self.max_buffered_events:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise BufferFullError(
                            f"send buffer still full after {self.block_timeout_s}s: is Kafka reachable?")
                    self._state.wait(left)
            self._outstanding += n
            EVENTS_QUEUED.set(self._outstanding)
            return True

    def _release(self, n: int) -> None:
        with self._state:
            self._outstanding -= n
            EVENTS_QUEUED.set(self._outstanding)
            self._state.notify_all()

    def _drop(self, n: int) -> None:
        with self._state:
            self.dropped += n
        EVENTS_DROPPED.inc(n)

    # -- batching -------------------------------------------------------------------

    def _enqueue(self, event_id: str, payload: bytes) -> bool:
        partitions = self._partitions
        if self._sender is None or partitions is None:
            return self.emit_raw(event_id, payload)
        if not self._admit(1):
            return False
        partition = home_partition(event_id, partitions)
        with self._state:
            batch = self._open.get(partition)
            if batch is not None and batch.grown(payload) > self.batch_max_bytes:
                self._seal(only=batch)
                batch = None
            if batch is None:
                batch = self._open[partition] = _Batch(partition, time.monotonic() + self.linger_s)
                self._state.notify_all()  # a new deadline for the sender
            batch.add(event_id, payload)
            if len(batch.ids) >= self.batch_max_events or batch.size >= self.batch_max_bytes:
                self._seal(only=batch)  # alone and too big: sent alone, as the plain event
                self._state.notify_all()
        return True

    def _seal(self, only: _Batch | None = None, due_by: float = math.inf) -> None:
        """Move open batches to the send queue: ``only``, or every one due by ``due_by``
        (default: all). Hold the lock."""
        for partition, batch in list(self._open.items()):
            if (batch is only) if only is not None else (batch.due <= due_by):
                del self._open[partition]
                self._sealed.append(batch)

    def _send_loop(self) -> None:
        """The batch thread: reads the partition count, seals batches whose linger is
        over and produces the sealed ones in order."""
        while not self._stop.is_set():
            if time.monotonic() >= self._metadata_due:
                self._refresh_partitions()
            with self._state:
                now = time.monotonic()
                self._seal(due_by=now)
                if not self._sealed:
                    wake = min([b.due for b in self._open.values()] + [self._metadata_due])
                    self._state.wait(max(0.0, wake - now))
                    continue
            if not self._produce_sealed():
                self._stop.wait(0.01)  # librdkafka is full: the poll thread makes room

    def _produce_sealed(self) -> bool:
        """Produce the sealed batches oldest first; False if librdkafka had no room."""
        with self._sending:
            while True:
                with self._state:
                    if not self._sealed:
                        return True
                    batch = self._sealed[0]
                try:
                    self._producer.produce(self.topic, key=batch.ids[0].encode(), value=batch.record(),
                                           partition=batch.partition,
                                           on_delivery=partial(self._batch_delivered, batch.ids))
                except BufferError:
                    return False
                except KafkaException as exc:  # refused outright (e.g. too large for the broker)
                    with self._state:
                        self._sealed.popleft()
                    self._settle(batch.ids, exc.args[0])
                    continue
                with self._state:
                    self._sealed.popleft()

    def _refresh_partitions(self) -> None:
        try:
            metadata = self._producer.list_topics(self.topic, timeout=_METADATA_TIMEOUT_S)
            topic = metadata.topics.get(self.topic)
            if topic is None or topic.error is not None or not topic.partitions:
                raise LookupError(topic.error if topic is not None else "topic not in the metadata")
            count = len(topic.partitions)
        except (KafkaException, LookupError) as exc:
            self._metadata_due = time.monotonic() + _METADATA_RETRY_S
            if self._partitions is None:
                log.warning("partitions of %s unknown (%s): one record per event until they are", self.topic, exc)
            return
        if count != self._partitions:
            log.info("topic %s has %d partitions: batching by home partition", self.topic, count)
        self._partitions = count
        self._metadata_due = time.monotonic() + _METADATA_REFRESH_S

    # -- delivery -------------------------------------------------------------------

    def _produce_one(self, key: str | None, payload: bytes) -> None:
        self._producer.produce(self.topic, key=key.encode() if key else None, value=payload,
                               on_delivery=self._delivered)

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        self._settle([(msg.key() or b"").decode(errors="replace")], err)

    def _batch_delivered(self, event_ids: list[str], err: KafkaError | None, msg: Message) -> None:
        self._settle(event_ids, err)

    def _settle(self, event_ids: list[str], err: KafkaError | None) -> None:
        n = len(event_ids)
        with self._state:
            self._outstanding -= n
            if err is None:
                self.sent += n
            else:
                self.failed += n
            EVENTS_QUEUED.set(self._outstanding)
            self._state.notify_all()
        if err is None:
            EVENTS_SENT.inc(n)
        else:
            EVENTS_FAILED.inc(n)
            if n == 1:
                log.error("event %s not delivered: %s", event_ids[0], err)
            else:
                log.error("batch of %d events (%s...) not delivered: %s", n, event_ids[0], err)
            if err.code() in _PARTITION_ERRORS:
                self._metadata_due = 0.0  # read the partitions again
        if self._on_delivery:
            error = None if err is None else KafkaException(err)
            for event_id in event_ids:
                self._on_delivery(event_id, error)
