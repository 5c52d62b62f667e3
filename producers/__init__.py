"""The producer SDK platform teams embed: typed events, an idempotent, non-blocking
confluent-kafka producer that batches events by home partition, and a load generator.
Installs without torch, faust or aiokafka."""

from producers.events import InferenceEvent, InferenceRefund, InvalidEvent
from producers.sdk import BufferFullError, EventProducer

__all__ = ["BufferFullError", "EventProducer", "InferenceEvent", "InferenceRefund", "InvalidEvent"]
