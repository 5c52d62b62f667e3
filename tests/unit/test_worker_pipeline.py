"""The attribution worker's three-thread pipeline: order, bounded queues, failures,
and exactly-once output when a transaction is aborted mid-stream (the batch and every
batch read after it are dropped and read again). Kafka is faked here; the real broker
runs the same worker in tests/integration (scale-out, e2e) and tests/chaos (broker
restarts abort transactions)."""

import json
import threading
import time

import pytest
from confluent_kafka import KafkaError, KafkaException

from gpu_workers.catalog import index_works
from gpu_workers.embedder import HashingEmbedder
from gpu_workers.index import QdrantIndex
from gpu_workers.pipeline import Pipeline, PipelineFailed
from gpu_workers.scoring import recompute
from gpu_workers.worker import AttributionWorker
from tributary.config import PipelineConfig
from tributary.topics import Topic


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


def test_items_come_out_in_order_and_close_finishes_them():
    seen = []
    pipe = Pipeline(lambda x: x * 10, seen.append, depth=2)
    for i in range(50):
        assert pipe.submit(i)
    pipe.close()
    assert seen == [i * 10 for i in range(50)]


def test_a_slow_model_blocks_submit_instead_of_queueing_without_bound():
    release = threading.Event()
    accepted = []
    stop = threading.Event()

    def model(x):
        release.wait()
        return x

    done = []
    pipe = Pipeline(model, done.append, depth=2)

    def feed():
        for i in range(20):
            if not pipe.submit(i, stop):
                return
            accepted.append(i)

    feeder = threading.Thread(target=feed)
    feeder.start()
    wait_for(lambda: len(accepted) == 3)  # one in the model step + a queue of 2
    time.sleep(0.3)
    assert len(accepted) == 3  # still blocked: the poll loop would stop polling here
    release.set()
    feeder.join(10)
    pipe.close()
    assert done == list(range(20))


def test_a_failing_stage_is_raised_to_the_caller():
    def post(x):
        if x == 3:
            raise ValueError("boom")

    pipe = Pipeline(lambda x: x, post, depth=1)
    with pytest.raises(PipelineFailed) as err:
        for i in range(100):
            pipe.submit(i)
        pipe.close()
    assert isinstance(err.value.__cause__, ValueError)


class Msg:
    def __init__(self, topic, partition, offset, value):
        self._t, self._p, self._o, self._v = topic, partition, offset, value

    def topic(self): return self._t
    def partition(self): return self._p
    def offset(self): return self._o
    def value(self): return self._v
    def key(self): return None
    def error(self): return None


class FakeConsumer:
    """Two partitions of attribution requests, consumed round-robin from a position that
    seek() moves, as librdkafka does. Records which threads call it: confluent-kafka
    serialises calls on a consumer, so a call from another thread while the poll loop
    consumes waits for a gap that may never come (a hang seen on the real broker)."""

    def __init__(self, logs):
        self.logs = logs
        self.pos = {p: 0 for p in logs}
        self.seeks = []
        self.threads = set()

    def __getattribute__(self, name):
        if name in ("subscribe", "consume", "seek", "consumer_group_metadata", "close"):
            object.__getattribute__(self, "threads").add(threading.get_ident())
        return object.__getattribute__(self, name)

    def subscribe(self, topics, on_assign=None, on_revoke=None):
        self.on_revoke = on_revoke
        on_assign(self, [])

    def consume(self, num_messages, timeout):
        out = []
        for _ in range(num_messages):
            ready = [p for p in sorted(self.logs) if self.pos[p] < len(self.logs[p])]
            if not ready:
                break
            p = ready[len(out) % len(ready)]
            out.append(Msg(Topic.ATTRIBUTION_REQUESTS.value, p, self.pos[p], self.logs[p][self.pos[p]]))
            self.pos[p] += 1
        if not out:
            time.sleep(min(timeout, 0.01))
        return out

    def seek(self, tp):
        self.seeks.append((tp.partition, tp.offset))
        self.pos[tp.partition] = tp.offset

    def consumer_group_metadata(self): return "group-metadata"

    def close(self):  # as librdkafka does: the partitions are revoked on close
        self.on_revoke(self, [])


class FakeProducer:
    """Transactions: output and offsets become visible together on commit; the commit
    of transaction number ``fail_at`` raises an abortable error instead."""

    def __init__(self, fail_at):
        self.fail_at = fail_at
        self.transactions = 0
        self.pending, self.pending_offsets = [], []
        self.committed, self.offsets = [], {}

    def init_transactions(self, timeout): pass

    def begin_transaction(self):
        self.pending, self.pending_offsets = [], []

    def produce(self, topic, key, value):
        self.pending.append(json.loads(value))

    def send_offsets_to_transaction(self, offsets, metadata, timeout):
        self.pending_offsets = [(tp.partition, tp.offset) for tp in offsets]

    def commit_transaction(self, timeout):
        self.transactions += 1
        if self.transactions == self.fail_at:
            raise KafkaException(KafkaError(KafkaError._STATE, "injected abortable failure",
                                            txn_requires_abort=True))
        self.committed.extend(self.pending)
        self.offsets.update(dict(self.pending_offsets))

    def abort_transaction(self, timeout):
        self.pending, self.pending_offsets = [], []

    def flush(self, timeout): return 0


WORK = {"work_id": "w-rail", "holder_id": "h-rail",
        "text": "The night train left the valley at nine. It ran along the river about the weather and the "
                "trains that crossed the old stone bridge every hour. Nobody on board said a word until dawn."}
QUOTED = "about the weather and the trains that crossed the old stone bridge"  # 12 words of the work


class FakeCatalog:
    """The worker's catalog view without the topic: one registered work, in the vector
    index and in the in-memory catalog units (exact vectors, texts, verbatim spans)."""

    def __init__(self, embedder, index):
        self.units = index_works([WORK], embedder, index)
        self.version, self.chunks = self.units.version, len(self.units)

    def sync(self): return 0
    def close(self): pass


def request(n):
    text = f"Output number {n} is {QUOTED}." if n % 3 == 0 else f"Output number {n} says nothing of note today."
    return json.dumps({"event_id": f"e{n:04d}", "occurred_at": "2026-11-20T00:00:00Z", "provider": "acme",
                       "model": {"name": "m", "revision": "1"}, "pool_micros": 10_000,
                       "contract": {"contract_id": "standard-2026", "version": 1, "royalty_rate_bps": 2000,
                                    "currency": "USD"},
                       "output": {"text": text}}).encode()


def check_attributions(committed):
    """What was committed is each request's attribution: every third quotes the work word
    for word (certain), the rest pay nobody; and each one's evidence gives its shares back."""
    for a in committed:
        n = int(a["event_id"][1:])
        works = [(s["work_id"], s["tier"]) for s in a["shares_ppm"]]
        assert works == ([("w-rail", "certain")] if n % 3 == 0 else []), a["event_id"]
        assert recompute(a["evidence"]) == (a["shares_ppm"], a["unattributed_ppm"])


def start_worker(requests, producer, embedder, depth):
    """The real worker on its own thread over two fake partitions (even / odd requests)."""
    consumer = FakeConsumer({0: [request(n) for n in range(0, requests, 2)],
                             1: [request(n) for n in range(1, requests, 2)]})
    index = QdrantIndex(":memory:", dim=embedder.dim)
    worker = AttributionWorker("unused", embedder, index,
                               PipelineConfig(batch_max_size=8, batch_max_wait_ms=10, pipeline_depth=depth), "t",
                               consumer=consumer, producer=producer, catalog=FakeCatalog(embedder, index))
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, args=(stop,))
    runner.start()
    return consumer, runner, stop


@pytest.mark.parametrize("fail_at", [1, 4, 9])
def test_an_aborted_transaction_re_reads_that_batch_and_all_later_ones_exactly_once(fail_at):
    producer = FakeProducer(fail_at)
    consumer, runner, stop = start_worker(200, producer, HashingEmbedder(), depth=2)
    wait_for(lambda: producer.offsets == {0: 100, 1: 100})
    stop.set()
    runner.join(10)
    ids = [a["event_id"] for a in producer.committed]
    assert sorted(ids) == [f"e{n:04d}" for n in range(200)]  # every request once, none twice
    assert consumer.seeks  # the abort was followed by a rewind
    assert consumer.threads == {runner.ident}  # only the poll thread touches the consumer
    for partition in (0, 1):  # and each partition's output stays in offset order
        mine = [int(i[1:]) for i in ids if int(i[1:]) % 2 == partition]
        assert mine == sorted(mine)
    check_attributions(producer.committed)


def test_a_batch_record_of_requests_yields_an_attribution_per_request():
    """One record on attribution-requests carrying three requests (a batch record) and a
    plain one after it: four attributions, and each record's offset committed once."""
    batch = json.dumps({"schema_version": 1, "kind": "batch",
                        "requests": [json.loads(request(n)) for n in (0, 2, 4)]}).encode()
    producer = FakeProducer(fail_at=None)
    embedder = HashingEmbedder()
    index = QdrantIndex(":memory:", dim=embedder.dim)
    consumer = FakeConsumer({0: [batch, request(6)], 1: []})
    worker = AttributionWorker("unused", embedder, index, PipelineConfig(batch_max_size=8, batch_max_wait_ms=10),
                               "t", consumer=consumer, producer=producer, catalog=FakeCatalog(embedder, index))
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, args=(stop,))
    runner.start()
    wait_for(lambda: producer.offsets == {0: 2})
    stop.set()
    runner.join(10)
    assert [a["event_id"] for a in producer.committed] == ["e0000", "e0002", "e0004", "e0006"]
    check_attributions(producer.committed)


class SlowEmbedder(HashingEmbedder):
    def embed(self, prepared):
        time.sleep(1.0)  # longer than the pipeline's put timeout: the poll thread waits in submit
        return super().embed(prepared)


def test_stopping_while_the_model_is_slow_commits_only_what_was_processed():
    producer = FakeProducer(fail_at=None)
    _, runner, stop = start_worker(400, producer, SlowEmbedder(), depth=1)
    wait_for(lambda: len(producer.committed) >= 16)
    stop.set()
    runner.join(30)
    assert not runner.is_alive()  # the batch left waiting for the full pipeline did not block the stop
    ids = [int(a["event_id"][1:]) for a in producer.committed]
    assert len(ids) == len(set(ids)) and len(ids) < 400
    for partition in (0, 1):  # what is committed is exactly what was produced, per partition
        produced = sorted(i for i in ids if i % 2 == partition)
        assert producer.offsets.get(partition, 0) == len(produced)
        assert produced == list(range(partition, 2 * len(produced), 2))
    check_attributions(producer.committed)
