"""Chunking, scoring and the worker's batch step, on the fake embedder and
qdrant-client's local mode (the real model and engine run in tests/integration)."""

import numpy as np
import pytest

from gpu_workers.chunking import chunk_text
from gpu_workers.embedder import HashingEmbedder
from gpu_workers.index import ChunkRecord, Match, QdrantIndex
from gpu_workers.scoring import build_attribution, shares_from_matches
from gpu_workers.worker import attribute_batch
from schemas import first_problem
from tributary.config import PipelineConfig
from tributary.sample import load_catalog


def test_chunks_overlap_and_cover_the_text():
    words = [f"w{i}" for i in range(150)]
    chunks = chunk_text(" ".join(words), words=60, overlap=20)
    assert chunks[0].split()[0] == "w0" and chunks[-1].split()[-1] == "w149"
    assert all(len(c.split()) == 60 for c in chunks)
    assert chunk_text("  ") == [] and chunk_text("one two") == ["one two"]
    with pytest.raises(ValueError):
        chunk_text("x", words=5, overlap=5)


def m(chunk, work, holder, score):
    return Match(chunk, work, holder, 0, score)


def test_shares_conserve_and_respect_the_threshold():
    per_chunk = [
        [m("c1", "w1", "h1", 0.91), m("c2", "w2", "h2", 0.80)],
        [m("c3", "w2", "h2", 0.70)],
        [m("c4", "w3", "h3", 0.30)],  # below threshold: unattributed
    ]
    shares, unattributed, evidence = shares_from_matches(per_chunk, 0.6)
    assert shares == [{"work_id": "w1", "holder_id": "h1", "share_ppm": 333_334},
                      {"work_id": "w2", "holder_id": "h2", "share_ppm": 333_333}]
    assert unattributed == 333_333
    assert sum(s["share_ppm"] for s in shares) + unattributed == 1_000_000
    assert [e["chunk_id"] for e in evidence if e["chosen"]] == ["c1", "c3"]
    assert not any(e["chunk_id"] == "c4" for e in evidence)


def test_equal_scores_of_two_works_share_the_slice_deterministically():
    shares, unattributed, _ = shares_from_matches([[m("c9", "w9", "h9", 0.8), m("c1", "w1", "h1", 0.8)]], 0.5)
    assert shares == [{"work_id": "w1", "holder_id": "h1", "share_ppm": 500_000},
                      {"work_id": "w9", "holder_id": "h9", "share_ppm": 500_000}] and unattributed == 0


def test_no_chunks_means_fully_unattributed():
    assert shares_from_matches([], 0.6) == ([], 1_000_000, [])


@pytest.fixture(scope="module")
def fake_index():
    embedder = HashingEmbedder()
    index = QdrantIndex(":memory:", dim=embedder.dim)
    records = []
    for work in load_catalog()["works"]:
        for i, chunk in enumerate(chunk_text(work["text"])):
            vec = embedder.encode([chunk])[0]
            records.append(ChunkRecord(f"{work['work_id']}-{i}", work["work_id"], work["holder_id"], i, 1,
                                       vec.tolist()))
    index.upsert(records)
    return embedder, index


def request(event_id, output):
    return {"event_id": event_id, "occurred_at": "2026-11-20T00:00:00Z", "provider": "acme",
            "model": {"name": "m", "revision": "1"}, "pool_micros": 10_000,
            "contract": {"contract_id": "standard-2026", "version": 1, "royalty_rate_bps": 2000,
                         "currency": "USD"}, "output": output}


def test_batch_attributes_quotes_and_not_unrelated_text(fake_index):
    embedder, index = fake_index
    works = {w["work_id"]: w for w in load_catalog()["works"]}
    quote = " ".join(works["w-moby-dick"]["text"].split()[:60])
    unrelated = "Preheat the oven, roast the potatoes, and reset the router before the meeting on Thursday."
    precomputed = embedder.encode([" ".join(works["w-alice"]["text"].split()[:60])]).tolist()
    batch = [request("e1", {"text": quote}), request("e2", {"text": unrelated}),
             request("e3", {"embeddings": precomputed, "embedding_model": "all-MiniLM-L6-v2"})]
    cfg = PipelineConfig(similarity_threshold=0.6)
    out = attribute_batch(batch, embedder, index, cfg, catalog_version=7)
    assert [a["event_id"] for a in out] == ["e1", "e2", "e3"]
    assert [s["work_id"] for s in out[0]["shares_ppm"]] == ["w-moby-dick"]
    assert out[1]["shares_ppm"] == [] and out[1]["unattributed_ppm"] == 1_000_000
    assert [s["work_id"] for s in out[2]["shares_ppm"]] == ["w-alice"]
    for a in out:
        assert first_problem("attribution.v1", a) is None
        assert a["evidence"]["catalog_version"] == 7 and a["evidence"]["threshold"] == 0.6
    # reproducible: same inputs, same attribution (ids included)
    assert attribute_batch(batch, embedder, index, cfg, catalog_version=7) == out


def test_index_delete_removes_chunks():
    index = QdrantIndex(":memory:", dim=4)
    index.upsert([ChunkRecord("c1", "w1", "h1", 0, 1, [1, 0, 0, 0]),
                  ChunkRecord("c2", "w2", "h2", 0, 1, [0, 1, 0, 0])])
    assert index.count() == 2
    index.delete(["c1"])
    hits = index.search_batch(np.array([[1.0, 0, 0, 0]], dtype=np.float32), 5)
    assert [h.chunk_id for h in hits[0]] == ["c2"]


def test_build_attribution_ids_depend_on_catalog_version():
    req = request("e1", {"text": "x"})
    a = build_attribution(req, [], threshold=0.6, model_name="m", model_revision="r", catalog_version=1)
    b = build_attribution(req, [], threshold=0.6, model_name="m", model_revision="r", catalog_version=2)
    assert a["attribution_id"] != b["attribution_id"]
