"""Benchmark: ingest -> accrue -> ledger -> balances on the real broker and the real
Faust worker, with attribution replaced by a fast deterministic attributor.

    .venv/bin/python benchmarks/streams_bench.py [--events 20000] [--rate 1000] [--seconds 20]

Prints, from one run on this machine:
  1. baseline: a raw confluent-kafka consume->produce loop over the same broker;
  2. throughput: a burst of --events events through the pipeline, end to end
     (until the balances agent has applied every ledger entry), and the ratio to (1);
  3. latency at a steady --rate: emit -> balance update (the balances table's
     changelog write for the entry), p50/p95/p99/max;
  4. peak RSS of the streams worker.
It starts its own platform under ~/.local/share/tributary/bench and stops it after.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import statistics
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from schemas.batches import items  # noqa: E402
from streams.accrual import accrue  # noqa: E402
from tributary import demo  # noqa: E402
from tributary.config import load_platform  # noqa: E402
from tributary.ids import attribution_id  # noqa: E402
from tributary.platform import local  # noqa: E402
from tributary.topics import Topic  # noqa: E402

HOLDERS = [f"bench-h{i}" for i in range(20)]
CONTRACT = {"contract_id": "standard-2026", "version": 1, "royalty_rate_bps": 2000, "currency": "USD"}


def fake_attribution(request: dict) -> dict:
    """Deterministic shares: two holders picked by the event id's hash, 30% each."""
    digest = hashlib.blake2b(request["event_id"].encode(), digest_size=8).digest()
    a, b = digest[0] % len(HOLDERS), (digest[0] + 1 + digest[1] % (len(HOLDERS) - 1)) % len(HOLDERS)
    return {
        "schema_version": 1, "attribution_id": attribution_id(request["event_id"], 1, "bench"),
        "event_id": request["event_id"], "occurred_at": request["occurred_at"], "provider": request["provider"],
        "model": request["model"], "contract": request["contract"], "pool_micros": request["pool_micros"],
        "shares_ppm": [{"work_id": f"w-{HOLDERS[a]}", "holder_id": HOLDERS[a], "share_ppm": 300_000},
                       {"work_id": f"w-{HOLDERS[b]}", "holder_id": HOLDERS[b], "share_ppm": 300_000}],
        "unattributed_ppm": 400_000,
        "evidence": {"model_name": "bench", "model_revision": "bench", "catalog_version": 1, "threshold": 0.0,
                     "matches": []},
    }


def attributor(bootstrap: str, stop: mp.Event) -> None:  # type: ignore[valid-type]
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-attributor",
                         "auto.offset.reset": "earliest", "enable.auto.commit": True})
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2, "partitioner": "murmur2_random"})
    consumer.subscribe([Topic.ATTRIBUTION_REQUESTS.value])
    while not stop.is_set():
        for msg in consumer.consume(500, 0.05):
            if msg.error():
                continue
            value = json.loads(msg.value())
            requests = items(value, "requests")  # a batch record: many requests
            for request in [value] if requests is None else requests:
                out = fake_attribution(request)
                producer.produce(Topic.ATTRIBUTIONS.value, key=request["event_id"].encode(),
                                 value=json.dumps(out).encode())
        producer.poll(0)
    producer.flush(10)
    consumer.close()


def event_payload(i: int, run: str) -> tuple[str, bytes]:
    event_id = f"bench-{run}-{i:08d}"
    return event_id, json.dumps({
        "schema_version": 1, "event_id": event_id, "occurred_at": "2026-11-26T12:00:00+00:00",
        "provider": "bench-ai", "model": {"name": "bench-model", "revision": "1"}, "contract_id": "standard-2026",
        "billing": {"revenue_micros": 10_000 + i % 5000}, "output": {"text": "benchmark output text"},
        "metadata": {"emit_ns": time.time_ns()},
    }).encode()


def holder_entry_ids(event_id: str, revenue: int) -> list[str]:
    request = {"event_id": event_id, "occurred_at": "", "provider": "bench-ai", "model": {},
               "contract": CONTRACT, "pool_micros": revenue * 2000 // 10_000}
    return [e["entry_id"] for e in accrue(fake_attribution(request), "") if not e["holder_id"].startswith("escrow:")]


def rss_mb(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class ChangelogWatcher(threading.Thread):
    """Reads the balances table's changelog: each ``e:<entry_id>`` write is a balance update."""

    def __init__(self, bootstrap: str):
        super().__init__(daemon=True)
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-watch-{time.time_ns()}",
                                  "auto.offset.reset": "latest", "enable.auto.commit": False})
        self.consumer.subscribe(["tributary-streams-holder-balances-changelog"])

    def run(self) -> None:
        while not self.stop.is_set():
            for msg in self.consumer.consume(1000, 0.1):
                if msg.error() or msg.key() is None:
                    continue
                key = json.loads(msg.key())
                if isinstance(key, str) and key.startswith("e:"):
                    self.seen.setdefault(key[2:], msg.timestamp()[1] / 1000)
        self.consumer.close()


def baseline(bootstrap: str, n: int) -> float:
    """Raw confluent-kafka consume->produce between two scratch topics."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic("bench-raw-in", 4, 1), NewTopic("bench-raw-out", 4, 1)]).values():
        f.result()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(n):
        _, payload = event_payload(i, "raw")
        producer.produce("bench-raw-in", key=str(i).encode(), value=payload)
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush(60)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-raw", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe(["bench-raw-in"])
    out = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    done = 0
    started = None
    while done < n:
        batch = consumer.consume(1000, 1.0)
        if batch and started is None:
            started = time.perf_counter()
        for msg in batch:
            if not msg.error():
                out.produce("bench-raw-out", key=msg.key(), value=msg.value())
                done += 1
        out.poll(0)
        if batch:
            consumer.commit(asynchronous=True)
    out.flush(60)
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return n / elapsed


def ledger_applied(bootstrap: str) -> int:
    """Ledger entries the streams group has committed past (balances applied them)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    from confluent_kafka import ConsumerGroupTopicPartitions

    parts = [TopicPartition(Topic.ROYALTY_LEDGER.value, p) for p in range(4)]
    result = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("tributary-streams", parts)])
    return sum(max(tp.offset, 0) for tp in result["tributary-streams"].result().topic_partitions)


def latency_run(cfg, producer, workers, rate: float, seconds: float, run: str) -> float:  # type: ignore[no-untyped-def]
    """Steady ``rate`` for ``seconds``; prints emit -> balance update percentiles; returns peak RSS."""
    print(f"latency: steady {rate:,.0f} events/s for {seconds:.0f} s, emit -> balance update ...", flush=True)
    watcher = ChangelogWatcher(cfg.bootstrap_servers)
    watcher.start()
    time.sleep(2)
    emitted: dict[str, float] = {}
    peak_rss = 0.0
    total = int(rate * seconds)
    t0 = time.perf_counter()
    for i in range(total):
        due = t0 + i / rate
        while time.perf_counter() < due:
            time.sleep(0.0005)
        event_id, payload = event_payload(i, run)
        wall = time.time()
        producer.produce(Topic.INFERENCE_EVENTS.value, key=event_id.encode(), value=payload)
        producer.poll(0)
        for entry_id in holder_entry_ids(event_id, 10_000 + i % 5000):
            emitted[entry_id] = wall
        if i % 100 == 0:
            peak_rss = max(peak_rss, sum(rss_mb(w.pid()) for w in workers))
    producer.flush(30)
    achieved = total / (time.perf_counter() - t0)
    deadline = time.monotonic() + 300
    while sum(1 for e in emitted if e in watcher.seen) < len(emitted) and time.monotonic() < deadline:
        peak_rss = max(peak_rss, sum(rss_mb(w.pid()) for w in workers))
        time.sleep(0.5)
    watcher.stop.set()
    latencies = sorted(max(0.0, watcher.seen[e] - t) for e, t in emitted.items() if e in watcher.seen)
    missing = len(emitted) - len(latencies)

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    print(f"  achieved {achieved:,.0f} events/s; {len(latencies):,} balance updates observed, {missing} missing")
    if latencies:
        print(f"  latency ms: p50 {pct(0.50):.0f}  p95 {pct(0.95):.0f}  p99 {pct(0.99):.0f}  "
              f"max {latencies[-1] * 1000:.0f}  mean {statistics.mean(latencies) * 1000:.0f}")
    return peak_rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000, help="burst size for the throughput run")
    parser.add_argument("--rate", type=float, action="append",
                        help="steady rate(s) for the latency runs (repeatable; default 1000)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the latency run")
    parser.add_argument("--workers", type=int, default=1, help="streams worker processes (partitions split)")
    args = parser.parse_args()
    args.rates = args.rate or [1000.0]

    base = load_platform()
    cfg = replace(load_platform(kafka_port=20092, kafka_controller_port=20093, stripe_port=13111,
                                clickhouse_query_port=19123), data_dir=base.data_dir / "bench")
    local.down(cfg, wipe=True, log=lambda m: None)
    local.up(cfg, log=lambda m: None)
    stop = mp.Event()
    attr = mp.Process(target=attributor, args=(cfg.bootstrap_servers, stop))
    workers = [local.stage_process(cfg, "streams" if i == 0 else f"streams-{i}") for i in range(args.workers)]
    try:
        print(f"baseline: raw confluent-kafka consume->produce of {args.events:,} messages ...", flush=True)
        raw_rate = baseline(cfg.bootstrap_servers, args.events)
        print(f"  {raw_rate:,.0f} msg/s")

        for i, worker in enumerate(workers):
            worker.start(demo.stage_argv(cfg, "streams", ["--web-port", str(cfg.clickhouse_query_port + 10 + i)]))
        attr.start()
        producer = Producer({"bootstrap.servers": cfg.bootstrap_servers, "linger.ms": 5, "acks": "all",
                             "enable.idempotence": True, "partitioner": "murmur2_random"})
        # warm-up: until one event has gone all the way to the balances
        warm_id, warm = event_payload(0, "warm")
        producer.produce(Topic.INFERENCE_EVENTS.value, key=warm_id.encode(), value=warm)
        producer.flush(10)
        deadline = time.monotonic() + 120
        while ledger_applied(cfg.bootstrap_servers) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        base_applied = ledger_applied(cfg.bootstrap_servers)

        print(f"throughput: burst of {args.events:,} events through ingest -> accrue -> balances ...", flush=True)
        peak_rss = 0.0
        started = time.perf_counter()
        for i in range(args.events):
            event_id, payload = event_payload(i, "burst")
            producer.produce(Topic.INFERENCE_EVENTS.value, key=event_id.encode(), value=payload)
            if i % 5000 == 0:
                producer.poll(0)
        producer.flush(60)
        expected = base_applied + 3 * args.events  # two holder entries + one escrow entry per event
        while ledger_applied(cfg.bootstrap_servers) < expected:
            peak_rss = max(peak_rss, sum(rss_mb(w.pid()) for w in workers))
            if time.perf_counter() - started > 900:
                print("  timed out after 900 s", flush=True)
                break
            time.sleep(0.25)
        elapsed = time.perf_counter() - started
        burst_rate = args.events / elapsed
        print(f"  {burst_rate:,.0f} events/s end to end ({elapsed:.1f} s); "
              f"ratio to the raw baseline {burst_rate / raw_rate:.3f}")

        for run_no, rate in enumerate(args.rates):
            peak_rss = max(peak_rss, latency_run(cfg, producer, workers, rate, args.seconds, f"steady{run_no}"))
        print(f"memory: streams worker(s) peak RSS {peak_rss:.0f} MiB ({args.workers} process(es))")
        return 0
    finally:
        stop.set()
        if attr.is_alive():
            attr.join(10)
        for worker in workers:
            worker.stop(timeout=20)
        local.down(cfg, log=lambda m: None)


if __name__ == "__main__":
    sys.exit(main())
