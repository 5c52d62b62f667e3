"""The catalog indexer: ``catalog-updates`` -> segment + embed each work once ->
``catalog-chunks`` (compacted; key chunk_id, tombstones for withdrawn works)."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from confluent_kafka import Message
from prometheus_client import Counter

from gpu_workers.embedder import Embedder
from gpu_workers.segment import sentences, units
from tributary import kafka
from tributary.health import Health
from tributary.ids import chunk_id
from tributary.kafka import TopicReader
from tributary.topics import Topic

log = logging.getLogger("tributary.indexer")
GROUP_ID = "tributary-indexer"


def chunk_records(update: dict[str, Any], catalog_version: int, embedder: Embedder) -> list[dict[str, Any]]:
    """A work's units (every sentence, every window of two), each embedded once."""
    work_units = units(sentences(update["text"]))
    vectors = embedder.encode([u.text for u in work_units])
    return [
        {
            "schema_version": 1,
            "chunk_id": chunk_id(update["work_id"], catalog_version, i),
            "work_id": update["work_id"],
            "holder_id": update["holder_id"],
            "chunk_index": i,
            "catalog_version": catalog_version,
            "model": embedder.name,
            "unit": u.kind,
            "sentences": [u.first_sentence, u.last_sentence],
            "text": u.text,
            "vector": [round(float(x), 7) for x in vectors[i]],
        }
        for i, u in enumerate(work_units)
    ]


def published_chunks(bootstrap: str) -> dict[str, list[str]]:
    """work_id -> chunk ids live on ``catalog-chunks`` (tombstoned ones left out)."""
    live: dict[str, str] = {}  # chunk_id -> work_id

    def apply(msg: Message) -> None:
        chunk = (msg.key() or b"").decode()
        value = msg.value()
        if value is None:
            live.pop(chunk, None)
        else:
            live[chunk] = json.loads(value)["work_id"]

    reader = TopicReader(bootstrap, Topic.CATALOG_CHUNKS.value)
    try:
        reader.read_to_end(apply, timeout=30)
    finally:
        reader.close()
    out: dict[str, list[str]] = {}
    for chunk, work in sorted(live.items()):
        out.setdefault(work, []).append(chunk)
    return out


WORKS = Counter("tributary_indexer_works_total", "Catalog works indexed or withdrawn", ["outcome"])
CHUNKS = Counter("tributary_indexer_chunks_total", "Catalog chunks embedded and published")


def run(bootstrap: str, embedder: Embedder, stop: threading.Event, health: Health | None = None) -> None:
    health = health or Health()
    consumer = kafka.consumer(bootstrap, GROUP_ID)
    producer = kafka.producer(bootstrap)
    consumer.subscribe([Topic.CATALOG_UPDATES.value])
    # work_id -> chunk ids currently published, to tombstone them on withdrawal/re-registration;
    # read back from the compacted topic, so a restarted indexer still knows them
    published = published_chunks(bootstrap)
    log.info("indexer ready model=%s revision=%s", embedder.name, embedder.revision)
    health.mark_ready(model=embedder.name, revision=embedder.revision)
    try:
        while not stop.is_set():
            health.beat()
            messages = kafka.good_messages(consumer.consume(num_messages=32, timeout=0.5))
            for msg in messages:
                value = msg.value()
                if value is None:
                    continue
                update = json.loads(value)
                kind = update.get("kind")
                work_id = update.get("work_id")
                if kind not in ("work", "work_removed"):
                    continue
                for old in published.pop(work_id, []):
                    producer.produce(Topic.CATALOG_CHUNKS.value, key=old.encode(), value=None)
                if kind == "work_removed":
                    WORKS.labels("withdrawn").inc()
                    log.info("work withdrawn work_id=%s", work_id)
                    continue
                version = kafka.position(msg)[2] + 1  # catalog-updates has one partition: offsets order versions
                records = chunk_records(update, version, embedder)
                for rec in records:
                    producer.produce(Topic.CATALOG_CHUNKS.value, key=rec["chunk_id"].encode(),
                                     value=kafka.dumps(rec))
                published[work_id] = [r["chunk_id"] for r in records]
                WORKS.labels("indexed").inc()
                CHUNKS.inc(len(records))
                log.info("indexed work_id=%s holder_id=%s chunks=%d catalog_version=%d",
                         work_id, update["holder_id"], len(records), version)
            if messages:
                kafka.flush_then_commit(producer, consumer, messages, "catalog chunks")
    finally:
        producer.flush(10)
        consumer.close()
