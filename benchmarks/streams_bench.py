"""Benchmark: the money path, ingest -> accrue -> ledger -> balances, on the real broker:
the SDK (batching), the Faust ingest worker and the two transactional loops, each its own
process, with attribution replaced by a fast deterministic stand-in.

    .venv/bin/python benchmarks/streams_bench.py [--events 50000] [--rate 2000] [--seconds 20]

Prints, from one run on this machine (broker, stages, stand-in and producer share its cores):
  1. baseline: a raw confluent-kafka consume->produce loop over the same broker;
  2. burst: --events events emitted through the SDK as fast as it takes them, end to end
     until balances has applied every ledger entry; events/s and the ratio to (1);
  3. per stage: events handled per CPU-second of that stage's processes (per core);
  4. latency at each steady --rate: emit -> the holder's balance committed (read_committed
     from balances-state), p50/p95/p99/max, and per hop (SDK, ingest, attributor, accrue,
     balance) from the Kafka timestamp each stage stamped on the record it produced;
  5. peak RSS of each stage; with --soak N, the streams worker's RSS every N/10 events of an
     N-event run (the dedupe marks are on disk: RSS should not grow with the window);
  6. with --per-stage N, accrue alone and then balances alone over N events' records
     produced before each starts: their own events/s and events per CPU-second, timed from
     their first committed batch (the burst's per-stage figures include polling while a
     stage waits on the one before it).
It starts its own platform under <data dir>/bench and stops it after.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import orjson
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from producers.events import InferenceEvent  # noqa: E402
from producers.sdk import EventProducer  # noqa: E402
from schemas.batches import items  # noqa: E402
from tributary import demo  # noqa: E402
from tributary.config import load_platform  # noqa: E402
from tributary.ids import attribution_id  # noqa: E402
from tributary.platform import local  # noqa: E402
from tributary.topics import Topic  # noqa: E402

STAGES = ("streams", "accrue", "balances")
HOLDERS = [f"bench-h{i}" for i in range(20)]
LATENCY_PREFIX = "lat-"


def fake_attribution(request: dict) -> dict:
    """Deterministic shares: two holders picked by the event id's hash, 30% each (an event
    of a latency run pays 30% to a holder of its own, whose balance appearing times it)."""
    event_id = request["event_id"]
    digest = hashlib.blake2b(event_id.encode(), digest_size=8).digest()
    a, b = digest[0] % len(HOLDERS), (digest[0] + 1 + digest[1] % (len(HOLDERS) - 1)) % len(HOLDERS)
    first = f"h-{event_id}" if event_id.startswith(LATENCY_PREFIX) else HOLDERS[a]
    return {
        "schema_version": 1, "attribution_id": attribution_id(event_id, 1, "bench"),
        "event_id": event_id, "occurred_at": request["occurred_at"], "provider": request["provider"],
        "model": request["model"], "contract": request["contract"], "pool_micros": request["pool_micros"],
        "shares_ppm": [{"work_id": f"w-{first}", "holder_id": first, "share_ppm": 300_000},
                       {"work_id": f"w-{HOLDERS[b]}", "holder_id": HOLDERS[b], "share_ppm": 300_000}],
        "unattributed_ppm": 400_000,
        "evidence": {"model_name": "bench", "model_revision": "bench", "catalog_version": 1, "threshold": 0.0,
                     "matches": []},
    }


def attributor(bootstrap: str, stop: mp.Event) -> None:  # type: ignore[valid-type]
    """The stand-in for the attribution workers: requests in, attributions out."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-attributor",
                         "auto.offset.reset": "earliest", "enable.auto.commit": True})
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2, "partitioner": "murmur2_random"})
    consumer.subscribe([Topic.ATTRIBUTION_REQUESTS.value])
    while not stop.is_set():
        for msg in consumer.consume(500, 0.05):
            if msg.error():
                continue
            value = orjson.loads(msg.value() or b"{}")
            requests = items(value, "requests")  # a batch record: many requests
            for request in [value] if requests is None else requests:
                producer.produce(Topic.ATTRIBUTIONS.value, key=request["event_id"].encode(),
                                 value=orjson.dumps(fake_attribution(request)))
        producer.poll(0)
    producer.flush(10)
    consumer.close()


def make_event(i: int, run: str) -> InferenceEvent:
    return InferenceEvent(provider="bench-ai", model_name="bench-model", model_revision="1",
                          contract_id="standard-2026", output_text="benchmark output text",
                          revenue_micros=10_000 + i % 5000, event_id=f"{run}-{i:09d}",
                          occurred_at="2026-11-26T12:00:00+00:00")


def group_usage(pgid: int | None) -> tuple[float, float]:
    """(CPU seconds, RSS MiB) of every process in process group ``pgid`` (a stage's
    supervisor and its worker)."""
    if pgid is None:
        return 0.0, 0.0
    cpu = rss = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) != pgid:  # field 5: process group
                continue
            cpu += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) / 1024
        except (OSError, ValueError, IndexError):
            continue
    return cpu, rss


def metric(port: int, name: str) -> float:
    """The sum of Prometheus series ``name`` served by a stage on ``port``."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def baseline(bootstrap: str, n: int) -> float:
    """Raw confluent-kafka consume->produce between two scratch topics."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic("bench-raw-in", 4, 1), NewTopic("bench-raw-out", 4, 1)]).values():
        f.result()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(n):
        producer.produce("bench-raw-in", key=str(i).encode(), value=make_event(i, "raw").encode())
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


class Stages:
    """The three stage processes and what they report."""

    def __init__(self, cfg):  # type: ignore[no-untyped-def]
        self.cfg = cfg
        self.procs = {stage: local.stage_process(cfg, stage) for stage in STAGES}
        self.ports = {stage: local.stage_port(cfg, stage) for stage in STAGES}
        self.peak_rss = dict.fromkeys(STAGES, 0.0)

    def start(self) -> None:
        for stage, proc in self.procs.items():
            proc.start(demo.stage_argv(self.cfg, stage, demo.stage_extras(self.cfg, stage)))

    def usage(self) -> dict[str, tuple[float, float]]:
        out = {stage: group_usage(proc.pid()) for stage, proc in self.procs.items()}
        for stage, (_, rss) in out.items():
            self.peak_rss[stage] = max(self.peak_rss[stage], rss)
        return out

    def balanced(self) -> float:
        """Ledger entries balances has read (accrue posts a holder's entries of a transaction
        in one record; a batch record counts its entries)."""
        return metric(self.ports["balances"], "tributary_balances_ledger_entries_total")

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop(timeout=20)


def emit_all(cfg, events: list[InferenceEvent]) -> None:  # type: ignore[no-untyped-def]
    with EventProducer(cfg.bootstrap_servers, on_full="block") as producer:
        for event in events:
            producer.emit(event)


def wait_balanced(stages: Stages, target: float, timeout: float = 1800) -> bool:
    deadline = time.monotonic() + timeout
    while stages.balanced() < target:
        stages.usage()
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def burst(cfg, stages: Stages, n: int, raw_rate: float) -> None:  # type: ignore[no-untyped-def]
    print(f"burst: {n:,} events through the SDK -> ingest -> accrue -> balances ...", flush=True)
    events = [make_event(i, "burst") for i in range(n)]
    start_entries = stages.balanced()
    before = stages.usage()
    started = time.perf_counter()
    emit_all(cfg, events)
    done = wait_balanced(stages, start_entries + 3 * n)  # two holder entries + one escrow entry per event
    elapsed = time.perf_counter() - started
    after = stages.usage()
    rate = n / elapsed
    print(f"  {rate:,.0f} events/s end to end ({elapsed:.1f} s){'' if done else ' (TIMED OUT)'}; "
          f"ratio to the raw loop {rate / raw_rate:.3f}")
    for stage in STAGES:
        cpu = after[stage][0] - before[stage][0]
        print(f"  {stage:9} {cpu:6.1f} CPU-s  {n / cpu if cpu else 0:10,.0f} events per CPU-second")


class BalanceWatcher(threading.Thread):
    """Reads balances-state (read_committed): the first committed balance of a latency
    event's own holder is when that event's money reached its balance."""

    def __init__(self, bootstrap: str):
        super().__init__(daemon=True)
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-watch-{time.time_ns()}",
                                  "auto.offset.reset": "latest", "enable.auto.commit": False,
                                  "isolation.level": "read_committed"})
        self.consumer.subscribe([Topic.BALANCES_STATE.value])

    def run(self) -> None:
        while not self.stop.is_set():
            for msg in self.consumer.consume(1000, 0.05):
                key = msg.key()
                if msg.error() or key is None or not key.startswith(b"h:USD:h-"):
                    continue
                self.seen.setdefault(key[len(b"h:USD:h-"):].decode(), time.time())
        self.consumer.close()


def latency(cfg, stages: Stages, rate: float, seconds: float, run: str) -> None:  # type: ignore[no-untyped-def]
    print(f"latency: steady {rate:,.0f} events/s for {seconds:.0f} s, emit -> balance committed ...", flush=True)
    watcher = BalanceWatcher(cfg.bootstrap_servers)
    watcher.start()
    time.sleep(3)  # the watcher's assignment
    total = int(rate * seconds)
    events = [make_event(i, f"{LATENCY_PREFIX}{run}") for i in range(total)]
    emitted: dict[str, float] = {}
    with EventProducer(cfg.bootstrap_servers, on_full="block") as producer:
        t0 = time.perf_counter()
        for i, event in enumerate(events):
            due = t0 + i / rate
            while time.perf_counter() < due:
                time.sleep(0.0005)
            emitted[event.event_id] = time.time()
            producer.emit(event)
            if i % 200 == 0:
                stages.usage()
        achieved = total / (time.perf_counter() - t0)
    deadline = time.monotonic() + 300
    while len(watcher.seen.keys() & emitted.keys()) < len(emitted) and time.monotonic() < deadline:
        stages.usage()
        time.sleep(0.5)
    watcher.stop.set()
    lat = sorted(max(0.0, watcher.seen[e] - t) for e, t in emitted.items() if e in watcher.seen)
    missing = len(emitted) - len(lat)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000

    print(f"  achieved {achieved:,.0f} events/s; {len(lat):,} balances observed, {missing} missing")
    if lat:
        print(f"  latency ms: p50 {pct(0.50):.0f}  p95 {pct(0.95):.0f}  p99 {pct(0.99):.0f}  "
              f"max {lat[-1] * 1000:.0f}  mean {statistics.mean(lat) * 1000:.0f}")
        hops(cfg, emitted, watcher.seen)


def hops(cfg, emitted: dict[str, float], seen: dict[str, float]) -> None:  # type: ignore[no-untyped-def]
    """Where the time goes: per hop, from the Kafka timestamp each stage stamped on the
    record it produced for the event (CreateTime, at produce; a transactional record is
    readable only at its commit, which the next hop's time includes)."""
    from tributary.kafka import TopicReader

    stamps: dict[str, dict[str, float]] = {}

    def reader(topic: Topic, hop: str, ids: object) -> None:
        def handle(msg) -> None:  # type: ignore[no-untyped-def]
            for event_id in ids(msg):  # type: ignore[operator]
                if event_id in emitted:
                    stamps.setdefault(hop, {}).setdefault(event_id, msg.timestamp()[1] / 1000)
        r = TopicReader(cfg.bootstrap_servers, topic.value)
        try:
            r.read_to_end(handle, timeout=30)
        finally:
            r.close()

    def batch_ids(field: str):  # type: ignore[no-untyped-def]
        def ids(msg) -> list[str]:  # type: ignore[no-untyped-def]
            value = orjson.loads(msg.value() or b"{}")
            return [e.get("event_id") for e in items(value, field) or [value]]
        return ids

    reader(Topic.INFERENCE_EVENTS, "sdk", batch_ids("events"))
    reader(Topic.ATTRIBUTION_REQUESTS, "ingest", batch_ids("requests"))
    reader(Topic.ATTRIBUTIONS, "attributor", lambda m: [(m.key() or b"").decode()])
    reader(Topic.ROYALTY_LEDGER, "accrue", lambda m: [(m.key() or b"")[2:].decode()])  # key h-<event_id>
    # (a latency event's own holder h-<event_id> has one entry per transaction: never a batch)
    stamps["balances"] = {e: t for e, t in seen.items() if e in emitted}
    previous = "emit"
    stamps["emit"] = emitted
    parts = []
    for hop in ("sdk", "ingest", "attributor", "accrue", "balances"):
        deltas = sorted((stamps[hop][e] - stamps[previous][e]) * 1000 for e in emitted
                        if e in stamps.get(hop, {}) and e in stamps[previous])
        if deltas:
            parts.append(f"{previous}->{hop} p50 {deltas[len(deltas) // 2]:.0f}/p99 "
                         f"{deltas[min(len(deltas) - 1, int(0.99 * len(deltas)))]:.0f}")
        previous = hop
    print("  per hop ms: " + ", ".join(parts))


def soak(cfg, stages: Stages, n: int) -> None:  # type: ignore[no-untyped-def]
    """RSS of each stage every n/10 events of an n-event run."""
    print(f"soak: {n:,} events, RSS (MiB) of each stage as they go ...", flush=True)
    step = max(1, n // 10)
    start_entries = stages.balanced()
    for chunk in range(0, n, step):
        emit_all(cfg, [make_event(i, "soak") for i in range(chunk, min(n, chunk + step))])
        wait_balanced(stages, start_entries + 3 * min(n, chunk + step))
        rss = {stage: usage[1] for stage, usage in stages.usage().items()}
        print(f"  after {min(n, chunk + step):>11,} events: " + "  ".join(f"{k} {v:.0f}" for k, v in rss.items()),
              flush=True)


def per_stage(cfg, stages: Stages, n: int, raw_rate: float) -> None:  # type: ignore[no-untyped-def]
    """Each money stage alone on a topic filled before it starts: its own speed, with no
    idle polling while it waits on the stage before it (which the burst figures include).
    Timed from its first committed batch (after start-up and the state restore)."""
    print(f"per stage: {n:,} attributions produced first, then accrue alone, then balances alone ...", flush=True)
    for stage in ("accrue", "balances"):
        stages.procs[stage].stop(timeout=30)
    out = Producer({"bootstrap.servers": cfg.bootstrap_servers, "linger.ms": 20, "partitioner": "murmur2_random"})
    contract = {"contract_id": "standard-2026", "version": 1, "royalty_rate_bps": 2000, "currency": "USD",
                "probable_weight_bps": 10_000}
    for i in range(n):
        event_id = f"stage-{i:09d}"
        request = {"event_id": event_id, "occurred_at": "2026-11-20T00:00:00+00:00", "provider": "bench-ai",
                   "model": {"name": "bench-model", "revision": "1"}, "contract": contract,
                   "pool_micros": 2_000 + i % 1_000}
        out.produce(Topic.ATTRIBUTIONS.value, key=event_id.encode(), value=orjson.dumps(fake_attribution(request)))
        if i % 10_000 == 0:
            out.poll(0)
    out.flush(120)
    for stage, series, target in (("accrue", 'tributary_stage_records_in_total{stage="accrue"}', n),
                                  ("balances", "tributary_balances_ledger_entries_total", 3 * n)):
        proc, port = stages.procs[stage], stages.ports[stage]
        proc.start(demo.stage_argv(cfg, stage, demo.stage_extras(cfg, stage)))
        deadline = time.monotonic() + 600
        while metric(port, series) <= 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        first, cpu0, t0 = metric(port, series), group_usage(proc.pid())[0], time.perf_counter()
        while metric(port, series) < target and time.monotonic() < deadline:
            time.sleep(0.1)
        done, cpu1, t1 = metric(port, series), group_usage(proc.pid())[0], time.perf_counter()
        events = (done - first) / (1 if stage == "accrue" else 3)
        cpu = cpu1 - cpu0
        print(f"  {stage:9} {events:,.0f} events in {t1 - t0:.1f} s: {events / (t1 - t0):,.0f} events/s, "
              f"{cpu:.1f} CPU-s, {events / cpu if cpu else 0:,.0f} events per CPU-second"
              f"{'' if done >= target else ' (TIMED OUT)'}; ratio to the raw loop "
              f"{events / (t1 - t0) / raw_rate:.3f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000, help="burst size for the throughput run")
    parser.add_argument("--rate", type=float, action="append",
                        help="steady rate(s) for the latency runs (repeatable; default 2000)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each latency run")
    parser.add_argument("--soak", type=int, default=0, help="events of a memory run (e.g. 10000000); 0: none")
    parser.add_argument("--per-stage", type=int, default=0, metavar="N",
                        help="then N attributions through accrue alone and balances alone, each on a topic "
                             "filled before it starts (their own speed, no waiting on ingest); 0: none")
    args = parser.parse_args()
    args.rates = args.rate or [2000.0]

    base = load_platform()
    cfg = replace(load_platform(kafka_port=20092, kafka_controller_port=20093, stripe_port=13111,
                                clickhouse_query_port=19123), data_dir=base.data_dir / "bench")
    local.down(cfg, wipe=True, log=lambda m: None)
    local.up(cfg, log=lambda m: None)
    stop = mp.Event()
    attr = mp.Process(target=attributor, args=(cfg.bootstrap_servers, stop))
    stages = Stages(cfg)
    try:
        print(f"baseline: raw confluent-kafka consume->produce of {args.events:,} messages ...", flush=True)
        raw_rate = baseline(cfg.bootstrap_servers, args.events)
        print(f"  {raw_rate:,.0f} msg/s")
        stages.start()
        attr.start()
        emit_all(cfg, [make_event(0, "warm")])  # warm-up: one event all the way
        if not wait_balanced(stages, 3, timeout=180):
            print("the pipeline did not start within 180 s; see the stage logs under", cfg.log_dir)
            return 1
        burst(cfg, stages, args.events, raw_rate)
        for run_no, rate in enumerate(args.rates):
            latency(cfg, stages, rate, args.seconds, f"steady{run_no}")
        if args.soak:
            soak(cfg, stages, args.soak)
        if args.per_stage:
            per_stage(cfg, stages, args.per_stage, raw_rate)
        print("memory: peak RSS (MiB) " + "  ".join(f"{k} {v:.0f}" for k, v in stages.peak_rss.items()))
        return 0
    finally:
        stop.set()
        if attr.is_alive():
            attr.join(10)
        stages.stop()
        local.down(cfg, log=lambda m: None)


if __name__ == "__main__":
    sys.exit(main())
