"""One contract, both index implementations: the embedded qdrant-edge shard (the
default) and qdrant-client (local mode here; the same client talks to a Qdrant server
with QDRANT_URL). Same inputs, same matches."""

import numpy as np
import pytest

from gpu_workers.index import ChunkRecord, EdgeIndex, QdrantIndex

pytestmark = pytest.mark.qdrant

DIM = 16


@pytest.fixture(params=["edge", "client-local"])
def index(request, tmp_path):
    if request.param == "edge":
        idx = EdgeIndex(str(tmp_path / "shard"), dim=DIM)
        yield idx
        idx.close()
    else:
        yield QdrantIndex(":memory:", dim=DIM)


def chunks(n, seed=0):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [ChunkRecord(f"ch_{i:04d}", f"w-{i % 7}", f"h-{i % 3}", i, 5, vectors[i].tolist()) for i in range(n)], vectors


def test_nearest_first_with_payload_and_cosine_scores(index):
    records, vectors = chunks(300)
    index.upsert(records)
    assert index.count() == 300
    found = index.search_batch(vectors[[3, 42]], top_k=5)
    assert [row[0].chunk_id for row in found] == ["ch_0003", "ch_0042"]
    first = found[0][0]
    assert (first.work_id, first.holder_id, first.chunk_index) == ("w-3", "h-0", 3)
    assert first.score == pytest.approx(1.0, abs=1e-4)
    assert all(a.score >= b.score for row in found for a, b in zip(row, row[1:], strict=False))
    brute = vectors @ vectors[42]
    assert [m.chunk_id for m in found[1]] == [f"ch_{i:04d}" for i in np.argsort(-brute)[:5]]


def test_delete_and_reupsert(index):
    records, vectors = chunks(50)
    index.upsert(records)
    index.delete(["ch_0007"])
    assert index.count() == 49
    assert all(m.chunk_id != "ch_0007" for m in index.search_batch(vectors[[7]], top_k=3)[0])
    index.upsert([records[7]])
    index.upsert([records[7]])  # idempotent: same id, same point
    assert index.count() == 50
    assert index.search_batch(vectors[[7]], top_k=1)[0][0].chunk_id == "ch_0007"


def test_empty_queries(index):
    assert index.search_batch(np.zeros((0, DIM), dtype=np.float32), top_k=3) == []
    assert index.search_batch(np.ones((1, DIM), dtype=np.float32), top_k=3) == [[]]


def test_edge_builds_its_hnsw_index_after_bulk_loads(tmp_path):
    idx = EdgeIndex(str(tmp_path / "big"), dim=DIM)
    records, vectors = chunks(3_000, seed=1)
    idx.upsert(records)  # > OPTIMIZE_AFTER points: optimized
    assert idx._changed == 0 and idx.count() == 3_000
    found = idx.search_batch(vectors[:20], top_k=1)
    assert sum(row[0].chunk_id == f"ch_{i:04d}" for i, row in enumerate(found)) >= 19  # approximate search
    idx.close()
