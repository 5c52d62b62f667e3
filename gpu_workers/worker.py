"""The attribution worker: a short chain of steps over micro-batches.

    poll (<= batch_max_size requests or batch_max_wait_ms) -> decode -> chunk (pre)
    -> encode on the model (core) -> batch search -> shares + evidence (post)
    -> produce attributions and commit the consumed offsets in one Kafka transaction

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
from typing import Any

import numpy as np
from confluent_kafka import KafkaException, Message
from prometheus_client import Counter, Histogram

from gpu_workers.catalog_view import CatalogView
from gpu_workers.chunking import chunk_text
from gpu_workers.embedder import Embedder
from gpu_workers.index import Match, VectorIndex
from gpu_workers.scoring import build_attribution
from gpu_workers.spans import SpanIndex
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


def output_chunks(requests: list[dict[str, Any]]) -> list[list[str]]:
    """Each request's output text, chunked as the catalog is (none for embeddings)."""
    return [chunk_text(req["output"]["text"]) if "text" in req["output"] else [] for req in requests]


def output_vectors(
    requests: list[dict[str, Any]], embedder: Embedder, chunks: list[list[str]] | None = None,
) -> tuple[list[np.ndarray], float]:
    """One (chunks, dim) array per request: text is chunked and encoded in a single
    model call for the whole batch; precomputed embeddings are used as sent."""
    chunks = chunks if chunks is not None else output_chunks(requests)
    texts: list[str] = []
    owners: list[int] = []
    for i, request_chunks in enumerate(chunks):
        for chunk in request_chunks:
            texts.append(chunk)
            owners.append(i)
    started = time.perf_counter()
    encoded = embedder.encode(texts)
    encode_s = time.perf_counter() - started
    per_request: list[list[np.ndarray]] = [[] for _ in requests]
    for row, owner in enumerate(owners):
        per_request[owner].append(encoded[row])
    out = []
    for i, req in enumerate(requests):
        if "embeddings" in req["output"]:
            vecs = np.asarray(req["output"]["embeddings"], dtype=np.float32)
            norms = np.linalg.norm(vecs, axis=1, keepdims=True)
            out.append(vecs / np.where(norms == 0, 1, norms))
        elif per_request[i]:
            out.append(np.vstack(per_request[i]))
        else:
            out.append(np.zeros((0, embedder.dim), dtype=np.float32))
    return out, encode_s


def attribute_batch(
    requests: list[dict[str, Any]],
    embedder: Embedder,
    index: VectorIndex,
    cfg: PipelineConfig,
    catalog_version: int,
    spans: SpanIndex | None = None,
    threshold: float | None = None,
) -> list[dict[str, Any]]:
    """``threshold``: the calibrated similarity threshold (default: the configured one)."""
    chunks = output_chunks(requests)
    vectors, encode_s = output_vectors(requests, embedder, chunks)
    ENCODE_SECONDS.observe(encode_s)
    flat = np.vstack([v for v in vectors if len(v)]) if any(len(v) for v in vectors) else np.zeros((0, embedder.dim))
    found = index.search_batch(flat, cfg.top_k) if len(flat) else []
    results = []
    cursor = 0
    for req, vecs, texts in zip(requests, vectors, chunks, strict=True):
        per_chunk: list[list[Match]] = found[cursor : cursor + len(vecs)]
        cursor += len(vecs)
        CHUNKS.inc(len(vecs))
        per_chunk_spans = [spans.match(t) for t in texts] if spans is not None and texts else None
        results.append(build_attribution(
            req, per_chunk, threshold=cfg.similarity_threshold if threshold is None else threshold,
            model_name=embedder.name, model_revision=embedder.revision, catalog_version=catalog_version,
            per_chunk_spans=per_chunk_spans,
        ))
    return results


class AttributionWorker:
    def __init__(self, bootstrap: str, embedder: Embedder, index: VectorIndex,
                 cfg: PipelineConfig, worker_id: str):
        self.cfg = cfg
        self.embedder = embedder
        self.index = index
        self.catalog = CatalogView(bootstrap, index)
        self.consumer = kafka.consumer(bootstrap, GROUP_ID)
        self.producer = kafka.producer(bootstrap, **{"transactional.id": f"{GROUP_ID}-{worker_id}"})
        self.producer.init_transactions(30)
        self.assigned: set[int] = set()
        from gpu_workers.evaluate import resolve_threshold

        self.threshold, source = resolve_threshold(cfg.similarity_threshold, embedder.name, embedder.revision)
        log.info("similarity threshold=%.3f source=%s", self.threshold, source)

    def _on_assign(self, _consumer: Any, partitions: list[Any]) -> None:
        self.assigned = {p.partition for p in partitions}
        log.info("partitions assigned: %s", sorted(self.assigned))

    def run(self, stop: threading.Event, health: Health | None = None) -> None:
        health = health or Health()
        self.catalog.sync()
        self.consumer.subscribe([Topic.ATTRIBUTION_REQUESTS.value], on_assign=self._on_assign)
        log.info("attribution worker ready catalog_chunks=%d catalog_version=%d",
                 self.catalog.chunks, self.catalog.version)
        health.mark_ready(catalog_chunks=self.catalog.chunks, model=self.embedder.name)
        try:
            while not stop.is_set():
                health.beat()
                messages = kafka.good_messages(self.consumer.consume(
                    num_messages=self.cfg.batch_max_size, timeout=self.cfg.batch_max_wait_ms / 1000))
                if messages:
                    self.process(messages)
        finally:
            self.consumer.close()
            self.producer.flush(10)
            self.catalog.close()

    def process(self, messages: list[Message]) -> None:
        started = time.perf_counter()
        self.catalog.sync()  # every request is matched against the catalog as of now
        requests = [json.loads(kafka.payload(m)) for m in messages]
        attributions = attribute_batch(requests, self.embedder, self.index, self.cfg, self.catalog.version,
                                       self.catalog.spans, self.threshold)
        try:
            self.producer.begin_transaction()
            for attribution in attributions:
                self.producer.produce(Topic.ATTRIBUTIONS.value, key=attribution["event_id"].encode(),
                                      value=kafka.dumps(attribution))
            self.producer.send_offsets_to_transaction(
                kafka.next_offsets(messages), self.consumer.consumer_group_metadata(), 30)
            self.producer.commit_transaction(30)
        except KafkaException as exc:
            error = exc.args[0]
            if error.txn_requires_abort():
                log.warning("transaction aborted, re-reading the batch: %s", error)
                self.producer.abort_transaction(30)
                for tp in kafka.next_offsets(messages):
                    tp.offset = min(offset for topic, partition, offset in map(kafka.position, messages)
                                    if (topic, partition) == (tp.topic, tp.partition))
                    self.consumer.seek(tp)
                return
            raise
        OUTPUTS.inc(len(attributions))
        BATCH_SIZE.observe(len(attributions))
        BATCH_SECONDS.observe(time.perf_counter() - started)
        log.info("batch attributed=%d seconds=%.3f", len(attributions), time.perf_counter() - started)
