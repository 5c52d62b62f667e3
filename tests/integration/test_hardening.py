"""Hostile input against the real engines: the read-only query path on chdb (directly,
over the sink's HTTP server and through the CLI), and poison records through the real
ClickHouse sink on the real broker."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from schemas import topic_manifests
from sinks.clickhouse import service
from sinks.clickhouse.rows import Rows, to_rows
from sinks.clickhouse.schema import migrate
from sinks.clickhouse.store import BackpressureError, ClickHouseStore, ReadOnlyQueries
from tributary import kafka
from tributary.health import Health
from tributary.sqlguard import UnsafeQuery
from tributary.topics import Topic

# every bypass the outside check used, and a few more of the same kind
BYPASSES = [
    "SELECT 1; CREATE TABLE pwned (x Int8) ENGINE = Memory",
    "SELECT 1; INSERT INTO ledger_entries (entry_id) VALUES ('pwned')",
    "SELECT 1; DROP TABLE ledger_entries",
    "SELECT 1 -- comment\n; DROP TABLE ledger_entries",
    "SELECT 1 /* ; */; DROP TABLE ledger_entries",
    "SELECT 1 INTO OUTFILE '{out}'",
    "SELECT 1 INTO /* x */ OUTFILE '{out}' TRUNCATE FORMAT CSV",
    "SELECT * FROM file('/etc/hostname', 'LineAsString')",
    "SELECT * FROM ledger_entries, file('/etc/hostname', 'LineAsString')",
    "SELECT count() FROM ledger_entries WHERE entry_id IN (SELECT * FROM file('/etc/hostname', 'LineAsString'))",
    "SELECT file('/etc/hostname')",
    "SELECT `file`('/etc/hostname')",
    "SELECT * FROM url('http://127.0.0.1:1/', 'CSV', 'x String')",
    "SELECT * FROM executable('id', 'TSV', 'x String')",
    "WITH (SELECT 1) AS a SELECT * FROM remote('127.0.0.1', system.one)",
    "INSERT INTO ledger_entries (entry_id) VALUES ('pwned')",
    "CREATE TABLE pwned (x Int8) ENGINE = Memory",
    "SELECT 1 SETTINGS readonly = 0",
    "SET readonly = 0",
    # found by the review: typographic quotes are quotes to ClickHouse, hiding the ';'s from
    # a tokenizer that does not know them, and a setting passed with a query binds only the
    # last statement of a multi-statement text
    "SELECT \u2018'\u2019; INSERT INTO works (work_id) VALUES ('pwned'); SELECT \u2018'\u2019",
    "SELECT \u2018'\u2019; DROP TABLE holders; SELECT \u2018'\u2019",
    "SELECT \u2018'\u2019; SELECT * FROM file(\u2018/etc/hostname\u2019, \u2018LineAsString\u2019); SELECT \u2018'\u2019",
    "SELECT \u2018'\u2019; SELECT 'x' INTO OUTFILE '{out}' TRUNCATE FORMAT TSVRaw; SELECT \u2018'\u2019",
    "SELECT \u201c'\u201d; SYSTEM SHUTDOWN; SELECT \u201c'\u201d",
    "WITH 1 AS x INSERT INTO works (work_id) SELECT 'pwned'",
    "SELECT query FROM system.processes",
    "SELECT * FROM system.disks",
    "SELECT * FROM merge(system, '^processes$')",
    "SHOW PROCESSLIST",
    "SHOW GRANTS",
    "EXPLAIN PIPELINE INSERT INTO works (work_id) SELECT 'pwned'",
]


@pytest.fixture(scope="module")
def owner(tmp_path_factory):
    """A chdb directory owned by a writer (as in the sink) with a read-only session beside it."""
    path = tmp_path_factory.mktemp("chdb-hardening")
    store = ClickHouseStore(f"chdb://{path}")
    migrate(store.client)
    queries = ReadOnlyQueries.open(f"chdb://{path}", owner=True)
    yield store, queries, path
    queries.close()
    store.close()


class Borrowed:
    """The fixture's store (or queries) lent to ``service.run``, which closes what it was given."""

    def __init__(self, store: ClickHouseStore | ReadOnlyQueries):
        self._store = store
        self.client = store.client

    def __getattr__(self, name: str):
        return getattr(self._store, name)

    def close(self) -> None:
        pass


def ledger_tables(store: ClickHouseStore) -> set[str]:
    return {r[0] for r in store.query("SHOW TABLES")[1]}


@pytest.mark.clickhouse
@pytest.mark.parametrize("sql", BYPASSES)
def test_no_bypass_writes_or_touches_the_host(owner, sql, tmp_path):
    store, queries, _ = owner
    out = tmp_path / "out.txt"
    before = ledger_tables(store)
    with pytest.raises(Exception) as refused:
        queries.query(sql.format(out=out))
    assert str(refused.value)  # a reason, not a bare failure
    assert not out.exists()
    assert ledger_tables(store) == before
    assert store.query("SELECT count() FROM ledger_entries WHERE entry_id = 'pwned'")[1][0][0] == 0
    assert store.query("SELECT count() FROM works WHERE work_id = 'pwned'")[1][0][0] == 0
    # the writer's session is untouched by the read-only one
    store.write_batch({"works": [Rows.of("works", [{"work_id": f"w-{uuid.uuid4().hex[:6]}", "holder_id": "h",
                                                    "title": "t", "license": "l", "removed": 0,
                                                    "catalog_offset": 1}])]})


@pytest.mark.clickhouse
def test_reads_still_work_with_values_bound_by_the_server(owner):
    store, queries, _ = owner
    store.write_batch({"holders": [Rows.of("holders", [{"holder_id": "o'brien\\", "name": "O'Brien",
                                                        "stripe_account": "acct_1", "catalog_offset": 1}])]})
    columns, rows = queries.query("SELECT name FROM holders FINAL WHERE holder_id = {holder:String};",
                                  {"holder": "o'brien\\"})
    assert columns == ["name"] and rows == [("O'Brien",)]
    assert queries.query("SELECT sum(number) FROM numbers(10)")[1] == [(45,)]
    assert queries.query("SHOW TABLES")[1]
    assert queries.query("DESCRIBE TABLE ledger_entries")[1]
    assert queries.query("EXPLAIN SELECT 1")[1]
    assert queries.query("SELECT name FROM system.tables WHERE name = 'works'")[1] == [("works",)]
    # the TributaryRollupsStale runbook's command: which rollup refreshes, and why one fails
    refreshes = queries.query("SELECT view, status, exception FROM system.view_refreshes")[1]
    assert {row[0] for row in refreshes} >= {"earnings_day_refresh", "holder_day_refresh"}
    assert queries.query("SELECT '\u2018quoted\u2019 text' AS s")[1] == [("\u2018quoted\u2019 text",)]
    assert queries.query("SELECT 'a; DROP TABLE x' AS s, $$INTO OUTFILE$$ AS t")[1] == [("a; DROP TABLE x",
                                                                                        "INTO OUTFILE")]


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.clickhouse
def test_the_query_server_needs_its_token_and_refuses_every_bypass(owner, tmp_path):
    store, queries, _ = owner
    port = 28190 + int(__import__("os").environ.get("TRIBUTARY_TEST_PORT_OFFSET", "0"))
    server = service.serve_queries(queries, Health(), port, token="s3cret")
    url = f"http://127.0.0.1:{port}/query"
    try:
        assert _post(url, b"SELECT 1", {})[0] == 401
        assert _post(url, b"SELECT 1", {"Authorization": "Bearer wrong"})[0] == 401
        auth = {"Authorization": "Bearer s3cret"}
        assert _post(url, b"SELECT 1", auth) == (200, {"columns": ["1"], "rows": [[1]]})
        status, body = _post(url, json.dumps({"sql": "SELECT {n:UInt8} + 1 AS x", "parameters": {"n": 41}}).encode(),
                             {**auth, "Content-Type": "application/json"})
        assert (status, body["rows"]) == (200, [[42]])
        before = ledger_tables(store)
        for sql in BYPASSES:
            status, body = _post(url, sql.format(out=tmp_path / "o.txt").encode(), auth)
            assert status in (400, 403) and body["error"], sql
        assert ledger_tables(store) == before and not (tmp_path / "o.txt").exists()
    finally:
        server.shutdown()


@pytest.mark.clickhouse
def test_the_cli_refuses_bypasses_on_the_directory_read_only(tmp_path):
    """Without a running sink the CLI opens the directory itself, read-only; the same
    checks hold there. (A process hosts one chdb path, so this runs in a process of its own.)"""
    import subprocess
    import sys

    script = (
        "import sys\nfrom pathlib import Path\n"
        "from sinks.clickhouse.schema import migrate\nfrom sinks.clickhouse.store import ClickHouseStore\n"
        "from tributary.config import load_platform\nfrom tributary.query import QueryError, _direct\n"
        "cfg = load_platform(data_dir=Path(sys.argv[1]))\n"
        "store = ClickHouseStore(cfg.clickhouse_dsn)\nmigrate(store.client)\nstore.close()\n"
        "bad = []\n"
        "for sql in sys.argv[2:]:\n"
        "    try:\n        _direct(cfg, sql, None)\n    except QueryError:\n        continue\n"
        "    bad.append(sql)\n"
        "tables = _direct(cfg, 'SHOW TABLES', None)[1]\n"
        "print(len(bad), 'pwned' in str(tables), bad)\n")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "data"),
                          *[s.format(out=tmp_path / "o.txt") for s in BYPASSES]],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "0 False []"
    assert not (tmp_path / "o.txt").exists()


def priced(event_id: str, revenue: object = 25_000) -> bytes:
    return json.dumps({
        "schema_version": 1, "event_id": event_id, "occurred_at": "2026-11-20T12:00:00Z", "provider": "acme",
        "model": {"name": "m", "revision": "r"},
        "contract": {"contract_id": "standard-2026", "version": 1, "royalty_rate_bps": 2000, "currency": "USD"},
        "revenue_micros": revenue, "pool_micros": 5_000, "output": {"text": "x"}, "metadata": {},
        "source": {"topic": "inference-events", "partition": 0, "offset": 1},
    }).encode()


@pytest.mark.kafka
@pytest.mark.clickhouse
def test_a_record_clickhouse_refuses_goes_to_the_sink_dlq_and_the_sink_moves_on(platform_cfg, owner):
    """The finding: one priced event with ``"revenue_micros": 25000.0`` stopped the sink for
    good (the same batch retried every 30 s: clickhouse-connect could not serialize a float
    among the ints of an Int64 column). Now a value the column cannot hold (25000.0 written
    as a float, a revenue beyond Int64) is refused by the sink before any insert, naming
    the field; a record ClickHouse itself refuses (a ledger entry with a key written twice)
    is found by splitting the batch and quarantined with its error, source offset and
    payload; every other record is written and committed."""
    from confluent_kafka import TopicPartition

    from tributary.lag import LagReader

    store, _, _ = owner
    run_id = uuid.uuid4().hex[:8]
    group = f"poison-{run_id}"
    producer = kafka.producer(platform_cfg.bootstrap_servers)
    ids = [f"poison-{run_id}-{n}" for n in range(40)]
    for n, event_id in enumerate(ids):
        value = priced(event_id, {17: 25000.0, 23: 10**20}.get(n, 25_000))
        producer.produce(Topic.ATTRIBUTION_REQUESTS.value, key=event_id.encode(), value=value)
    producer.produce(Topic.ATTRIBUTION_REQUESTS.value, key=b"x", value=b"{not json")  # undecodable
    twice = (b'{"schema_version": 1, "entry_id": "le-twice-' + run_id.encode() + b'", "entry_type": "accrual", '
             b'"debit_account": "provider:p:royalty_liability", "credit_account": "holder:h-twice:payable", '
             b'"amount_micros": 5, "amount_micros": 7, "currency": "USD", "holder_id": "h-twice", '
             b'"event_id": "e-twice-' + run_id.encode() + b'", "source_id": "at", '
             b'"created_at": "2026-11-20T00:00:00+00:00"}')
    producer.produce(Topic.ROYALTY_LEDGER.value, key=b"h-twice", value=twice)
    assert producer.flush(30) == 0
    unwritable = service.QUARANTINED.labels("unwritable")._value.get()
    stop = threading.Event()
    worker = threading.Thread(target=service.run, args=(platform_cfg.bootstrap_servers, "chdb://unused", 0, stop),
                              kwargs={"group_id": group, "store": Borrowed(store), "batch_wait_s": 0.2})
    worker.start()
    try:
        deadline = time.monotonic() + 90
        while store.query(f"SELECT count() FROM priced_events FINAL WHERE event_id LIKE 'poison-{run_id}-%'"
                          )[1][0][0] < 38 or service.QUARANTINED.labels("unwritable")._value.get() < unwritable + 1:
            assert time.monotonic() < deadline and worker.is_alive()
            time.sleep(0.2)
    finally:
        stop.set()
        worker.join(60)
    stored = {r[0] for r in store.query(f"SELECT event_id FROM priced_events FINAL "
                                        f"WHERE event_id LIKE 'poison-{run_id}-%'")[1]}
    assert stored == set(ids) - {ids[17], ids[23]}
    assert store.query(f"SELECT count() FROM ledger_entries WHERE holder_id = 'h-twice' "
                       f"AND event_id = 'e-twice-{run_id}'")[1] == [(0,)]
    partitions = [TopicPartition(topic.value, p) for topic in (Topic.ATTRIBUTION_REQUESTS, Topic.ROYALTY_LEDGER)
                  for p in range(topic_manifests()[topic].partitions)]
    reader = LagReader(platform_cfg.bootstrap_servers)
    committed = reader.committed(group, partitions)
    reader.close()
    consumer = kafka.consumer(platform_cfg.bootstrap_servers, f"check-{run_id}")
    for tp in partitions:
        _, high = consumer.get_watermark_offsets(tp, timeout=10)
        # nothing left behind (a partition none of the random ids landed on has no commit: -1001)
        assert max(committed.get((tp.topic, tp.partition), 0), 0) == high
    consumer.assign([TopicPartition(Topic.SINK_CLICKHOUSE_DLQ.value, 0, 0)])
    letters = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is None:
            if letters:
                break
            continue
        if not msg.error():
            letters.append(json.loads(msg.value()))
    consumer.close()
    mine = [d for d in letters if run_id in d["payload"] or d["payload"] == "{not json"]
    refused = {e: d for d in mine for e in (ids[17], ids[23])
               if d["error_code"] == "undecodable_record" and f'"{e}"' in d["payload"]}
    assert sorted(refused) == [ids[17], ids[23]]  # 25000.0 written as a float; 10**20, beyond Int64
    assert all(d["field"] == "revenue_micros" and "is not an integer" in d["reason"] for d in refused.values())
    assert any(d["payload"] == "{not json" and d["error_code"] == "undecodable_record" for d in mine)
    [poison] = [d for d in mine if d["error_code"] == "unwritable_record"]
    assert poison["event_id"] == f"e-twice-{run_id}" and '"amount_micros": 7' in poison["payload"]
    assert poison["source"]["topic"] == Topic.ROYALTY_LEDGER.value and "refused" in poison["reason"]


@pytest.mark.kafka
@pytest.mark.clickhouse
def test_a_sink_that_cannot_write_reports_unhealthy_and_commits_nothing(platform_cfg, owner):
    """ClickHouse down: nothing is quarantined (no record is to blame), the sink keeps
    retrying, and /healthz says so instead of "ok"."""

    class Down:
        def __init__(self, store):
            self.client, self.store = store.client, store

        def write_batch(self, batch):
            raise BackpressureError("connection refused")

        def ping(self):
            raise BackpressureError("connection refused")

        def close(self):
            pass

    run_id = uuid.uuid4().hex[:8]
    producer = kafka.producer(platform_cfg.bootstrap_servers)
    producer.produce(Topic.ATTRIBUTION_REQUESTS.value, key=b"k", value=priced(f"down-{run_id}"))
    assert producer.flush(30) == 0
    store, queries, _ = owner
    port = 28191 + int(__import__("os").environ.get("TRIBUTARY_TEST_PORT_OFFSET", "0"))
    stop = threading.Event()
    quarantined = service.QUARANTINED.labels("unwritable")._value.get()
    worker = threading.Thread(target=service.run, args=(platform_cfg.bootstrap_servers, "chdb://unused", port, stop),
                              kwargs={"group_id": f"down-{run_id}", "store": Down(store), "batch_wait_s": 0.2,
                                      "stall_after_s": 2.0, "queries": Borrowed(queries)})
    worker.start()
    try:
        deadline = time.monotonic() + 60
        status = 200
        while status == 200:
            assert time.monotonic() < deadline, "the sink kept saying it was healthy"
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
                    status = resp.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except urllib.error.URLError:
                continue
        assert status == 503
        assert service.QUARANTINED.labels("unwritable")._value.get() == quarantined
    finally:
        stop.set()
        worker.join(60)


def test_bypass_list_is_refused_by_the_text_check_alone():
    """The first layer on its own (no engine needed): each bypass is refused before any
    query runs, except those only the engine's readonly mode can judge."""
    from tributary.sqlguard import single_statement

    engine_judged = {  # the engine's parse (statement nodes, system tables) or readonly mode judges these
        "SELECT 1 SETTINGS readonly = 0", "WITH 1 AS x INSERT INTO works (work_id) SELECT 'pwned'",
        "SELECT query FROM system.processes", "SELECT * FROM system.disks", "SELECT * FROM merge(system, '^processes$')",
        "SHOW PROCESSLIST", "SHOW GRANTS", "EXPLAIN PIPELINE INSERT INTO works (work_id) SELECT 'pwned'"}
    for sql in BYPASSES:
        if sql in engine_judged:
            continue
        with pytest.raises(UnsafeQuery):
            single_statement(sql.format(out=Path("/tmp/x")))


@pytest.mark.clickhouse
def test_reports_bind_user_input_as_parameters(owner):
    """Statements, explain and reports take holder ids, event ids and dates from users:
    bound by ClickHouse, so quotes, backslashes and SQL in them are just text."""
    from datetime import date

    from tributary import reports

    store, queries, _ = owner
    hostile = "o'brien\\' OR 1=1 --"
    store.write_batch({"holders": [Rows.of("holders", [{"holder_id": hostile, "name": "Hostile",
                                                        "stripe_account": "", "catalog_offset": 2}])]})

    def run(sql, parameters):
        columns, rows = queries.query(sql, parameters)
        return columns, [list(r) for r in rows]

    st = reports.statement(run, hostile, date(2026, 1, 1), date(2026, 12, 31))
    assert st.name == "Hostile" and st.closing_micros == 0
    for ident in (hostile, "x'); DROP TABLE ledger_entries; --", "{id:String}"):
        with pytest.raises(reports.ReportError):
            reports.explain(run, ident)
    _, rows = reports.earnings(run, ["holder", "day"], date(2026, 1, 1), date(2026, 12, 31), hostile)
    assert rows == []
    # ILLEGAL_AGGREGATION before; rows only where other tests of this module stored priced events
    assert all(len(row) == 5 and 0 <= row[4] <= 1 for row in reports.coverage(run, date(2026, 1, 1),
                                                                               date(2026, 12, 31))[1])
    with pytest.raises(reports.ReportError, match="--since"):
        reports.dates(None, None, 999_999_999)
    assert "ledger_entries" in ledger_tables(store)


@pytest.mark.clickhouse
def test_a_dead_letter_written_again_on_a_replay_is_one_row(owner):
    """The finding: `dead_letters FINAL` held 152 rows for 130 source messages, because a
    replay writes the dead letter again at a new offset of the dead-letter topic and the
    row was keyed by that offset. It is keyed by the source message now."""
    store, _, _ = owner
    letter = json.dumps({"schema_version": 1, "error_code": "unknown_contract", "field": "contract_id",
                         "reason": "r", "event_id": "replayed-dl",
                         "source": {"topic": "inference-events", "partition": 3, "offset": 77},
                         "payload": "{}"}).encode()
    converted = [to_rows(Topic.INFERENCE_EVENTS_DLQ, 0, offset, letter) for offset in (10, 11, 250)]
    assert {row["dlq_key"] for rows in converted for row in rows.dicts()} == {"inference-events:3:77"}
    for rows in converted:  # three writes, as three replays would make
        store.write_batch({rows.table: [rows]})
    assert store.query("SELECT count() FROM dead_letters FINAL WHERE event_id = 'replayed-dl'")[1] == [(1,)]


@pytest.mark.clickhouse
def test_the_engine_layers_hold_without_the_text_check(owner, tmp_path, monkeypatch):
    """Defence in depth: with the tokenizer switched off, ClickHouse's own single-statement
    check, the AST check and the read-only session still refuse every bypass."""
    from sinks.clickhouse import store as store_module

    monkeypatch.setattr(store_module, "single_statement", lambda sql: sql)
    store, queries, _ = owner
    before = ledger_tables(store)
    for sql in BYPASSES:
        with pytest.raises(Exception):  # noqa: B017 - UnsafeQuery or the engine's READONLY error
            queries.query(sql.format(out=tmp_path / "o.txt"))
    assert ledger_tables(store) == before and not (tmp_path / "o.txt").exists()
    assert store.query("SELECT count() FROM works WHERE work_id = 'pwned'")[1][0][0] == 0


@pytest.mark.clickhouse
def test_an_analysts_query_cannot_hold_the_query_server(owner):
    """The new-user trial froze the query server for minutes with one query (no limits,
    one query at a time). The analyst session runs with a time, memory and result-size
    limit, and cannot lift them (readonly)."""
    from sinks.clickhouse.store import QUERY_LIMITS

    _, queries, _ = owner
    _, rows = queries.query("SELECT getSetting('max_execution_time'), getSetting('max_memory_usage')")
    assert [float(v) for v in rows[0]] == [QUERY_LIMITS["max_execution_time"], QUERY_LIMITS["max_memory_usage"]]
    with pytest.raises(Exception, match="TOO_MANY_ROWS|result exceeded"):
        queries.query("SELECT number FROM numbers(2000000)")
    with pytest.raises(Exception, match="READONLY|readonly"):
        queries.query("SELECT 1 SETTINGS max_execution_time = 0")
