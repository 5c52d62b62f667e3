"""Benchmark: the attribution worker's batch path against raw ``model.encode``, and the
vector index at catalog scale.

    .venv/bin/python benchmarks/attribution_bench.py [--outputs 512] [--batch 64] [--chunks 100000]

Prints, from one run on this machine (CPU here; CUDA with fp16 when present, same code):
  1. baseline: ``SentenceTransformer.encode`` of the same output chunks, chunks/s;
  2. the worker's path per micro-batch (chunking, encode, qdrant-edge batch search,
     verbatim span matching, shares and evidence): outputs/s, chunks/s, the ratio to (1),
     and batch latency p50/p99;
  3. the index at --chunks catalog chunks (random unit vectors): qdrant-edge upserts/s,
     HNSW build time, and batch-query latency for 64 queries; qdrant-client's local mode
     at a tenth of the size for comparison (it is brute force in Python);
  4. peak RSS of this process.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_workers import evaluate  # noqa: E402
from gpu_workers.embedder import SentenceTransformerEmbedder  # noqa: E402
from gpu_workers.index import ChunkRecord, EdgeIndex, QdrantIndex  # noqa: E402
from gpu_workers.worker import attribute_batch, output_chunks  # noqa: E402
from tributary.config import PipelineConfig  # noqa: E402
from tributary.sample import load_catalog, plan_events  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_worker(outputs: int, batch: int) -> None:
    embedder = SentenceTransformerEmbedder()
    print(f"model {embedder.name} on {embedder.device}")
    catalog = load_catalog()
    with tempfile.TemporaryDirectory() as tmp:
        index = EdgeIndex(f"{tmp}/shard", dim=embedder.dim)
        spans = evaluate.load_catalog_into(catalog, embedder, index)
        requests = []
        for n, planned in enumerate(plan_events(catalog, outputs, seed=3)):
            requests.append({"event_id": f"bench-{n}", "occurred_at": "2026-11-20T00:00:00Z", "provider": "p",
                             "model": {"name": "m", "revision": "r"}, "contract": {}, "pool_micros": 1000,
                             "output": {"text": planned.event.output_text}})
        texts = [t for chunks in output_chunks(requests) for t in chunks]
        embedder.encode(texts[:batch])  # warm up
        start = time.perf_counter()
        for i in range(0, len(texts), batch):
            embedder.model.encode(texts[i:i + batch], batch_size=batch, normalize_embeddings=True,
                                  convert_to_numpy=True, show_progress_bar=False)
        raw = time.perf_counter() - start
        print(f"baseline  raw model.encode                : {len(texts) / raw:8.1f} chunks/s "
              f"({len(texts)} chunks of {outputs} outputs in {raw:.2f}s)")
        cfg = PipelineConfig()
        latencies = []
        start = time.perf_counter()
        for i in range(0, len(requests), batch):
            t0 = time.perf_counter()
            attribute_batch(requests[i:i + batch], embedder, index, cfg, 1, spans, 0.438)
            latencies.append(time.perf_counter() - t0)
        full = time.perf_counter() - start
        print(f"worker    chunk+encode+search+spans+shares: {len(texts) / full:8.1f} chunks/s, "
              f"{len(requests) / full:.1f} outputs/s = {raw / full:.2f}x the baseline")
        print(f"          batch of {batch}: p50 {statistics.median(latencies) * 1000:.0f} ms, "
              f"p99 {pct(latencies, 0.99) * 1000:.0f} ms")
        index.close()


def bench_index(chunks: int) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(chunks, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    records = [ChunkRecord(f"ch_{i}", f"w-{i % 1000}", f"h-{i % 50}", i, 1, vectors[i].tolist()) for i in range(chunks)]
    queries = vectors[rng.choice(chunks, 64, replace=False)]
    with tempfile.TemporaryDirectory() as tmp:
        edge = EdgeIndex(f"{tmp}/edge", dim=384)
        edge.OPTIMIZE_AFTER = 10**12  # time the HNSW build on its own
        start = time.perf_counter()
        edge.upsert(records)
        upsert = time.perf_counter() - start
        start = time.perf_counter()
        edge.shard.optimize()
        build = time.perf_counter() - start
        times = []
        for _ in range(10):
            t0 = time.perf_counter()
            edge.search_batch(queries, 5)
            times.append(time.perf_counter() - t0)
        print(f"index     qdrant-edge, {chunks:,} chunks: {chunks / upsert:,.0f} upserts/s, HNSW build {build:.1f}s, "
              f"64 queries p50 {statistics.median(times) * 1000:.1f} ms p99 {pct(times, 0.99) * 1000:.1f} ms")
        edge.close()
    small = chunks // 10
    local = QdrantIndex(":memory:", dim=384)
    start = time.perf_counter()
    local.upsert(records[:small])
    upsert = time.perf_counter() - start
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        local.search_batch(queries, 5)
        times.append(time.perf_counter() - t0)
    print(f"index     qdrant-client local mode, {small:,} chunks: {small / upsert:,.0f} upserts/s, "
          f"64 queries p50 {statistics.median(times) * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outputs", type=int, default=512, help="inference outputs through the worker path")
    parser.add_argument("--batch", type=int, default=64, help="micro-batch size (the worker's default)")
    parser.add_argument("--chunks", type=int, default=100_000, help="catalog chunks for the index benchmark")
    args = parser.parse_args()
    bench_worker(args.outputs, args.batch)
    bench_index(args.chunks)
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")


if __name__ == "__main__":
    main()
