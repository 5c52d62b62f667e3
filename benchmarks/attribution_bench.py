"""Benchmark: the attribution worker against raw ``model.encode``, the embedding
backends, and the vector index as the catalog grows.

    .venv/bin/python benchmarks/attribution_bench.py [--outputs 512] [--batch 64]
        [--backends torch,onnx,onnx-int8] [--chunks 1000,10000,100000] [--no-kafka]

Prints, from one run on this machine (CPU here; CUDA with fp16 when present, same code):
  1. baseline: ``SentenceTransformer.encode`` of the same output units (what the worker
     embeds: each output's sentences), units/s;
  2. per backend (torch; ONNX Runtime fp32 and int8): encode units/s, the ratio to (1),
     and the cosine to the torch vectors;
  3. for torch and for the default backend here (int8 on a CPU): the sample catalog's
     calibration time (leave one work out, once per catalog change), then the worker's
     steps on one thread (segmenting, tokenize, encode, qdrant-edge batch search, exact
     rescoring, verbatim spans, shares and evidence), units/s and the ratio to (1); then
     the worker end to end from Kafka to Kafka (the real ``AttributionWorker`` with its
     poll/model/post threads and transactions, against a broker this script starts):
     outputs/s, units/s, the ratio to (1), and read->commit latency per batch p50/p99;
     With --processes N: N such workers side by side (one model copy each), aggregate
     units/s: how one machine or one GPU is filled when one process's Python is the limit;
  4. the index at each --chunks size (random unit vectors): qdrant-edge upserts/s, HNSW
     build time and 64-query batch latency; qdrant-client's local mode at 10k at most
     (it is brute force in Python);

(Units are sentences since the attribution rewrite: units/s figures are not comparable
with the 60-word chunks/s of earlier results; output words/s are, and the previous
worker's chunk path is timed in the same run for that.)
  5. peak RSS of this process.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_workers.catalog import CatalogUnits, index_works  # noqa: E402
from gpu_workers.embedder import SentenceTransformerEmbedder, default_backend, load_embedder  # noqa: E402
from gpu_workers.index import ChunkRecord, EdgeIndex, QdrantIndex, VectorIndex  # noqa: E402
from gpu_workers.indexer import chunk_records  # noqa: E402
from gpu_workers.worker import attribute_batch, output_units  # noqa: E402
from tributary.config import PipelineConfig  # noqa: E402
from tributary.sample import load_catalog, plan_events  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timings(call: Any, runs: int) -> list[float]:
    """Seconds each of ``runs`` calls of ``call()`` took."""
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def make_requests(outputs: int) -> list[dict[str, Any]]:
    return [{"event_id": f"bench-{n}", "occurred_at": "2026-11-20T00:00:00Z", "provider": "p",
             "model": {"name": "m", "revision": "r"}, "pool_micros": 1000,
             "contract": {"contract_id": "standard-2026", "version": 1, "royalty_rate_bps": 2000, "currency": "USD"},
             "output": {"text": planned.event.output_text}}
            for n, planned in enumerate(plan_events(load_catalog(), outputs, seed=3))]


def unit_texts(requests: list[dict[str, Any]]) -> list[str]:
    """What the worker embeds for ``requests``: its output units' texts."""
    return [t for o in output_units(requests) for t in o.texts]


def index_catalog(embedder: Any, index: VectorIndex) -> CatalogUnits:
    """The sample catalog as the indexer publishes it, in ``index`` and in the worker's
    in-memory catalog (exact vectors, texts, verbatim spans, calibration)."""
    catalog = index_works(load_catalog()["works"], embedder, index)
    return catalog


def raw_encode(embedder: SentenceTransformerEmbedder, texts: list[str], batch: int) -> float:
    """units/s of plain ``model.encode`` in micro-batches: the baseline."""
    # warm up: on a GPU, once over every text (kernels are tuned per new sequence length;
    # a first pass ran at half the speed of the next one on an H200)
    warm = texts if embedder.device.startswith("cuda") else texts[:batch]
    for i in range(0, len(warm), batch):
        embedder.model.encode(warm[i:i + batch], batch_size=batch, show_progress_bar=False)
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        embedder.model.encode(texts[i:i + batch], batch_size=batch, normalize_embeddings=True,
                              convert_to_numpy=True, show_progress_bar=False)
    return len(texts) / (time.perf_counter() - start)


def bench_backends(names: list[str], torch_embedder: SentenceTransformerEmbedder, texts: list[str], batch: int,
                   baseline: float) -> None:
    reference = torch_embedder.encode(texts)
    for name in names:
        try:
            embedder = torch_embedder if name == "torch" else load_embedder(name)
        except (SystemExit, ImportError) as exc:
            print(f"backend   {name:<10}: skipped ({exc})")
            continue
        for i in range(0, len(texts) if embedder.device.startswith("cuda") else batch, batch):
            embedder.encode(texts[i:i + batch])
        start = time.perf_counter()
        vectors = np.vstack([embedder.encode(texts[i:i + batch]) for i in range(0, len(texts), batch)])
        rate = len(texts) / (time.perf_counter() - start)
        cosine = (vectors * reference).sum(axis=1)
        print(f"backend   {name:<10}: {rate:8.1f} units/s = {rate / baseline:.2f}x the baseline; cosine to torch "
              f"min {cosine.min():.4f} mean {cosine.mean():.4f}")


def previous_chunks(text: str, size: int = 60, overlap: int = 20) -> list[str]:
    """The pre-rewrite worker's output units: 60-word windows, 20 overlapping."""
    tokens = text.split()
    if len(tokens) <= size:
        return [" ".join(tokens)] if tokens else []
    starts = list(range(0, len(tokens) - size + 1, size - overlap))
    if starts[-1] + size < len(tokens):
        starts.append(len(tokens) - size)
    return [" ".join(tokens[s:s + size]) for s in starts]


def previous_worker(embedder: Any, index: VectorIndex, requests: list[dict[str, Any]], batch: int) -> float:
    """Seconds the pre-rewrite worker's embedding path takes for ``requests``: 60-word
    chunks encoded in one call per micro-batch and searched top 5 (its span matching and
    scoring were a few percent of it and are left out, which favours it)."""
    start = time.perf_counter()
    for i in range(0, len(requests), batch):
        chunks = [c for r in requests[i:i + batch] for c in previous_chunks(r["output"]["text"])]
        vectors = embedder.encode(chunks)
        index.search_batch(vectors, 5)
    return time.perf_counter() - start


def bench_steps(embedder: Any, requests: list[dict[str, Any]], texts: list[str], batch: int,
                baseline: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        index = EdgeIndex(f"{tmp}/shard", dim=embedder.dim)
        catalog = index_catalog(embedder, index)
        start = time.perf_counter()
        calibration = catalog.calibration()  # once per catalog change, not per batch
        print(f"calibration of {len(catalog)} catalog units: {time.perf_counter() - start:.2f}s "
              f"(threshold {calibration.threshold:.3f}, margin {calibration.margin:.3f}, {calibration.source})")
        cfg = PipelineConfig()
        start = time.perf_counter()
        for i in range(0, len(requests), batch):
            attribute_batch(requests[i:i + batch], embedder, index, catalog, cfg)
        full = time.perf_counter() - start
        print(f"one thread segment+tokenize+encode+search+rescore+spans+shares: {len(texts) / full:8.1f} units/s, "
              f"{len(requests) / full:.1f} outputs/s = {(len(texts) / full) / baseline:.2f}x the baseline")
        n_words = sum(len(r["output"]["text"].split()) for r in requests)
        before = previous_worker(embedder, index, requests, batch)
        print(f"output words/s: this worker {n_words / full:8.1f}, the previous worker's chunk path (60-word chunks, "
              f"same model, same run) {n_words / before:8.1f} = {before / full:.2f}x")
        index.close()


class _Message:
    def __init__(self, partition: int, offset: int, value: bytes):
        self._partition, self._offset, self._value = partition, offset, value

    def topic(self) -> str:
        return "attribution-requests"

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value

    def error(self) -> None:
        return None


class _MemoryKafka:
    """Just enough of a consumer and a transactional producer to run the real worker's
    threads with no broker (the GPU machine has none): one partition, all requests ready."""

    def __init__(self, requests: list[dict[str, Any]]):
        self.messages = [_Message(0, i, json.dumps(r).encode()) for i, r in enumerate(requests)]
        self.position = 0
        self.committed = 0
        self._pending = 0

    def subscribe(self, topics: list[str], on_assign: Any = None, on_revoke: Any = None) -> None:
        on_assign(self, [])

    def consume(self, num_messages: int, timeout: float) -> list[_Message]:
        out = self.messages[self.position:self.position + num_messages]
        self.position += len(out)
        if not out:
            time.sleep(timeout)
        return out

    def consumer_group_metadata(self) -> str:
        return "memory"

    def close(self) -> None:
        pass

    def init_transactions(self, timeout: float) -> None:
        pass

    def begin_transaction(self) -> None:
        self._pending = 0

    def produce(self, topic: str, key: bytes, value: bytes) -> None:
        self._pending += 1

    def send_offsets_to_transaction(self, offsets: Any, metadata: Any, timeout: float) -> None:
        pass

    def commit_transaction(self, timeout: float) -> None:
        self.committed += self._pending

    def flush(self, timeout: float) -> int:
        return 0


def run_threads(embedder: Any, requests: list[dict[str, Any]], batch: int, barrier: Any = None) -> float:
    """Seconds the real worker's three threads (tokenize | model | search+shares+produce)
    take for ``requests`` over in-memory Kafka stand-ins (after ``barrier``, if given)."""
    from gpu_workers.worker import AttributionWorker

    with tempfile.TemporaryDirectory() as tmp:
        index = EdgeIndex(f"{tmp}/shard", dim=embedder.dim)
        units = index_catalog(embedder, index)
        units.calibration()  # as a worker does on its first batch after a catalog change
        memory = _MemoryKafka(requests)
        catalog = type("Catalog", (), {"version": units.version, "chunks": index.count(), "units": units,
                                       "sync": lambda self: 0, "close": lambda self: None})()
        worker = AttributionWorker("memory", embedder, index, replace(PipelineConfig(), batch_max_size=batch),
                                   "bench", consumer=memory, producer=memory, catalog=catalog)
        embedder.encode(unit_texts(requests[:batch]))  # warm up
        if barrier is not None:
            barrier.wait()
        stop = threading.Event()
        start = time.perf_counter()
        runner = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        runner.start()
        while memory.committed < len(requests) and runner.is_alive():
            time.sleep(0.005)
        elapsed = time.perf_counter() - start
        stop.set()
        runner.join(60)
        index.close()
    return elapsed


def bench_threads(embedder: Any, requests: list[dict[str, Any]], texts: list[str], batch: int,
                  baseline: float) -> None:
    """What the pipelining buys over one thread, broker aside."""
    elapsed = run_threads(embedder, requests, batch)
    print(f"threads   worker's 3 threads, in-memory Kafka       : {len(texts) / elapsed:8.1f} units/s, "
          f"{len(requests) / elapsed:.1f} outputs/s = {(len(texts) / elapsed) / baseline:.2f}x the baseline")


def _process(backend: str, outputs: int, processes: int, me: int, batch: int, barrier: Any, results: Any) -> None:
    requests = make_requests(outputs)[me::processes]
    units = len(unit_texts(requests))
    results.put((units, run_threads(load_embedder(backend), requests, batch, barrier)))


def bench_processes(processes: int, backend: str, outputs: int, batch: int, baseline: float) -> None:
    """``processes`` workers side by side (a consumer group on one machine / one GPU),
    each with its own model copy and threads, started together: aggregate throughput."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_process, args=(backend, outputs, processes, i, batch, barrier, results))
             for i in range(processes)]
    for proc in procs:
        proc.start()
    done = [results.get(timeout=900) for _ in procs]
    for proc in procs:
        proc.join(60)
    units = sum(c for c, _ in done)
    elapsed = max(e for _, e in done)
    print(f"processes {processes} workers x 3 threads, in-memory Kafka: {units / elapsed:8.1f} units/s "
          f"= {(units / elapsed) / baseline:.2f}x the baseline (one process's model.encode)")


def bench_kafka(embedder: Any, requests: list[dict[str, Any]], texts: list[str], batch: int,
                baseline: float) -> None:
    """The real worker between real topics: requests already on the topic, time until
    every attribution is committed (read_committed)."""
    from confluent_kafka import Consumer, Producer

    from gpu_workers.worker import AttributionWorker
    from tributary.config import load_platform
    from tributary.platform import local
    from tributary.topics import Topic

    base = load_platform()
    cfg = replace(load_platform(kafka_port=20192, kafka_controller_port=20193, stripe_port=13211,
                                clickhouse_query_port=19223), data_dir=base.data_dir / "bench-attribution")
    local.down(cfg, wipe=True, log=lambda m: None)
    print("starting a Kafka broker for the end-to-end run ...", flush=True)
    local.up(cfg, log=lambda m: None)
    stop = threading.Event()
    try:
        producer = Producer({"bootstrap.servers": cfg.bootstrap_servers, "linger.ms": 5})
        for n, work in enumerate(load_catalog()["works"], 1):
            for rec in chunk_records(work, n, embedder):
                producer.produce(Topic.CATALOG_CHUNKS.value, key=rec["chunk_id"].encode(), value=json.dumps(rec))
        for req in requests:
            producer.produce(Topic.ATTRIBUTION_REQUESTS.value, key=req["event_id"].encode(), value=json.dumps(req))
        producer.flush(30)
        reader = Consumer({"bootstrap.servers": cfg.bootstrap_servers, "group.id": f"bench-{time.time()}",
                           "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
        reader.subscribe([Topic.ATTRIBUTIONS.value])
        with tempfile.TemporaryDirectory() as tmp:
            index = EdgeIndex(f"{tmp}/shard", dim=embedder.dim)
            pipeline = replace(PipelineConfig(), batch_max_size=batch)
            worker = AttributionWorker(cfg.bootstrap_servers, embedder, index, pipeline, "bench")
            worker.catalog.sync()
            batch_seconds: list[float] = []

            class Batches(logging.Handler):
                def emit(self, record: logging.LogRecord) -> None:
                    if record.msg.startswith("batch attributed=") and isinstance(record.args, tuple):
                        batch_seconds.append(float(record.args[1]))  # type: ignore[arg-type]

            logging.getLogger("tributary.attribution").addHandler(Batches())
            logging.getLogger("tributary.attribution").setLevel(logging.INFO)
            logging.getLogger("tributary.attribution").propagate = False
            start = time.perf_counter()
            runner = threading.Thread(target=worker.run, args=(stop,), daemon=True)
            runner.start()
            seen: set[str] = set()
            while len(seen) < len(requests) and time.perf_counter() - start < 1800:
                for msg in reader.consume(500, 0.2):
                    if not msg.error():
                        seen.add(json.loads(msg.value() or b"{}")["event_id"])
            elapsed = time.perf_counter() - start
            stop.set()
            runner.join(60)
            index.close()
        reader.close()
        print(f"kafka     worker, Kafka -> Kafka (3 threads, transactions): {len(texts) / elapsed:8.1f} units/s, "
              f"{len(seen) / elapsed:.1f} outputs/s = {(len(texts) / elapsed) / baseline:.2f}x the baseline "
              f"({len(seen)}/{len(requests)} attributions committed in {elapsed:.1f}s)")
        if batch_seconds:
            print(f"          {len(batch_seconds)} batches, read -> committed: p50 "
                  f"{statistics.median(batch_seconds) * 1000:.0f} ms, p99 {pct(batch_seconds, 0.99) * 1000:.0f} ms")
    finally:
        stop.set()
        local.down(cfg, wipe=True, log=lambda m: None)


def bench_worker(outputs: int, batch: int, backends: list[str], kafka: bool, processes: list[int]) -> None:
    embedder = SentenceTransformerEmbedder()
    print(f"model {embedder.name} on {embedder.device}")
    requests = make_requests(outputs)
    texts = unit_texts(requests)
    baseline = raw_encode(embedder, texts, batch)
    print(f"baseline  raw model.encode (torch)        : {baseline:8.1f} units/s "
          f"({len(texts)} units of {outputs} outputs, batches of {batch})")
    bench_backends(backends, embedder, texts, batch, baseline)
    again = raw_encode(embedder, texts, batch)
    print(f"baseline  again after the backends         : {again:8.1f} units/s (the spread is this machine's noise)")
    default = default_backend()
    chosen = {"torch": embedder} if default == "torch" else {"torch": embedder, default: load_embedder(default)}
    for name, backend in chosen.items():
        print(f"--- worker on the {name} backend{' (the default here)' if name == default else ''}")
        bench_steps(backend, requests, texts, batch, baseline)
        bench_threads(backend, requests, texts, batch, baseline)
        if kafka:
            bench_kafka(backend, requests, texts, batch, baseline)
        for n in processes:
            bench_processes(n, name, outputs, batch, baseline)


def bench_index(chunks: int) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(chunks, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    records = [ChunkRecord(f"ch_{i}", f"w-{i % 1000}", f"h-{i % 50}", i, 1, vectors[i].tolist()) for i in range(chunks)]
    queries = vectors[rng.choice(chunks, 64, replace=False)]
    top_k = PipelineConfig().top_k  # what the worker asks for (candidates for exact rescoring)
    with tempfile.TemporaryDirectory() as tmp:
        edge = EdgeIndex(f"{tmp}/edge", dim=384)
        edge.OPTIMIZE_AFTER = 10**12  # time the HNSW build on its own
        start = time.perf_counter()
        edge.upsert(records)
        upsert = time.perf_counter() - start
        start = time.perf_counter()
        edge.shard.optimize()
        build = time.perf_counter() - start
        times = timings(lambda: edge.search_batch(queries, top_k), 20)
        print(f"index     qdrant-edge, {chunks:>7,} chunks: {chunks / upsert:>7,.0f} upserts/s, HNSW build "
              f"{build:5.1f}s, 64 queries (top {top_k}) p50 {statistics.median(times) * 1000:6.1f} ms p99 "
              f"{pct(times, 0.99) * 1000:6.1f} ms")
        edge.close()
    if chunks > 10_000:
        return
    try:
        local = QdrantIndex(":memory:", dim=384)
    except ImportError as exc:  # the GPU machine carries no qdrant-client
        print(f"index     qdrant-client local mode: skipped ({exc})")
        return
    start = time.perf_counter()
    local.upsert(records)
    upsert = time.perf_counter() - start
    times = timings(lambda: local.search_batch(queries, top_k), 3)
    print(f"index     qdrant-client local mode, {chunks:>7,} chunks: {chunks / upsert:>7,.0f} upserts/s, "
          f"64 queries p50 {statistics.median(times) * 1000:6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outputs", type=int, default=512, help="inference outputs through the worker path")
    parser.add_argument("--batch", type=int, default=64, help="micro-batch size (the worker's default)")
    parser.add_argument("--chunks", default="1000,10000,100000", help="catalog sizes for the index benchmark")
    parser.add_argument("--backends", default="torch,onnx,onnx-int8", help="embedding backends to compare")
    parser.add_argument("--no-kafka", action="store_true", help="skip the Kafka -> Kafka worker run (no broker)")
    parser.add_argument("--processes", default="",
                        help="also run this many worker processes side by side, e.g. 2,4 (a GPU takes several)")
    args = parser.parse_args()
    bench_worker(args.outputs, args.batch, args.backends.split(","), not args.no_kafka,
                 [int(n) for n in args.processes.split(",") if n])
    for size in (int(c) for c in args.chunks.split(",")):
        bench_index(size)
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")


if __name__ == "__main__":
    main()
