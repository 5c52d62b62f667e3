"""The producer SDK platform teams embed: typed events, an idempotent, non-blocking
confluent-kafka producer, and a load generator. Installs without torch or faust."""

from producers.events import InferenceEvent, InferenceRefund, InvalidEvent
from producers.sdk import BufferFullError, EventProducer

__all__ = ["BufferFullError", "EventProducer", "InferenceEvent", "InferenceRefund", "InvalidEvent"]
