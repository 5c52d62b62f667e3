"""Single components on their real engines: chdb (ClickHouse) and the real model."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from schemas import topic_manifests
from sinks.clickhouse.rows import Rows
from tributary.sample import load_catalog


@pytest.fixture(scope="module")
def chdb_store(tmp_path_factory):
    from sinks.clickhouse.schema import migrate
    from sinks.clickhouse.store import ClickHouseStore

    store = ClickHouseStore(f"chdb://{tmp_path_factory.mktemp('chdb')}")
    migrate(store.client)
    yield store
    store.close()


def entry_row(entry_id: str, amount: int) -> dict:
    return {"entry_id": entry_id, "entry_type": "accrual", "debit_account": "provider:p:royalty_liability",
            "credit_account": "holder:h1:payable", "amount_micros": amount, "currency": "USD",
            "holder_id": "h1", "work_id": "w1", "event_id": "e1", "source_id": "at_1",
            "contract_id": "standard-2026", "contract_version": 1, "attribution_id": "at_1",
            "payout_id": "", "transfer_id": "", "created_at": datetime(2026, 11, 20, tzinfo=UTC)}


@pytest.mark.clickhouse
def test_migrations_are_idempotent(chdb_store):
    from sinks.clickhouse.schema import LATEST, migrate

    assert migrate(chdb_store.client) == []
    _, rows = chdb_store.query("SELECT max(version) FROM schema_migrations")
    assert rows[0][0] == LATEST


@pytest.mark.clickhouse
def test_a_redelivered_batch_is_never_visible_twice(chdb_store):
    batch = {"ledger_entries": [Rows.of("ledger_entries", [entry_row("le_a", 100), entry_row("le_b", 250)])]}
    chdb_store.write_batch(batch)
    chdb_store.write_batch(batch)  # the sink crashed before committing offsets
    _, raw = chdb_store.query("SELECT count() FROM ledger_entries WHERE entry_id IN ('le_a', 'le_b')")
    _, final = chdb_store.query("SELECT count(), sum(amount_micros) FROM ledger_entries FINAL "
                                "WHERE entry_id IN ('le_a', 'le_b')")
    assert raw[0][0] == 4  # stored twice ...
    assert final[0] == (2, 350)  # ... seen once
    _, view = chdb_store.query("SELECT accrued_micros FROM holder_balances WHERE holder_id = 'h1'")
    assert view[0][0] == 350


@pytest.mark.clickhouse
def test_every_shape_of_ledger_record_is_stored_as_its_values_say(chdb_store):
    """The sink's JSON lines on the real engine: a compact single entry (its own bytes are
    the line), a pretty-printed one (encoded again), a batch record; times with an offset
    and fractions, nulls as the column defaults; a priced event's dict row likewise."""
    import json

    from sinks.clickhouse.rows import to_rows
    from tributary.topics import Topic

    def entry(n: int, **changes: object) -> dict:
        return {"schema_version": 1, "entry_id": f"le_shape_{n}", "entry_type": "accrual",
                "debit_account": "provider:p:royalty_liability", "credit_account": "holder:h-shape:payable",
                "amount_micros": 1_000 + n, "currency": "USD", "holder_id": "h-shape", "work_id": None,
                "event_id": f"e-shape-{n}", "source_id": f"at_{n}", "contract_id": None, "contract_version": None,
                "attribution_id": None, "payout_id": None, "transfer_id": None,
                "created_at": "2026-11-20T10:00:00+00:00", **changes}

    from tributary import kafka

    records = [json.dumps(entry(0, created_at="2026-11-20T15:30:00.250+05:30")).encode(),
               json.dumps(entry(1, work_id="w-1", contract_version=3), indent=2).encode(),
               json.dumps({"schema_version": 1, "kind": "batch", "entries": [entry(2), entry(3)]}).encode(),
               # a batch of one, as accrue writes it (sorted keys): its entry, not the record, is the row
               kafka.dumps({"schema_version": 1, "kind": "batch", "entries": [entry(4)]}),
               # a field outside the schema never reaches a column (ingested_at orders the versions)
               json.dumps(entry(5, ingested_at="2099-01-01 00:00:00")).encode()]
    parts = [to_rows(Topic.ROYALTY_LEDGER, 0, n, raw) for n, raw in enumerate(records)]
    assert [p.count for p in parts] == [1, 1, 2, 1, 1]
    assert b"\n" not in parts[1].lines.rstrip(b"\n")  # the pretty one became one line
    priced = {"schema_version": 1, "event_id": "e-shape-p", "occurred_at": "2026-11-20T00:00:00.123456Z",
              "provider": "acme", "model": {"name": "m", "revision": "r"},
              "contract": {"contract_id": "standard-2026", "version": 1, "royalty_rate_bps": 2000, "currency": "USD"},
              "revenue_micros": 1_000, "pool_micros": 200, "output": {"text": "x"},
              "source": {"topic": "inference-events", "partition": 1, "offset": 7}}
    assert chdb_store.write_batch({"ledger_entries": parts, "priced_events": [
        to_rows(Topic.ATTRIBUTION_REQUESTS, 0, 9, json.dumps(priced).encode())]}) == 7
    _, rows = chdb_store.query("SELECT entry_id, amount_micros, work_id, contract_id, contract_version, "
                               "toString(created_at) FROM ledger_entries WHERE holder_id = 'h-shape' ORDER BY entry_id")
    assert rows == [("le_shape_0", 1_000, "", "", 0, "2026-11-20 10:00:00.250"),
                    ("le_shape_1", 1_001, "w-1", "", 3, "2026-11-20 10:00:00.000"),
                    ("le_shape_2", 1_002, "", "", 0, "2026-11-20 10:00:00.000"),
                    ("le_shape_3", 1_003, "", "", 0, "2026-11-20 10:00:00.000"),
                    ("le_shape_4", 1_004, "", "", 0, "2026-11-20 10:00:00.000"),
                    ("le_shape_5", 1_005, "", "", 0, "2026-11-20 10:00:00.000")]
    _, rows = chdb_store.query("SELECT count() FROM ledger_entries WHERE holder_id = 'h-shape' "
                               "AND (entry_id = '' OR ingested_at > now64(3) + INTERVAL 1 DAY)")
    assert rows == [(0,)]
    _, rows = chdb_store.query("SELECT toString(occurred_at), pool_micros, source_offset, metadata "
                               "FROM priced_events WHERE event_id = 'e-shape-p'")
    assert rows == [("2026-11-20 00:00:00.123", 200, 7, "{}")]


@pytest.mark.model
def test_real_model_embeds_normalised_vectors(real_embedder):
    vectors = real_embedder.encode(["Call me Ishmael.", "Reset the router."])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    assert real_embedder.revision.startswith("sha256:")


@pytest.mark.model
def test_real_model_separates_quotes_from_unrelated_text_at_the_catalog_calibration(real_embedder):
    """The sample catalog indexed as the indexer does and calibrated from itself (leave one
    work out, by the calibration's own rule); 45-word quotes (cut across sentences, so no
    output sentence is a catalog unit's own text) and unrelated text go through the
    worker's output units, batch search and exact rescoring. Semantic evidence only:
    copied spans are left out here."""
    from gpu_workers.calibration import TARGET_UNIT_RATE
    from gpu_workers.catalog import index_works
    from gpu_workers.index import QdrantIndex
    from gpu_workers.scoring import attribute
    from gpu_workers.worker import match_units, output_units, output_vectors

    works = load_catalog()["works"]
    index = QdrantIndex(":memory:", dim=real_embedder.dim)
    catalog = index_works(works, real_embedder, index)
    calibration = catalog.calibration()
    assert calibration.source == "catalog leave-one-work-out" and calibration.null_works == len(works)
    assert 0 < calibration.threshold < 1 and calibration.unit_rate <= TARGET_UNIT_RATE
    quotes = [" ".join(w["text"].split()[10:55]) for w in works]
    unrelated = [
        "To reset your router, hold the power button for ten seconds and wait for the light.",
        "The quarterly revenue grew eight percent, driven by subscription renewals.",
        "Preheat the oven to 220 degrees and roast the potatoes for forty minutes.",
    ]
    requests = [{"output": {"text": t}} for t in quotes + unrelated]
    outputs = output_units(requests)
    vectors, _ = output_vectors(requests, real_embedder, outputs)
    matches = match_units(outputs, vectors, index, catalog, top_k=24)
    found = 0
    for work, o, m in zip(works, outputs[:len(works)], matches[:len(works)], strict=True):
        assert all(u.top is not None and u.top.work_id == work["work_id"] for u in m), work["work_id"]
        shares, _, _ = attribute(o.segments, o.units, m, [], calibration)
        assert {s["work_id"] for s in shares} <= {work["work_id"]} and all(s["tier"] == "probable" for s in shares)
        found += bool(shares)
    # Embedding similarity alone misses some verbatim quotes (measured: Persuasion's quote is
    # one sentence that clears the bar but not the margin over the runner-up work); the
    # verbatim span matcher is what catches those with certainty.
    assert found / len(works) >= 0.9
    for o, m in zip(outputs[len(works):], matches[len(works):], strict=True):
        assert not any(u.passes(calibration) for u in m)
        assert attribute(o.segments, o.units, m, [], calibration)[:2] == ([], 1_000_000)


@pytest.mark.kafka
@pytest.mark.clickhouse
def test_the_sink_holds_its_offsets_while_clickhouse_refuses_then_writes_everything_once(platform_cfg, chdb_store):
    """Backpressure: while ClickHouse refuses batches the sink commits nothing (a crash
    then would re-read them), retries the same batch, and once ClickHouse takes it every
    row is there exactly once."""
    import json
    import threading
    import time
    import uuid

    from confluent_kafka import TopicPartition

    from sinks.clickhouse import service
    from sinks.clickhouse.store import BackpressureError
    from tributary import kafka
    from tributary.lag import LagReader
    from tributary.topics import Topic

    class Refusing:
        """The real chdb store behind a ClickHouse that is down for the first writes."""

        def __init__(self, store, failures):
            self.store, self.failures, self.refused = store, failures, 0
            self.client = store.client

        def _down(self):
            if self.refused < self.failures:
                self.refused += 1
                raise BackpressureError("connection refused (ClickHouse is down)")

        def write_batch(self, batch):
            self._down()
            return self.store.write_batch(batch)

        def ping(self):
            self._down()

        def query(self, sql):
            return self.store.query(sql)

        def close(self):
            pass

    run_id = uuid.uuid4().hex[:8]
    group = f"bp-test-{run_id}"
    producer = kafka.producer(platform_cfg.bootstrap_servers)
    for n in range(50):
        entry = {"schema_version": 1, "entry_id": f"bp-{run_id}-{n}", "entry_type": "accrual", "debit_account": "provider:p:royalty_liability",
                 "credit_account": "holder:h-bp:payable", "amount_micros": 1_000 + n, "currency": "USD",
                 "holder_id": "h-bp", "work_id": "w1", "event_id": f"e-bp-{run_id}-{n}", "source_id": "at",
                 "created_at": "2026-11-20T00:00:00+00:00"}
        producer.produce(Topic.ROYALTY_LEDGER.value, key=b"h-bp", value=json.dumps(entry).encode())
    assert producer.flush(30) == 0
    refusing = Refusing(chdb_store, failures=3)
    stop = threading.Event()
    worker = threading.Thread(target=service.run, args=(platform_cfg.bootstrap_servers, "chdb://unused", 0, stop),
                              kwargs={"group_id": group, "store": refusing, "batch_wait_s": 0.2})
    reader = LagReader(platform_cfg.bootstrap_servers)
    ledger = [TopicPartition(Topic.ROYALTY_LEDGER.value, p)
              for p in range(topic_manifests()[Topic.ROYALTY_LEDGER].partitions)]

    def committed() -> int:
        return sum(offset for offset in reader.committed(group, ledger).values() if offset >= 0)

    worker.start()
    try:
        while refusing.refused < 3:
            time.sleep(0.05)
            assert worker.is_alive()
        assert committed() == 0  # refused batches were not acknowledged
        deadline = time.monotonic() + 60
        while chdb_store.query(f"SELECT count() FROM ledger_entries FINAL WHERE holder_id = 'h-bp' "
                               f"AND entry_id LIKE 'bp-{run_id}-%'")[1][0][0] < 50:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        stop.set()
        worker.join(30)
    _, rows = chdb_store.query(f"SELECT count(), sum(amount_micros) FROM ledger_entries "
                               f"WHERE entry_id LIKE 'bp-{run_id}-%'")
    assert rows[0] == (50, sum(1_000 + n for n in range(50)))  # each row once, even without FINAL
    assert committed() > 0
