"""EventProducer: emit one event per inference without slowing the model.

- idempotent confluent-kafka producer (``enable.idempotence``, acks=all): broker
  retries never duplicate an event;
- ``emit()`` never blocks: it validates, enqueues into librdkafka's bounded buffer
  and returns. When the buffer is full the policy decides: ``"raise"`` (default,
  BufferFullError so the caller can decide), ``"drop"`` (counted in metrics), or
  ``"block"`` (wait up to ``block_timeout_s`` for room);
- delivery reports update counters and an optional callback;
- ``close()`` / context-manager exit flushes what is queued.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from prometheus_client import Counter, Gauge

from producers.events import InferenceEvent, InferenceRefund
from tributary.topics import Topic

log = logging.getLogger("tributary.producer")

EVENTS_SENT = Counter("tributary_producer_events_sent_total", "Events acknowledged by Kafka")
EVENTS_FAILED = Counter("tributary_producer_events_failed_total", "Events Kafka failed to accept")
EVENTS_DROPPED = Counter("tributary_producer_events_dropped_total", "Events dropped: buffer full")
EVENTS_QUEUED = Gauge("tributary_producer_events_queued", "Events waiting in the send buffer")

FullPolicy = Literal["raise", "drop", "block"]


class BufferFullError(RuntimeError):
    """The send buffer is full (Kafka is slow or down); the event was not queued."""


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
        extra_config: dict[str, Any] | None = None,
    ):
        self.topic = topic
        self.on_full = on_full
        self.block_timeout_s = block_timeout_s
        self._on_delivery = on_delivery
        self._lock = threading.Lock()
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
            "queue.buffering.max.messages": max_buffered_events,
            # Java-compatible key hashing, so Kafka Streams/Faust/aiokafka agree on partitions
            "partitioner": "murmur2_random",
            "delivery.timeout.ms": 120_000,
        }
        config.update(extra_config or {})
        self._producer = Producer(config)
        self._poller_stop = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="tributary-producer-poll", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        while not self._poller_stop.is_set():
            self._producer.poll(0.1)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        event_id = (msg.key() or b"").decode(errors="replace")
        with self._lock:
            if err is None:
                self.sent += 1
                EVENTS_SENT.inc()
            else:
                self.failed += 1
                EVENTS_FAILED.inc()
                log.error("event %s not delivered: %s", event_id, err)
        EVENTS_QUEUED.set(len(self._producer))
        if self._on_delivery:
            self._on_delivery(event_id, None if err is None else KafkaException(err))

    def emit(self, event: InferenceEvent) -> bool:
        """Validate and enqueue ``event``; True if queued. Never waits for Kafka
        unless ``on_full="block"``. Raises InvalidEvent naming the bad field."""
        return self.emit_raw(event.event_id, event.encode())

    def refund(self, refund: InferenceRefund) -> bool:
        """Enqueue a refund; keyed by the refunded event_id, so it follows that event."""
        return self.emit_raw(refund.event_id, refund.encode())

    def emit_raw(self, key: str | None, payload: bytes) -> bool:
        """Enqueue pre-encoded bytes (no validation: used by tests and replay tools)."""
        try:
            self._producer.produce(self.topic, key=key.encode() if key else None, value=payload,
                                   on_delivery=self._delivered)
        except BufferError:
            if self.on_full == "block":
                self._producer.flush(self.block_timeout_s)
                try:
                    self._producer.produce(self.topic, key=key.encode() if key else None, value=payload,
                                           on_delivery=self._delivered)
                except BufferError as exc:
                    raise BufferFullError(
                        f"send buffer still full after {self.block_timeout_s}s: is Kafka reachable?"
                    ) from exc
            elif self.on_full == "drop":
                with self._lock:
                    self.dropped += 1
                EVENTS_DROPPED.inc()
                return False
            else:
                raise BufferFullError(
                    "send buffer full: Kafka is slow or unreachable; retry later, raise "
                    "max_buffered_events, or use on_full='drop'/'block'"
                ) from None
        EVENTS_QUEUED.set(len(self._producer))
        return True

    @property
    def queued(self) -> int:
        return len(self._producer)

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for queued events; returns how many are still undelivered."""
        return int(self._producer.flush(timeout))

    def close(self, timeout: float = 30.0) -> int:
        remaining = self.flush(timeout)
        self._poller_stop.set()
        self._poller.join(timeout=2)
        if remaining:
            log.error("%d events not delivered at close", remaining)
        return remaining

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
