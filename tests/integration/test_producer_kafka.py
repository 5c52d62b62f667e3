"""The producer SDK against the real broker (and real librdkafka buffering)."""

from __future__ import annotations

import json
import time
from typing import Any

import openai
import pytest
from confluent_kafka import Consumer

from producers import BufferFullError, EventProducer, InferenceEvent, InferenceRefund
from producers.openai_wrapper import instrument
from schemas import topic_manifests
from schemas.batches import items
from tests.openai_server import ANSWER, OpenAIServer
from tributary.partitioner import home_partition
from tributary.topics import Topic

pytestmark = pytest.mark.kafka


def read_all(bootstrap: str, group: str, prefix: bytes, expected: int) -> list[tuple[dict, Any]]:
    """(event, message) for each event in messages keyed with ``prefix`` (the topic may
    hold other tests' events too): a batch record's key is its first event's id, and
    each of its events is listed with it."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest"})
    consumer.subscribe([Topic.INFERENCE_EVENTS.value])
    out: list[tuple[dict, Any]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        batch = consumer.consume(500, 1.0)
        for m in batch:
            if not m.error() and (m.key() or b"").startswith(prefix):
                value = json.loads(m.value())
                out += [(e, m) for e in items(value, "events") or [value]]
        if len(out) >= expected and not batch:
            break
    consumer.close()
    return out


def test_events_and_refunds_are_delivered_batched_by_home_partition(platform_cfg):
    events = [InferenceEvent(provider="acme", model_name="m", model_revision="r", contract_id="standard-2026",
                             output_text=f"text {i}", revenue_micros=1000, event_id=f"sdk-test-{i}")
              for i in range(50)]
    with EventProducer(platform_cfg.bootstrap_servers, linger_ms=200) as producer:
        deadline = time.monotonic() + 30
        while producer.partitions is None and time.monotonic() < deadline:  # read in the background
            time.sleep(0.05)
        partitions = producer.partitions
        assert partitions == topic_manifests()[Topic.INFERENCE_EVENTS].partitions  # read from the broker
        for event in events:
            assert producer.emit(event)
        producer.refund(InferenceRefund(event_id="sdk-test-7", provider="acme", reason="chargeback",
                                        refund_id="sdk-refund-7"))
        assert producer.flush(30) == 0
        assert producer.sent == 51 and producer.failed == 0  # counted in events
    delivered = read_all(platform_cfg.bootstrap_servers, "sdk-test-1", b"sdk-test-", 51)
    by_id: dict[str, list] = {}
    for position, (event, m) in enumerate(delivered):
        by_id.setdefault(event["event_id"], []).append((m.partition(), m.offset(), position, event))
    assert len(by_id) == 50 and all(len(v) == 1 for k, v in by_id.items() if k != "sdk-test-7")
    # each record on the home partition of all of its events, as ingest's dedupe needs
    assert all(m.partition() == home_partition(e["event_id"], partitions) for e, m in delivered)
    assert len({(m.partition(), m.offset()) for _, m in delivered}) < 51  # batched: fewer records than events
    (event_at, refund_at) = sorted(by_id["sdk-test-7"], key=lambda v: (v[1], v[2]))
    assert refund_at[3]["kind"] == "refund" and event_at[3].get("kind") is None  # the refund follows its event
    assert event_at[0] == refund_at[0]


def test_instrumented_openai_client_publishes_to_kafka(platform_cfg):
    server = OpenAIServer().start()
    try:
        with EventProducer(platform_cfg.bootstrap_servers) as producer:
            client = instrument(openai.OpenAI(api_key="sk-test", base_url=server.base_url), producer,
                                provider="openai-test", contract_id="standard-2026")
            client.chat.completions.create(model="acme-chat", messages=[{"role": "user", "content": "hi"}])
            list(client.chat.completions.create(model="acme-chat", messages=[], stream=True))
            assert producer.flush(30) == 0
    finally:
        server.stop()
    values = [event for event, _ in read_all(platform_cfg.bootstrap_servers, "sdk-test-2", b"openai-test:", 2)]
    assert sorted(v["event_id"] for v in values) == ["openai-test:chatcmpl-1", "openai-test:chatcmpl-2"]
    assert all(v["output"]["text"] == ANSWER for v in values)
    # the streamed one too is billed by its tokens: the wrapper asked for usage
    assert all(v["billing"] == {"input_tokens": 12, "output_tokens": 18} for v in values)


def test_a_full_buffer_follows_the_policy_instead_of_blocking_the_model():
    unreachable = "127.0.0.1:1"  # nothing listens: librdkafka queues until the buffer is full
    event = InferenceEvent(provider="acme", model_name="m", model_revision="r", contract_id="standard-2026",
                           output_text="x", revenue_micros=1)
    raising = EventProducer(unreachable, max_buffered_events=5, extra_config={"message.timeout.ms": 2000})
    for _ in range(5):
        raising.emit(event)
    with pytest.raises(BufferFullError, match="send buffer full"):
        raising.emit(event)
    dropping = EventProducer(unreachable, max_buffered_events=5, on_full="drop",
                             extra_config={"message.timeout.ms": 2000})
    results = [dropping.emit(event) for _ in range(8)]
    assert results.count(False) == 3 and dropping.dropped == 3
    # undeliverable events are reported as failed, not silently lost
    assert raising.close(10) == 0 and raising.failed == 5
    dropping.close(10)
