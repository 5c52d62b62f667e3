"""The indexer on the real broker: a registered work becomes unit records (every
sentence, every window of two) on the compacted topic; after an indexer restart
(nothing in memory) withdrawing the work still tombstones every one of them, and the
attribution worker's catalog view drops them from the vector index and from its
in-memory catalog (exact vectors, texts, verbatim spans)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from gpu_workers import indexer
from gpu_workers.catalog_view import CatalogView
from gpu_workers.embedder import HashingEmbedder
from gpu_workers.index import EdgeIndex
from gpu_workers.segment import sentences, units
from tributary import catalog

pytestmark = [pytest.mark.kafka, pytest.mark.qdrant]

TEXT = " ".join(f"Sentence word{i} tells of alpha beta gamma delta." for i in range(40))  # 40 sentences


def run_indexer(cfg):
    stop = threading.Event()
    thread = threading.Thread(target=indexer.run, args=(cfg.bootstrap_servers, HashingEmbedder(), stop), daemon=True)
    thread.start()
    return stop, thread


def wait(predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_withdrawal_after_an_indexer_restart_removes_every_chunk(platform_cfg, tmp_path):
    cfg = platform_cfg
    work_id = f"w-test-{uuid.uuid4().hex[:8]}"
    view = CatalogView(cfg.bootstrap_servers, EdgeIndex(str(tmp_path / "shard"), dim=384))
    stop, thread = run_indexer(cfg)
    try:
        catalog.publish(cfg.bootstrap_servers, [catalog.work_record(
            {"work_id": work_id, "holder_id": "h-test", "title": "T", "text": TEXT})])
        wait(lambda: len(indexer.published_chunks(cfg.bootstrap_servers).get(work_id, []))
             == len(units(sentences(TEXT))))
    finally:
        stop.set()
        thread.join(30)
    chunks = indexer.published_chunks(cfg.bootstrap_servers)[work_id]
    assert len(chunks) == 40 + 39  # every sentence, then every window of two
    assert view.sync() >= len(chunks)  # the view reads the topic to its end: every unit of the work
    assert all(view.units.has(c) for c in chunks)
    assert view.units.spans.match(TEXT[:400])[0].work_id == work_id
    stop, thread = run_indexer(cfg)  # a new process would know nothing in memory either
    try:
        catalog.publish(cfg.bootstrap_servers, [catalog.removal_record(work_id, "test")])
        wait(lambda: work_id not in indexer.published_chunks(cfg.bootstrap_servers))
    finally:
        stop.set()
        thread.join(30)
    view.sync()
    assert not any(view.units.has(c) for c in chunks)
    assert view.units.spans.match(TEXT[:400]) == []
    found = view.index.search_batch(HashingEmbedder().encode([TEXT[:400]]), top_k=5)[0]
    assert all(m.work_id != work_id for m in found)
    view.close()
