"""Benchmark: the ClickHouse sink's write path and the analyst rollups, on chdb.

    .venv/bin/python benchmarks/sink_bench.py [--records 200000] [--batch 5000] [--rows 10000000]
    .venv/bin/python benchmarks/sink_bench.py --rows 0     # the write paths only

Prints, from one run on this machine (a fresh chdb directory under a temp dir):
  1. baseline: a raw clickhouse-connect insert loop of pre-built rows (batch --batch);
     and, for scale, the records' own bytes inserted unchecked as JSONEachRow;
  2. the sink's path for the same records: Kafka JSON bytes -> typed, validated entries ->
     JSON lines (sinks.clickhouse.rows) -> ClickHouseStore.write_batch, rows/s and the
     ratio to (1), for single-entry records and for ledger-batch records as accrue
     writes them (--per-record entries each); every run checks the rows stored;
  3. over --rows ledger rows (generated inside ClickHouse): the time to refresh the exact
     rollups, then p50/p99 of the rollup queries (earnings by holder for one week, one
     holder by model and day; --runs each) against the same answers through the FINAL
     views (the baseline, 10 runs) and the balances view;
  4. peak RSS of this process.
Kafka is left out on purpose: its consume cost is measured by benchmarks/streams_bench.py.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sinks.clickhouse.rows import to_rows  # noqa: E402
from sinks.clickhouse.schema import REFRESH_S, migrate, refresh_rollups, rollups_database  # noqa: E402
from sinks.clickhouse.store import JSON_INSERT, ClickHouseStore  # noqa: E402
from tributary import kafka  # noqa: E402
from tributary.topics import Topic  # noqa: E402


def ledger_record(n: int) -> bytes:
    return json.dumps({
        "schema_version": 1, "entry_id": f"le_bench_{n:09d}", "entry_type": "accrual",
        "debit_account": "provider:acme-ai:royalty_liability", "credit_account": f"holder:h-{n % 500}:payable",
        "amount_micros": 1_000 + n % 9_000, "currency": "USD", "holder_id": f"h-{n % 500}",
        "work_id": f"w-{n % 5_000}", "event_id": f"evt-bench-{n // 3}", "source_id": f"at_{n // 3}",
        "contract_id": "standard-2026", "contract_version": 1, "attribution_id": f"at_{n // 3}",
        "payout_id": None, "transfer_id": None, "created_at": "2026-11-20T10:00:00+00:00",
    }).encode()


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f} rows/s ({n:,} rows in {seconds:.2f}s)"


COLUMNS = ["entry_id", "entry_type", "debit_account", "credit_account", "amount_micros", "currency", "holder_id",
           "work_id", "event_id", "source_id", "contract_id", "contract_version", "attribution_id", "payout_id",
           "transfer_id", "created_at"]


def prebuilt_row(raw: bytes) -> list:
    """The baseline's input: a ledger row as clickhouse-connect wants it (typed Python
    values), built before the clock starts."""
    v = orjson.loads(raw)
    return [v[c] or "" if c != "contract_version" else v[c] or 0 for c in COLUMNS[:-1]] + [
        datetime.fromisoformat(v["created_at"])]


def timed(store: ClickHouseStore, label: str, run, records: int, baseline: float | None = None) -> float:
    store.client.command("TRUNCATE TABLE ledger_entries")
    start = time.perf_counter()
    run()
    took = time.perf_counter() - start
    stored = store.query("SELECT count(), sum(amount_micros) FROM ledger_entries")[1][0]
    assert stored[0] == records, f"{label}: {stored[0]} rows stored, {records} expected"
    ratio = "" if baseline is None else f"  = {baseline / took:.2f}x the baseline"
    print(f"{label:<52}: {rate(records, took)}{ratio}")
    return took


def bench_inserts(store: ClickHouseStore, records: int, batch: int, per_record: int) -> None:
    """The sink's write path against raw inserts of the same rows, each timed from the
    bytes (or rows) in memory to the rows stored, in batches of ``batch`` rows."""
    raw = [ledger_record(n) for n in range(records)]
    tuples = [prebuilt_row(r) for r in raw]
    # accrue's shape: ledger-batch.v1 records of ``per_record`` entries (one holder's, in service)
    batches = [kafka.dumps({"schema_version": 1, "kind": "batch",  # sorted keys, as accrue encodes them
                            "entries": [orjson.loads(r) for r in raw[i:i + per_record]]})
               for i in range(0, records, per_record)]

    def baseline() -> None:  # 1. the baseline: rows already built, clickhouse-connect's insert
        for i in range(0, records, batch):
            store.client.insert("ledger_entries", tuples[i:i + batch], column_names=COLUMNS)

    def raw_json() -> None:  # 2. the records' bytes handed over as they are: no check, no conversion
        for i in range(0, records, batch):
            store.client.raw_insert("ledger_entries", None, b"\n".join(raw[i:i + batch]), fmt="JSONEachRow",
                                    settings=JSON_INSERT)

    def sink(records_in: list[bytes], per: int) -> None:  # 3. the sink: decode, validate, write_batch
        step = max(1, batch // per)
        for i in range(0, len(records_in), step):
            parts = [to_rows(Topic.ROYALTY_LEDGER, 0, n, records_in[n])
                     for n in range(i, min(i + step, len(records_in)))]
            store.write_batch({"ledger_entries": parts})

    base = timed(store, "baseline: clickhouse-connect insert, pre-built rows", baseline, records)
    timed(store, "raw JSONEachRow insert of the bytes, unchecked", raw_json, records, base)
    timed(store, "sink, single-entry records (balances, Stripe sink)", lambda: sink(raw, 1), records, base)
    timed(store, f"sink, ledger-batch records of {per_record} (accrue)", lambda: sink(batches, per_record),
          records, base)


def fill(store: ClickHouseStore, rows: int) -> float:
    """``rows`` ledger rows and rows/3 priced events over 30 days, generated in ClickHouse."""
    store.client.command("TRUNCATE TABLE ledger_entries")
    store.client.command("TRUNCATE TABLE priced_events")
    start = time.perf_counter()
    store.client.command(f"""
        INSERT INTO priced_events (event_id, occurred_at, provider, model_name, model_revision, contract_id,
                                   contract_version, currency, revenue_micros, pool_micros, source_partition,
                                   source_offset, metadata)
        SELECT concat('evt-', toString(number)), toDateTime64('2026-10-22 00:00:00', 3, 'UTC') + (number % 2592000),
               ['acme-ai', 'nimbus-labs'][number % 2 + 1],
               ['acme-chat-large', 'acme-chat-small', 'nimbus-writer'][number % 3 + 1],
               '2026-10-01', 'standard-2026', 1, 'USD', 25000, 5000, 0, number, '{{}}'
        FROM numbers({rows // 3})""")
    store.client.command(f"""
        INSERT INTO ledger_entries (entry_id, entry_type, debit_account, credit_account, amount_micros, currency,
                                    holder_id, work_id, event_id, source_id, contract_id, contract_version,
                                    attribution_id, payout_id, transfer_id, created_at)
        SELECT concat('le-', toString(number)), 'accrual', 'provider:acme-ai:royalty_liability',
               concat('holder:h-', toString(number % 500), ':payable'), 1000 + number % 9000, 'USD',
               concat('h-', toString(number % 500)), concat('w-', toString(number % 5000)),
               concat('evt-', toString(intDiv(number, 3))), 'at', 'standard-2026', 1, 'at', '', '',
               toDateTime64('2026-10-22 00:00:00', 3, 'UTC') + (intDiv(number, 3) % 2592000)
        FROM numbers({rows})""")
    return time.perf_counter() - start


def latency(store: ClickHouseStore, name: str, sql: str, runs: int = 10) -> None:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        store.query(sql)
        times.append(time.perf_counter() - start)
    times.sort()
    p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
    print(f"rollup  {name:<44}: p50 {statistics.median(times) * 1000:8.1f} ms  p99 {p99 * 1000:8.1f} ms  "
          f"({runs} runs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000, help="records through the insert paths")
    parser.add_argument("--batch", type=int, default=5_000, help="rows per insert (the sink's batch size)")
    parser.add_argument("--rows", type=int, default=10_000_000, help="ledger rows for the rollup queries")
    parser.add_argument("--runs", type=int, default=100, help="runs of each rollup query (p50/p99)")
    parser.add_argument("--per-record", type=int, default=20,
                        help="entries per ledger-batch record in the batched sink run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tributary-sink-bench-") as tmp:
        store = ClickHouseStore(f"chdb://{tmp}/clickhouse")
        migrate(store.client)
        print(f"sink benchmark on chdb ({tmp}); batch {args.batch:,}")
        bench_inserts(store, args.records, args.batch, args.per_record)
        if not args.rows:
            return
        print(f"generating {args.rows:,} ledger rows and {args.rows // 3:,} priced events ...", flush=True)
        print(f"          generated in {fill(store, args.rows):.1f}s")
        start = time.perf_counter()
        refresh_rollups(store.client)
        print(f"          rollups refreshed in {time.perf_counter() - start:.1f}s (every {REFRESH_S} s in service: "
              f"recomputed from FINAL, exact)")
        db = rollups_database(store.client)
        latency(store, "earnings by holder, one week (rollup)",
                f"SELECT holder_id, sum(earned_micros) FROM {db}.holder_day "
                "WHERE day BETWEEN '2026-11-14' AND '2026-11-20' GROUP BY holder_id", runs=args.runs)
        latency(store, "one holder by model and day (rollup)",
                f"SELECT model_name, day, sum(earned_micros) FROM {db}.holder_model_day "
                "WHERE holder_id = 'h-42' GROUP BY model_name, day", runs=args.runs)
        latency(store, "earnings by holder, one week (view, FINAL)",
                "SELECT holder_id, sum(earned_micros) FROM holder_earnings_daily "
                "WHERE day BETWEEN '2026-11-14' AND '2026-11-20' GROUP BY holder_id")
        latency(store, "one holder by model and day (view, FINAL)",
                "SELECT model_name, day, sum(earned_micros) FROM holder_earnings_daily "
                "WHERE holder_id = 'h-42' GROUP BY model_name, day")
        latency(store, "balances of every holder (view, FINAL)", "SELECT * FROM holder_balances")
        store.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:,.0f} MiB")


if __name__ == "__main__":
    main()
