"""The attribution worker: a short chain of steps over micro-batches, on three threads.

    poll (<= batch_max_size records or batch_max_wait_ms) -> decode (a batch record is many
    requests) -> chunk -> tokenize (pre)
    -> encode on the model (model thread: nothing else)
    -> batch search -> shares + evidence
    -> produce attributions and commit the consumed offsets in one Kafka transaction (post)

The transaction makes consume-transform-produce exactly-once: after a crash the
batch is re-read and re-attributed, and the aborted output is never visible to
read_committed consumers. Workers share the ``tributary-attribution`` group, so
running more of them splits the partitions.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from confluent_kafka import KafkaException, Message, TopicPartition
from prometheus_client import Counter, Histogram

from gpu_workers.catalog import CatalogUnits
from gpu_workers.catalog_view import CatalogView
from gpu_workers.embedder import Embedder, Prepared
from gpu_workers.index import VectorIndex
from gpu_workers.pipeline import Pipeline
from gpu_workers.scoring import UnitMatch, build_attribution, quote
from gpu_workers.segment import Segment, Unit, sentences, units, words
from gpu_workers.spans import shingles
from schemas.batches import items
from tributary import kafka
from tributary.config import PipelineConfig
from tributary.health import Health
from tributary.topics import Topic

log = logging.getLogger("tributary.attribution")

OUTPUTS = Counter("tributary_attribution_outputs_total", "Inference outputs attributed")
CHUNKS = Counter("tributary_attribution_chunks_total", "Output chunks embedded or received")
BATCH_SIZE = Histogram("tributary_attribution_batch_size", "Requests per micro-batch",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
ENCODE_SECONDS = Histogram("tributary_attribution_encode_seconds", "Model encode time per batch")
BATCH_SECONDS = Histogram("tributary_attribution_batch_seconds", "End-to-end time per batch")

GROUP_ID = "tributary-attribution"
# outputs are matched sentence by sentence: embedding their windows of two as well cost 3x
# the model time for +0.015 paraphrase recall on the technical set (README "Attribution")
OUTPUT_WINDOW = 1


@dataclass(frozen=True)
class Output:
    """One output as attribution sees it: its words, sentences and the units embedded."""

    tokens: list[str]
    segments: list[Segment]
    units: list[Unit]
    texts: list[str]  # what the model embeds (empty for precomputed embeddings)


def decode_requests(messages: list[Message]) -> list[dict[str, Any]]:
    """The requests ``messages`` carry, in order: one per record, or every request of a
    batch record (attribution-request-batch.v1). Offsets stay per message: a batch record
    is committed once all of its requests are attributed, in one transaction."""
    out: list[dict[str, Any]] = []
    for msg in messages:
        value = json.loads(kafka.payload(msg))
        found = items(value, "requests")
        out.extend([value] if found is None else found)
    return out


def output_units(requests: list[dict[str, Any]]) -> list[Output]:
    """Each request's output cut into sentences, as the catalog is (the catalog also has
    windows of two, which a sentence merging two of a work's sentences matches). Output
    sent as embeddings: one unit per vector, each counted as one word."""
    out = []
    for req in requests:
        if "text" in req["output"]:
            text = req["output"]["text"]
            segments = sentences(text)
            found = units(segments, window=OUTPUT_WINDOW)
            out.append(Output(words(text), segments, found, [u.text for u in found]))
        else:
            n = len(req["output"]["embeddings"])
            out.append(Output([], [Segment("", i, 1) for i in range(n)], [Unit("", i, i) for i in range(n)], []))
    return out


def prepare_texts(outputs: list[Output], embedder: Embedder) -> Prepared:
    """Tokenize every unit of a batch for one model call (pre-processing: no model)."""
    return embedder.prepare([t for o in outputs for t in o.texts])


def vectors_per_request(
    requests: list[dict[str, Any]], outputs: list[Output], encoded: np.ndarray, dim: int,
) -> list[np.ndarray]:
    """One (units, dim) array per request: the encoded rows of its units, or its
    precomputed embeddings (normalised) as sent."""
    out = []
    cursor = 0
    for req, o in zip(requests, outputs, strict=True):
        if "embeddings" in req["output"]:
            vecs = np.asarray(req["output"]["embeddings"], dtype=np.float32)
            norms = np.linalg.norm(vecs, axis=1, keepdims=True)
            out.append(vecs / np.where(norms == 0, 1, norms))
        elif o.texts:
            out.append(encoded[cursor:cursor + len(o.texts)])
        else:
            out.append(np.zeros((0, dim), dtype=np.float32))
        cursor += len(o.texts)
    return out


def output_vectors(
    requests: list[dict[str, Any]], embedder: Embedder, outputs: list[Output] | None = None,
) -> tuple[list[np.ndarray], float]:
    """One (units, dim) array per request: the units of the whole batch are encoded in a
    single model call; precomputed embeddings are used as sent."""
    outputs = outputs if outputs is not None else output_units(requests)
    prepared = prepare_texts(outputs, embedder)
    started = time.perf_counter()
    encoded = embedder.embed(prepared)
    return vectors_per_request(requests, outputs, encoded, embedder.dim), time.perf_counter() - started


def match_units(
    outputs: list[Output], vectors: list[np.ndarray], index: VectorIndex, catalog: CatalogUnits, top_k: int,
) -> list[list[UnitMatch]]:
    """Per output, per unit: the index's candidates rescored exactly (one batch search)."""
    present = [v for v in vectors if len(v)]
    flat = np.vstack(present) if present else np.zeros((0, 1), dtype=np.float32)
    found = index.search_batch(flat, top_k) if len(flat) else []
    rescored = catalog.rescore(flat, found, top_k) if len(flat) else []
    out, cursor = [], 0
    for vecs in vectors:
        out.append(rescored[cursor:cursor + len(vecs)])
        cursor += len(vecs)
    return out


def attribute_vectors(
    requests: list[dict[str, Any]],
    outputs: list[Output],
    vectors: list[np.ndarray],
    embedder: Embedder,
    index: VectorIndex,
    catalog: CatalogUnits,
    cfg: PipelineConfig,
) -> list[dict[str, Any]]:
    """Post-processing: batch search, exact rescoring, copied spans, shares and evidence."""
    calibration = catalog.calibration()
    results = []
    for req, o, matches in zip(requests, outputs, match_units(outputs, vectors, index, catalog, cfg.top_k),
                               strict=True):
        CHUNKS.inc(len(o.units))
        copied = catalog.spans.copied(o.tokens) if o.tokens else []
        attribution = build_attribution(
            req, o.segments, o.units, matches, copied, calibration=calibration, model_name=embedder.name,
            model_revision=embedder.revision, catalog_version=catalog.version,
        )
        _quote_the_works(attribution["evidence"], catalog)
        results.append(bounded(attribution))
    return results


def _quote_the_works(evidence: dict[str, Any], catalog: CatalogUnits) -> None:
    """Each decided sentence gets the passage of each work it was credited to, so a reviewer
    and the holder see both sides: ``work_texts`` maps a work to its own passage (a holder is
    only ever shown their own work's text), ``work_text`` keeps the first for the reviewer.
    For a copied sentence, each work's unit that shares the most word runs with it; for a
    semantic match, the matched unit (its work's), and the best unit of any tied work."""
    sources = {c["work_id"]: c["chunk_ids"] for c in evidence["copied"]}
    for row in evidence["matches"]:
        if "text" not in row:
            continue
        chunks: dict[str, str] = {}
        top = row.get("chunk_id")
        if row["method"] != "copied" and top and catalog.has(top):
            chunks[catalog.work_of(top)] = top
        for work in row.get("works", []):
            if work not in chunks:
                best = _most_shared(row["text"], sources.get(work, [])[:MAX_QUOTE_CANDIDATES], catalog)
                if best is not None:
                    chunks[work] = best
        quotes = {w: quote(catalog.text(c)) for w, c in chunks.items() if w in row.get("works", [])}
        if quotes:
            row["work_texts"] = quotes
            row["work_text"] = quotes[min(quotes, key=lambda w: row["works"].index(w))]


# how long a stopping worker waits for its in-flight batches to be produced and committed;
# the chart's terminationGracePeriodSeconds must be longer (tests/deploy/test_helm.py)
DRAIN_TIMEOUT_S = 120.0
MAX_QUOTE_CANDIDATES = 64  # units of one work looked at to quote a copied sentence's source


def _most_shared(text: str, chunk_ids: list[str], catalog: CatalogUnits) -> str | None:
    """The unit sharing the most word runs with ``text``; of equals the shortest (a sentence
    rather than the window holding it, so the quote is not cut before the copied words)."""
    mine = set(shingles(words(text)))
    best, best_key = None, (-1, 0)
    for chunk in chunk_ids:
        if not catalog.has(chunk):
            continue
        unit = catalog.text(chunk)
        key = (len(mine.intersection(shingles(words(unit)))), -len(unit))
        if key > best_key:
            best, best_key = chunk, key
    return best


MAX_ATTRIBUTION_BYTES = 900_000  # under Kafka's 1 MB message limit


def bounded(attribution: dict[str, Any]) -> dict[str, Any]:
    """An attribution that fits in one Kafka message. Evidence grows with the output (a
    100 KB output of matched sentences); past the limit the quotes go first, then the
    per-sentence rows (``recompute`` needs neither: the shares stay explainable)."""
    if len(kafka.dumps(attribution)) <= MAX_ATTRIBUTION_BYTES:
        return attribution
    evidence = attribution["evidence"]
    for row in evidence["matches"]:
        row.pop("text", None)
        row.pop("work_text", None)
        row.pop("work_texts", None)
    evidence["quotes_dropped"] = True
    if len(kafka.dumps(attribution)) > MAX_ATTRIBUTION_BYTES:
        evidence["matches_dropped"] = len(evidence["matches"])
        evidence["matches"] = [m for m in evidence["matches"] if m.get("tier") == "probable"][:50]
    if len(kafka.dumps(attribution)) > MAX_ATTRIBUTION_BYTES:
        raise ValueError(f"attribution of {attribution['event_id']} does not fit in a Kafka message even without "
                         "quotes and rows")
    return attribution


def attribute_batch(
    requests: list[dict[str, Any]],
    embedder: Embedder,
    index: VectorIndex,
    catalog: CatalogUnits,
    cfg: PipelineConfig,
) -> list[dict[str, Any]]:
    """The three steps on one thread (the worker runs them on three)."""
    outputs = output_units(requests)
    vectors, encode_s = output_vectors(requests, embedder, outputs)
    ENCODE_SECONDS.observe(encode_s)
    return attribute_vectors(requests, outputs, vectors, embedder, index, catalog, cfg)


@dataclass
class Batch:
    """One micro-batch on its way through the pipeline."""

    messages: list[Message]
    requests: list[dict[str, Any]]
    outputs: list[Output]
    prepared: Prepared
    generation: int
    read_at: float
    group_metadata: Any = None  # the consumer group's generation when read: its offsets commit under it
    vectors: list[np.ndarray] = field(default_factory=list)


def first_offsets(messages: list[Message]) -> dict[tuple[str, int], int]:
    """(topic, partition) -> the lowest offset among ``messages``."""
    first: dict[tuple[str, int], int] = {}
    for topic, partition, offset in map(kafka.position, messages):
        first[(topic, partition)] = min(first.get((topic, partition), offset), offset)
    return first


class AttributionWorker:
    """Three threads over bounded queues (:mod:`gpu_workers.pipeline`): this one polls,
    decodes, chunks and tokenizes; the model thread encodes; the post thread searches,
    builds shares and evidence, and produces them with the consumed offsets in one
    transaction, batch after batch in the order they were read.

    If a transaction must be aborted, that batch and every batch read after it are
    dropped (a newer ``generation``) and the poll thread seeks each partition back to
    the first offset any of them held, so they are read again in order. On a rebalance
    the pipeline is drained first: offsets are committed under the generation of the
    group that handed out the records.
    """

    def __init__(self, bootstrap: str, embedder: Embedder, index: VectorIndex,
                 cfg: PipelineConfig, worker_id: str, *, consumer: Any = None, producer: Any = None,
                 catalog: Any = None):
        """``consumer``, ``producer``, ``catalog``: stand-ins for unit tests (default: real ones)."""
        self.cfg = cfg
        self.embedder = embedder
        self.index = index
        self.catalog = catalog or CatalogView(bootstrap, index)
        self.consumer = consumer or kafka.consumer(bootstrap, GROUP_ID)
        self.producer = producer or kafka.producer(bootstrap, **{"transactional.id": f"{GROUP_ID}-{worker_id}"})
        self.producer.init_transactions(30)
        self.assigned: set[int] = set()
        self.catalog.units.trim = cfg.calibration_trim
        if cfg.similarity_threshold > 0:
            self.catalog.units.fixed = (cfg.similarity_threshold, cfg.similarity_margin)
        elif cfg.calibration_corpus:
            from gpu_workers.catalog import load_corpus

            corpus = load_corpus(cfg.calibration_corpus, embedder)
            self.catalog.units.set_corpus(corpus)
            log.info("calibration corpus %s: %d sentences", cfg.calibration_corpus, len(corpus))
        self._calibration = ""
        self._lock = threading.Lock()
        self._generation = 0
        self._in_flight: list[Batch] = []
        self._rewind: dict[tuple[str, int], int] = {}
        self._health = Health()
        self._pipeline: Pipeline | None = None

    def _log_calibration(self) -> None:
        c = self.catalog.units.calibration()
        if c.version != self._calibration:
            self._calibration = c.version
            log.info("calibration version=%s threshold=%.3f margin=%.3f source=%s null_units=%d null_works=%d "
                     "null_pass_rate=%.4f upper=%.4f", c.version, c.threshold, c.margin, c.source, c.null_units,
                     c.null_works, c.unit_rate, c.unit_rate_upper)

    def _on_assign(self, _consumer: Any, partitions: list[Any]) -> None:
        self.assigned = {p.partition for p in partitions}
        log.info("partitions assigned: %s", sorted(self.assigned))

    def _on_revoke(self, _consumer: Any, partitions: list[Any]) -> None:
        self._drain()
        with self._lock:
            # the next owner (maybe us again) starts from the committed offsets
            self._rewind.clear()
            self._generation += 1
        log.info("partitions revoked: %s", sorted(p.partition for p in partitions))

    def _drain(self, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while self._pipeline is not None and self._pipeline.error is None:
            with self._lock:
                if not self._in_flight:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"attribution pipeline did not drain within {timeout_s:.0f} s")
            time.sleep(0.02)

    def run(self, stop: threading.Event, health: Health | None = None) -> None:
        self._health = health = health or Health()
        self.catalog.sync()
        self.consumer.subscribe([Topic.ATTRIBUTION_REQUESTS.value], on_assign=self._on_assign,
                                on_revoke=self._on_revoke)
        log.info("attribution worker ready catalog_chunks=%d catalog_version=%d pipeline_depth=%d",
                 self.catalog.chunks, self.catalog.version, self.cfg.pipeline_depth)
        health.mark_ready(catalog_chunks=self.catalog.chunks, model=self.embedder.name)
        self._pipeline = Pipeline(self._encode, self._finish, depth=self.cfg.pipeline_depth, name="attribution")
        try:
            while not stop.is_set():
                self._pipeline.check()
                with self._lock:
                    if not self._in_flight:
                        health.beat()  # idle; while batches are in flight the post thread beats
                messages = kafka.good_messages(self.consumer.consume(
                    num_messages=self.cfg.batch_max_size, timeout=self.cfg.batch_max_wait_ms / 1000))
                batch = self._read(messages)
                if batch is not None and not self._pipeline.submit(batch, stop):
                    with self._lock:  # stopping while the pipeline was full: never processed,
                        self._in_flight.remove(batch)  # not committed, read again by the next owner
                    break
            self._pipeline.close()
        finally:
            self.consumer.close()
            self.producer.flush(10)
            self.catalog.close()

    def _read(self, messages: list[Message]) -> Batch | None:
        """Pre-processing on the poll thread: decode, chunk, tokenize; or, if a rewind is
        pending, drop what was just read and seek back."""
        with self._lock:
            if self._rewind:
                self._read_again(messages)
                rewind, self._rewind = self._rewind, {}
                for (topic, partition), offset in sorted(rewind.items()):
                    log.warning("re-reading %s/%d from offset %d after an aborted transaction", topic, partition,
                                offset)
                    try:
                        self.consumer.seek(TopicPartition(topic, partition, offset))
                    except KafkaException as exc:  # no longer ours: its next owner reads it from the commit
                        log.warning("could not seek %s/%d: %s", topic, partition, exc)
                return None
        if not messages:
            return None
        requests = decode_requests(messages)
        outputs = output_units(requests)
        # the client serialises calls on the consumer, which this thread keeps busy: the post
        # thread must not call it, so the group metadata for the commit is taken here
        batch = Batch(messages, requests, outputs, prepare_texts(outputs, self.embedder), 0, time.perf_counter(),
                      self.consumer.consumer_group_metadata())
        with self._lock:
            if self._rewind:  # an abort came in while tokenizing: read these again too
                self._read_again(messages)
                return None
            batch.generation = self._generation
            self._in_flight.append(batch)
        return batch

    def _read_again(self, messages: list[Message]) -> None:
        """Mark ``messages`` to be read again: each partition rewinds to the lowest offset
        of all marked (call with the lock held)."""
        for key, offset in first_offsets(messages).items():
            self._rewind[key] = min(self._rewind.get(key, offset), offset)

    def _encode(self, batch: Batch) -> Batch:
        """The model thread: nothing but the model call."""
        if batch.generation == self._generation:
            started = time.perf_counter()
            encoded = self.embedder.embed(batch.prepared)
            ENCODE_SECONDS.observe(time.perf_counter() - started)
            batch.vectors = vectors_per_request(batch.requests, batch.outputs, encoded, self.embedder.dim)
        return batch

    def _finish(self, batch: Batch) -> None:
        """The post thread: search, shares, evidence; produce and commit in one transaction."""
        try:
            if batch.generation == self._generation:
                self._commit(batch)
        finally:
            with self._lock:
                self._in_flight.remove(batch)
        self._health.beat()

    def _commit(self, batch: Batch) -> None:
        self.catalog.sync()  # every request is matched against the catalog as of now (index used by this thread only)
        self._log_calibration()
        attributions = attribute_vectors(batch.requests, batch.outputs, batch.vectors, self.embedder, self.index,
                                         self.catalog.units, self.cfg)
        try:
            self.producer.begin_transaction()
            for attribution in attributions:
                self.producer.produce(Topic.ATTRIBUTIONS.value, key=attribution["event_id"].encode(),
                                      value=kafka.dumps(attribution))
            self.producer.send_offsets_to_transaction(
                kafka.next_offsets(batch.messages), batch.group_metadata, 30)
            self.producer.commit_transaction(30)
        except KafkaException as exc:
            error = exc.args[0]
            if not error.txn_requires_abort():
                raise
            log.warning("transaction aborted, re-reading this batch and every later one: %s", error)
            self.producer.abort_transaction(30)
            with self._lock:
                if batch.generation != self._generation:
                    return  # a rebalance already dropped it; the next owner reads it from the commit
                self._generation += 1
                for held in self._in_flight:  # this batch and all read after it
                    self._read_again(held.messages)
            return
        seconds = time.perf_counter() - batch.read_at
        OUTPUTS.inc(len(attributions))
        BATCH_SIZE.observe(len(attributions))
        BATCH_SECONDS.observe(seconds)
        log.info("batch attributed=%d seconds=%.3f", len(attributions), seconds)
