"""The SDK's typed events, refunds and the OpenAI wrapper (real ``openai`` client
against a local endpoint; events captured by a stub producer here, sent to the real
broker in tests/integration/test_producer_kafka.py), and EventProducer's batching on a
fake confluent-kafka producer."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from types import SimpleNamespace

import openai
import pytest
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import REGISTRY

from producers import sdk
from producers.events import InferenceEvent, InferenceRefund, InvalidEvent
from producers.openai_wrapper import instrument
from producers.sdk import BufferFullError, EventProducer
from schemas import first_problem
from schemas.batches import items
from tests.openai_server import ANSWER, OpenAIServer
from tributary.partitioner import home_partition
from tributary.topics import Topic


class CapturingProducer:
    def __init__(self, fail: bool = False):
        self.events: list[InferenceEvent] = []
        self.fail = fail

    def emit(self, event: InferenceEvent) -> bool:
        if self.fail:
            raise RuntimeError("broker unreachable")
        event.validate()
        self.events.append(event)
        return True


@pytest.fixture()
def server():
    srv = OpenAIServer().start()
    yield srv
    srv.stop()


def test_invalid_events_name_the_field():
    with pytest.raises(InvalidEvent) as err:
        InferenceEvent(provider="acme", model_name="m", model_revision="r", contract_id="c",
                       output_text="x", revenue_micros=-1).encode()
    assert err.value.field == "billing/revenue_micros"
    with pytest.raises(InvalidEvent, match="event_id"):
        InferenceRefund(event_id="", provider="acme", reason="x").encode()


def test_each_completion_emits_one_event(server):
    producer = CapturingProducer()
    client = instrument(openai.OpenAI(api_key="sk-test", base_url=server.base_url), producer,
                        provider="acme-ai", contract_id="standard-2026")
    response = client.chat.completions.create(model="acme-chat", messages=[{"role": "user", "content": "hi"}])
    assert response.choices[0].message.content == ANSWER  # the caller sees the real response
    [event] = producer.events
    assert event.event_id == "acme-ai:chatcmpl-1" and event.model_name == "acme-chat"
    assert event.model_revision == "fp_test" and event.output_text == ANSWER
    assert (event.input_tokens, event.output_tokens) == (12, 18)
    assert client.models is not None  # everything else passes through


def test_streamed_completions_emit_once_at_the_end(server):
    producer = CapturingProducer()
    client = instrument(openai.OpenAI(api_key="sk-test", base_url=server.base_url), producer,
                        provider="acme-ai", contract_id="standard-2026", revenue_micros=lambda r: 4_000)
    stream = client.chat.completions.create(model="acme-chat", messages=[], stream=True)
    chunks = list(stream)
    assert len(chunks) == len(ANSWER.split(" ")) and producer.events[0].output_text == ANSWER
    assert producer.events[0].revenue_micros == 4_000 and len(producer.events) == 1


def test_emission_failures_never_reach_the_model_call(server):
    client = instrument(openai.OpenAI(api_key="sk-test", base_url=server.base_url),
                        CapturingProducer(fail=True), provider="acme-ai", contract_id="standard-2026")
    response = client.chat.completions.create(model="acme-chat", messages=[])
    assert response.id == "chatcmpl-1" and client.emit_errors == 1


def test_a_streamed_token_billed_completion_asks_for_usage_and_is_billed_by_it(server):
    producer = CapturingProducer()
    client = instrument(openai.OpenAI(api_key="sk-test", base_url=server.base_url), producer,
                        provider="acme-ai", contract_id="standard-2026")
    chunks = list(client.chat.completions.create(model="acme-chat", messages=[], stream=True))
    assert server.requests[0]["stream_options"] == {"include_usage": True}
    # the usage-only chunk the wrapper asked for is not shown to a caller who did not ask
    assert len(chunks) == len(ANSWER.split(" ")) and all(c.choices for c in chunks)
    [event] = producer.events
    assert (event.input_tokens, event.output_tokens) == (12, 18) and event.output_text == ANSWER


def test_the_callers_stream_options_are_kept_and_its_own_usage_chunk_passed_through(server):
    producer = CapturingProducer()
    client = instrument(openai.OpenAI(api_key="sk-test", base_url=server.base_url), producer,
                        provider="acme-ai", contract_id="standard-2026")
    list(client.chat.completions.create(model="acme-chat", messages=[], stream=True,
                                        stream_options={"include_obfuscation": False}))
    assert server.requests[0]["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    chunks = list(client.chat.completions.create(model="acme-chat", messages=[], stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 18  # asked for: shown
    assert [(e.input_tokens, e.output_tokens) for e in producer.events] == [(12, 18), (12, 18)]


def test_a_token_billed_completion_without_usage_is_never_published_with_zero_tokens(caplog):
    server = OpenAIServer(usage=False).start()  # a server that ignores include_usage
    try:
        producer = CapturingProducer()
        client = instrument(openai.OpenAI(api_key="sk-test", base_url=server.base_url), producer,
                            provider="acme-ai", contract_id="standard-2026")
        before = REGISTRY.get_sample_value("tributary_producer_events_unbilled_total") or 0
        with caplog.at_level(logging.ERROR, logger="tributary.producer.openai"):
            chunks = list(client.chat.completions.create(model="acme-chat", messages=[], stream=True))
            response = client.chat.completions.create(model="acme-chat", messages=[])
        assert len(chunks) == len(ANSWER.split(" ")) and response.choices[0].message.content == ANSWER
        assert producer.events == [] and client.unbilled == 2 and client.emit_errors == 0
        assert REGISTRY.get_sample_value("tributary_producer_events_unbilled_total") == before + 2
        assert "inference event for chatcmpl-1 not published" in caplog.text
        assert "no token usage" in caplog.text
        # billed by revenue, usage is not needed
        billed = instrument(openai.OpenAI(api_key="sk-test", base_url=server.base_url), producer,
                            provider="acme-ai", contract_id="standard-2026", revenue_micros=lambda r: 4_000)
        list(billed.chat.completions.create(model="acme-chat", messages=[], stream=True))
        assert [e.revenue_micros for e in producer.events] == [4_000] and billed.unbilled == 0
    finally:
        server.stop()


# -- EventProducer: batching by home partition, on a fake confluent-kafka producer --------


class Delivered:
    def __init__(self, record):
        self.record = record

    def key(self): return self.record.key
    def value(self): return self.record.value
    def partition(self): return self.record.partition


@dataclass
class Record:
    key: bytes | None
    value: bytes
    partition: int  # -1: left to librdkafka's partitioner (keyed by event_id)

    def events(self) -> list[dict]:
        value = json.loads(self.value)
        return items(value, "events") or [value]


class FakeKafka:
    """The part of confluent_kafka.Producer the SDK uses. Records are kept in order; their
    delivery reports are served by poll/flush (failed with ``fail``; not at all while
    ``hold`` is set); list_topics answers ``partitions`` (None: the broker is unreachable)."""

    def __init__(self, config, partitions=4, fail=None):
        self.config = config
        self.partitions = partitions
        self.fail = fail
        self.hold = threading.Event()
        self.records: list[Record] = []
        self.pending: list[tuple[Record, object]] = []
        self.lock = threading.Lock()
        self.metadata_calls = 0

    def produce(self, topic, value=None, key=None, partition=-1, on_delivery=None):
        assert topic == Topic.INFERENCE_EVENTS.value and len(value) < 1_000_000
        with self.lock:
            if len(self.pending) >= self.config["queue.buffering.max.messages"]:
                raise BufferError("Local: Queue full")
            record = Record(key, value, partition)
            self.records.append(record)
            self.pending.append((record, on_delivery))

    def poll(self, timeout=0):
        if self.hold.is_set():
            time.sleep(min(timeout, 0.005))
            return 0
        with self.lock:
            served, self.pending = self.pending, []
        for record, callback in served:
            callback(self.fail, Delivered(record))
        if not served:
            time.sleep(min(timeout, 0.005))
        return len(served)

    def flush(self, timeout=0):
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            self.poll(0.005)
        return len(self.pending)

    def list_topics(self, topic, timeout):
        self.metadata_calls += 1
        if self.partitions is None:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "broker unreachable"))
        return SimpleNamespace(topics={topic: SimpleNamespace(
            error=None, partitions={p: None for p in range(self.partitions)})})

    def __len__(self):
        return len(self.pending)


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


@pytest.fixture()
def kafka(monkeypatch):
    """Each EventProducer made in the test gets a FakeKafka (the last one is returned);
    ``kafka.settings`` are the FakeKafka's own (partitions, fail)."""
    made: list[FakeKafka] = []
    settings: dict = {}

    def factory(config):
        made.append(FakeKafka(config, **settings))
        return made[-1]

    monkeypatch.setattr(sdk, "Producer", factory)
    made_by = SimpleNamespace(settings=settings, made=made)
    yield made_by
    for fake in made:
        fake.hold.clear()


def producer_with(kafka, **kwargs) -> tuple[EventProducer, FakeKafka]:
    producer = EventProducer("fake:9092", **kwargs)
    fake = kafka.made[-1]
    if producer._sender is not None and fake.partitions is not None:
        wait_for(lambda: producer.partitions == fake.partitions)
    return producer, fake


def event(event_id: str, text: str = "x") -> InferenceEvent:
    return InferenceEvent(provider="acme-ai", model_name="acme-chat", model_revision="1", contract_id="standard-2026",
                          output_text=text, revenue_micros=1_000, event_id=event_id)


def sample(metric: str) -> float:
    return REGISTRY.get_sample_value(metric) or 0.0


def test_events_are_batched_by_home_partition_in_valid_batch_records(kafka):
    producer, fake = producer_with(kafka, linger_ms=10_000)
    ids = [f"evt-group-{n}" for n in range(60)]
    for event_id in ids:
        assert producer.emit(event(event_id))
    assert fake.records == [] and producer.queued == 60  # all waiting in open batches
    assert producer.flush(5) == 0
    assert len(fake.records) == len({home_partition(i, 4) for i in ids}) == 4
    for record in fake.records:
        batch = json.loads(record.value)
        assert first_problem("inference-batch.v1", batch) is None
        assert all(first_problem("inference-event.v1", e) is None for e in batch["events"])
        homes = {home_partition(e["event_id"], 4) for e in batch["events"]}
        assert homes == {record.partition} and record.key == batch["events"][0]["event_id"].encode()
        # emit order within the partition
        assert [e["event_id"] for e in batch["events"]] == [i for i in ids if home_partition(i, 4) == record.partition]
    assert sorted(e["event_id"] for r in fake.records for e in r.events()) == sorted(ids)
    assert producer.sent == 60 and producer.queued == 0
    producer.close(1)


def test_a_batch_goes_when_it_holds_batch_max_events(kafka):
    kafka.settings["partitions"] = 1
    producer, fake = producer_with(kafka, batch_max_events=5, linger_ms=10_000)
    for n in range(12):
        producer.emit(event(f"evt-count-{n}"))
    wait_for(lambda: producer.sent == 10)  # two full batches, without a flush
    assert [len(r.events()) for r in fake.records] == [5, 5] and producer.queued == 2
    producer.flush(5)
    assert [len(r.events()) for r in fake.records] == [5, 5, 2]
    assert [e["event_id"] for r in fake.records for e in r.events()] == [f"evt-count-{n}" for n in range(12)]
    producer.close(1)


def test_a_batch_stays_within_batch_max_bytes_and_a_big_event_goes_alone(kafka):
    kafka.settings["partitions"] = 1
    size = len(event("evt-bytes-00").encode())
    limit = len(b'{"schema_version":1,"kind":"batch","events":[]}') + 3 * size + 2  # three events exactly
    producer, fake = producer_with(kafka, batch_max_bytes=limit, linger_ms=10_000)
    for n in range(7):
        producer.emit(event(f"evt-bytes-{n:02d}"))
    producer.emit(event("evt-bytes-big", text="y" * limit))  # alone it is over the limit
    producer.emit(event("evt-bytes-99"))
    producer.flush(5)
    assert [len(r.events()) for r in fake.records] == [3, 3, 1, 1, 1]
    assert all(len(r.value) <= limit for r in fake.records if r.events()[0]["event_id"] != "evt-bytes-big")
    alone = json.loads(fake.records[3].value)  # the plain event record, keyed by its id, in order
    assert alone["event_id"] == "evt-bytes-big" and fake.records[3].key == b"evt-bytes-big"
    assert [e["event_id"] for r in fake.records for e in r.events()][-3:] == ["evt-bytes-06", "evt-bytes-big",
                                                                               "evt-bytes-99"]
    producer.close(1)


def test_an_open_batch_goes_after_linger_ms_without_a_flush(kafka):
    producer, fake = producer_with(kafka, linger_ms=200)
    same = [i for i in (f"evt-linger-{n}" for n in range(40)) if home_partition(i, 4) == 0][:3]
    for event_id in same:
        producer.emit(event(event_id))
    assert fake.records == [] and producer.queued == 3
    wait_for(lambda: producer.sent == 3, timeout=5)
    [record] = fake.records
    assert [e["event_id"] for e in record.events()] == same and record.partition == 0
    producer.close(1)


def test_counters_and_metrics_count_events_not_records(kafka):
    before_sent = sample("tributary_producer_events_sent_total")
    producer, fake = producer_with(kafka, linger_ms=10_000)
    for n in range(200):
        producer.emit(event(f"evt-counted-{n}"))
    assert sample("tributary_producer_events_queued") == 200
    assert producer.flush(5) == 0
    assert len(fake.records) == 4 and producer.sent == 200 and producer.failed == 0
    assert sample("tributary_producer_events_sent_total") == before_sent + 200
    assert sample("tributary_producer_events_queued") == 0
    producer.close(1)


def test_a_failed_batch_fails_each_of_its_events_and_calls_back_for_each(kafka):
    kafka.settings["fail"] = KafkaError(KafkaError._MSG_TIMED_OUT, "message timed out")
    before_failed = sample("tributary_producer_events_failed_total")
    reports: list[tuple[str, Exception | None]] = []
    producer, fake = producer_with(kafka, linger_ms=10_000, on_delivery=lambda i, e: reports.append((i, e)))
    ids = [f"evt-failed-{n}" for n in range(30)]
    for event_id in ids:
        producer.emit(event(event_id))
    assert producer.flush(5) == 0
    assert len(fake.records) == 4 and producer.failed == 30 and producer.sent == 0
    assert sorted(i for i, _ in reports) == sorted(ids)
    assert all(isinstance(e, KafkaException) and e.args[0].code() == KafkaError._MSG_TIMED_OUT for _, e in reports)
    assert sample("tributary_producer_events_failed_total") == before_failed + 30
    producer.close(1)


def test_batch_max_events_one_sends_one_keyed_record_per_event_as_before(kafka):
    reports = []
    producer, fake = producer_with(kafka, batch_max_events=1, on_delivery=lambda i, e: reports.append((i, e)))
    for n in range(5):
        producer.emit(event(f"evt-single-{n}"))
    producer.refund(InferenceRefund(event_id="evt-single-2", provider="acme-ai", reason="chargeback"))
    assert producer.flush(5) == 0
    assert [r.key for r in fake.records] == [f"evt-single-{n}".encode() for n in (0, 1, 2, 3, 4, 2)]
    assert all(r.partition == -1 for r in fake.records)  # librdkafka's murmur2 partitioner decides
    assert json.loads(fake.records[-1].value)["kind"] == "refund" and "events" not in json.loads(fake.records[0].value)
    assert fake.metadata_calls == 0 and producer.sent == 6 and [i for i, _ in reports][-1] == "evt-single-2"
    producer.close(1)


def test_until_the_partitions_are_known_each_event_is_its_own_record(kafka):
    kafka.settings["partitions"] = None  # the broker does not answer metadata
    producer, fake = producer_with(kafka)
    for n in range(3):
        assert producer.emit(event(f"evt-nometa-{n}"))
    assert producer.flush(5) == 0 and producer.partitions is None
    assert [r.key for r in fake.records] == [f"evt-nometa-{n}".encode() for n in range(3)]
    fake.partitions = 4  # it answers again: batching starts at the next read
    producer._metadata_due = 0
    with producer._state:
        producer._state.notify_all()
    wait_for(lambda: producer.partitions == 4)
    producer.close(1)


def test_a_refund_rides_in_the_batch_of_its_event_after_it(kafka):
    producer, fake = producer_with(kafka, linger_ms=10_000)
    producer.emit(event("evt-refunded"))
    producer.emit(event("evt-other"))
    producer.refund(InferenceRefund(event_id="evt-refunded", provider="acme-ai", reason="chargeback",
                                    refund_id="rfd-1"))
    producer.flush(5)
    [record] = [r for r in fake.records if r.partition == home_partition("evt-refunded", 4)]
    kinds = [(e["event_id"], e.get("kind")) for e in record.events() if e["event_id"] == "evt-refunded"]
    assert kinds == [("evt-refunded", None), ("evt-refunded", "refund")]
    producer.close(1)


def test_emit_raw_stays_one_record_per_call(kafka):
    producer, fake = producer_with(kafka, linger_ms=10_000)
    assert producer.emit_raw("k1", b"not json") and producer.emit_raw(None, b"{}")
    wait_for(lambda: producer.sent == 2)
    assert [(r.key, r.value, r.partition) for r in fake.records] == [(b"k1", b"not json", -1), (None, b"{}", -1)]
    producer.close(1)


def test_a_full_buffer_counts_events_in_open_batches_and_follows_the_policy(kafka):
    producer, fake = producer_with(kafka, max_buffered_events=5, linger_ms=10_000)
    for n in range(5):
        producer.emit(event(f"evt-full-{n}"))
    with pytest.raises(BufferFullError, match="send buffer full"):
        producer.emit(event("evt-full-5"))
    producer.close(1)

    dropping, fake = producer_with(kafka, max_buffered_events=5, on_full="drop", linger_ms=10_000)
    assert [dropping.emit(event(f"evt-drop-{n}")) for n in range(8)].count(False) == 3 and dropping.dropped == 3
    dropping.close(1)

    blocking, fake = producer_with(kafka, max_buffered_events=5, on_full="block", block_timeout_s=0.3,
                                   linger_ms=10_000)
    fake.hold.set()  # nothing is acknowledged: waiting for room ends in BufferFullError
    for n in range(5):
        blocking.emit(event(f"evt-block-{n}"))
    started = time.monotonic()
    with pytest.raises(BufferFullError, match="still full after 0.3s"):
        blocking.emit(event("evt-block-5"))
    assert time.monotonic() - started >= 0.25
    threading.Timer(0.1, fake.hold.clear).start()  # acknowledgements come: the wait ends with room
    assert blocking.emit(event("evt-block-6"))
    assert blocking.flush(5) == 0 and blocking.sent == 6
    blocking.close(1)


def test_emitting_from_many_threads_delivers_every_event_once(kafka):
    producer, fake = producer_with(kafka, batch_max_events=7, linger_ms=1)
    ids = [[f"evt-thread-{t}-{n}" for n in range(250)] for t in range(4)]
    threads = [threading.Thread(target=lambda mine=mine: [producer.emit(event(i)) for i in mine]) for mine in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert producer.flush(10) == 0 and producer.sent == 1_000 and producer.queued == 0
    delivered = [(e["event_id"], r.partition) for r in fake.records for e in r.events()]
    assert sorted(i for i, _ in delivered) == sorted(i for mine in ids for i in mine)
    assert all(home_partition(i, 4) == p for i, p in delivered)
    for mine in ids:  # each thread's events keep their order within a partition
        for p in range(4):
            assert [i for i, q in delivered if q == p and i in mine] == [i for i in mine if home_partition(i, 4) == p]
    producer.close(1)


def test_batch_settings_are_checked_at_start_with_every_problem_listed(kafka):
    with pytest.raises(ValueError) as err:
        EventProducer("fake:9092", batch_max_events=1_001, batch_max_bytes=1_000_000, linger_ms=-1)
    assert "batch_max_events" in str(err.value) and "batch_max_bytes" in str(err.value)
    assert "linger_ms" in str(err.value)
