"""The ClickHouse sink's poison-record rules on a fake store and a fake producer (the
same paths run on chdb and the real broker in tests/integration/test_hardening.py)."""

from __future__ import annotations

import json
import threading

import pytest

from sinks.clickhouse import service
from sinks.clickhouse.store import BackpressureError, RowsRefused
from tributary.topics import Topic


class Msg:
    def __init__(self, offset: int, value: bytes | None, topic: str = Topic.ROYALTY_LEDGER.value):
        self._offset, self._value, self._topic = offset, value, topic

    def topic(self): return self._topic
    def partition(self): return 0
    def offset(self): return self._offset
    def value(self): return self._value
    def error(self): return None


REFUSED = "h-refused-by-clickhouse"  # a valid ledger entry the fake store refuses, as a full column would


def entry(n: int, amount: object = 1_000, holder: str = "h") -> bytes:
    return json.dumps({"schema_version": 1, "entry_id": f"le-{n}", "entry_type": "accrual", "debit_account": "a",
                       "credit_account": "b", "amount_micros": amount, "currency": "USD", "holder_id": holder,
                       "source_id": "s", "created_at": "2026-11-20T00:00:00+00:00"}).encode()


class Store:
    """Refuses rows whose holder or provider is REFUSED (a data error); or
    every insert (``down``)."""

    def __init__(self, down: Exception | None = None, ping_ok: bool = True, stop: threading.Event | None = None):
        self.down, self.ping_ok, self.stop = down, ping_ok, stop
        self.rows: list[dict] = []
        self.inserts = 0

    def write_batch(self, batch):
        self.inserts += 1
        if self.stop is not None and self.inserts > 50:
            self.stop.set()
        if self.down is not None:
            raise BackpressureError(str(self.down))
        rows = [r for parts in batch.values() for part in parts for r in part.dicts()]
        if any(REFUSED in (r.get("holder_id"), r.get("provider")) for r in rows):
            raise RowsRefused("insert into ledger_entries failed: Unable to create native array")
        self.rows += rows

    def ping(self):
        if not self.ping_ok:
            raise BackpressureError("connection refused")


class Dlq:
    def __init__(self, fail: str | None = None):
        self.sent: list[tuple[bytes, bytes]] = []
        self.fail = fail
        self._pending = []

    def produce(self, topic, key, value, on_delivery):
        assert topic == Topic.SINK_CLICKHOUSE_DLQ.value
        assert len(value) < 1_000_000
        self._pending.append((key, value, on_delivery))

    def flush(self, timeout):
        for key, value, callback in self._pending:
            if self.fail:
                callback(self.fail, None)
            else:
                self.sent.append((key, value))
                callback(None, None)
        self._pending = []
        return 0


def test_a_poison_record_is_quarantined_and_the_rest_written():
    store, dlq = Store(), Dlq()
    items = service.decode([Msg(n, entry(n, holder=REFUSED if n == 3 else "h")) for n in range(8)])
    assert service.write(store, dlq, items, threading.Event(), first_delay_s=0)
    assert sorted(r["entry_id"] for r in store.rows) == [f"le-{n}" for n in range(8) if n != 3]
    (key, value), = dlq.sent
    letter = json.loads(value)
    assert key == b"royalty-ledger:0:3" and letter["error_code"] == "unwritable_record"
    assert letter["source"] == {"topic": "royalty-ledger", "partition": 0, "offset": 3}


@pytest.mark.parametrize(("amount", "field", "reason"), [
    ("oops", "amount_micros", "Expected `int`, got `str`"),
    (-5, "amount_micros", "Expected `int` >= 0"),
    (25_000.0, "amount_micros", "Expected `int`, got `float`"),
])
def test_a_ledger_entry_that_breaks_its_schema_is_quarantined_naming_the_field(amount, field, reason):
    """Ledger records are decoded into typed entries (schemas.payloads): a wrong value is
    refused before any insert, and its dead letter names the field and the reason."""
    store, dlq = Store(), Dlq()
    items = service.decode([Msg(0, entry(0)), Msg(1, entry(1, amount))])
    assert service.write(store, dlq, items, threading.Event(), first_delay_s=0)
    assert [r["entry_id"] for r in store.rows] == ["le-0"] and store.inserts == 1
    (key, value), = dlq.sent
    letter = json.loads(value)
    assert key == b"royalty-ledger:0:1" and letter["error_code"] == "undecodable_record"
    assert letter["field"] == field and reason in letter["reason"]


def test_a_bad_entry_inside_a_ledger_batch_is_named_by_its_place():
    batch = {"schema_version": 1, "kind": "batch", "entries": [json.loads(entry(0)), json.loads(entry(1, "x"))]}
    store, dlq = Store(), Dlq()
    items = service.decode([Msg(0, json.dumps(batch).encode())])
    assert service.write(store, dlq, items, threading.Event(), first_delay_s=0)
    (_, value), = dlq.sent
    assert json.loads(value)["field"] == "entries[1].amount_micros" and store.rows == []


def priced(n: int, pool: object = 200, provider: str = "acme") -> dict:
    return {"schema_version": 1, "event_id": f"e{n}", "occurred_at": "2026-11-20T00:00:00Z", "provider": provider,
            "model": {"name": "m", "revision": "r"},
            "contract": {"contract_id": "standard-2026", "version": 1, "royalty_rate_bps": 2000, "currency": "USD"},
            "revenue_micros": 1_000, "pool_micros": pool, "output": {"text": "x"},
            "source": {"topic": "inference-events", "partition": 0, "offset": n}}


def requests_batch(*requests: dict) -> bytes:
    return json.dumps({"schema_version": 1, "kind": "batch", "requests": list(requests)}).encode()


def test_a_batch_record_is_quarantined_whole_and_its_neighbours_written():
    """Quarantine is per record: a batch record on attribution-requests with one request
    ClickHouse refuses goes to the dead-letter topic whole (its payload keeps every
    request, its event_id is the first's, as its key is); the other records' rows go in."""
    store, dlq = Store(), Dlq()
    topic = Topic.ATTRIBUTION_REQUESTS.value
    items = service.decode([Msg(0, entry(0)), Msg(1, requests_batch(priced(1), priced(2, provider=REFUSED), priced(3)),
                                                topic),
                            Msg(2, requests_batch(priced(4), priced(5)), topic)])
    assert [(i.table, i.rows.count) for i in items] == [("ledger_entries", 1), ("priced_events", 3),
                                                       ("priced_events", 2)]
    assert service.write(store, dlq, items, threading.Event(), first_delay_s=0)
    assert sorted(r.get("entry_id") or r["event_id"] for r in store.rows) == ["e4", "e5", "le-0"]
    (key, value), = dlq.sent
    letter = json.loads(value)
    assert key == b"attribution-requests:0:1" and letter["error_code"] == "unwritable_record"
    assert letter["event_id"] == "e1" and len(json.loads(letter["payload"])["requests"]) == 3


@pytest.mark.parametrize(("pool", "reason"), [
    ("oops", "field pool_micros: 'oops' is not an integer"),
    (None, "field pool_micros: null where a value is required"),
    (2**63, "field pool_micros: 9223372036854775808 is not an integer"),
])
def test_a_value_the_column_cannot_hold_is_refused_before_the_insert_naming_its_field(pool, reason):
    """ClickHouse's JSON input would store a null as 0 and wrap an integer that does not
    fit: the sink refuses such a record itself, and its dead letter says which field."""
    store, dlq = Store(), Dlq()
    topic = Topic.ATTRIBUTION_REQUESTS.value
    items = service.decode([Msg(0, json.dumps(priced(0, pool)).encode(), topic), Msg(1, entry(1))])
    assert service.write(store, dlq, items, threading.Event(), first_delay_s=0)
    assert [r["entry_id"] for r in store.rows] == ["le-1"]
    (_, value), = dlq.sent
    letter = json.loads(value)
    assert letter["error_code"] == "undecodable_record" and reason in letter["reason"]
    assert letter["field"] == "pool_micros"


def test_a_missing_field_inside_a_batch_is_named_with_its_place():
    second = json.loads(entry(1))
    del second["source_id"]
    batch = {"schema_version": 1, "kind": "batch", "entries": [json.loads(entry(0)), second]}
    store, dlq = Store(), Dlq()
    assert service.write(store, dlq, service.decode([Msg(0, json.dumps(batch).encode())]), threading.Event(),
                         first_delay_s=0)
    (_, value), = dlq.sent
    assert json.loads(value)["field"] == "entries[1].source_id"


def test_a_batch_of_one_poison_record_is_quarantined_too():
    store, dlq = Store(), Dlq()
    items = service.decode([Msg(0, entry(0, holder=REFUSED))])
    assert service.write(store, dlq, items, threading.Event(), first_delay_s=0)
    assert len(dlq.sent) == 1 and store.rows == []


@pytest.mark.parametrize("error", ["Code: 243. DB::Exception: Cannot reserve 1.00 MiB, not enough space. "
                                   "(NOT_ENOUGH_SPACE)", "Code: 252. Too many parts (TOO_MANY_PARTS)",
                                   "Code: 242. Table is in readonly mode (TABLE_IS_READ_ONLY)"])
def test_a_server_refusing_every_insert_while_answering_select_quarantines_nothing(error):
    """The review's finding: a full disk failed every insert while SELECT 1 answered, and all
    8 ledger entries were quarantined and their offsets committed. Nobody is to blame:
    the sink holds the batch until stopped, and commits nothing."""
    stop = threading.Event()
    store, dlq = Store(down=Exception(error), stop=stop), Dlq()
    items = service.decode([Msg(n, entry(n)) for n in range(8)])
    assert service.write(store, dlq, items, stop, first_delay_s=0) is False
    assert dlq.sent == [] and all(item.error is None for item in items)


def test_records_that_break_the_decoder_are_quarantined_not_raised():
    deep = b"[" * 100_000 + b"]" * 100_000
    early = json.dumps({"schema_version": 1, "kind": "refund", "correction_id": "c", "event_id": "e",
                        "occurred_at": "0001-01-01T00:00:00+01:00"}).encode()
    store, dlq = Store(), Dlq()
    items = service.decode([Msg(0, deep), Msg(1, early, Topic.CORRECTIONS.value), Msg(2, entry(2))])
    assert [bool(i.error) for i in items] == [True, True, False]
    assert service.write(store, dlq, items, threading.Event(), first_delay_s=0)
    assert [json.loads(v)["error_code"] for _, v in dlq.sent] == ["undecodable_record"] * 2
    assert [r["entry_id"] for r in store.rows] == ["le-2"]


def test_a_huge_undecodable_record_still_fits_in_its_dead_letter():
    store, dlq = Store(), Dlq()
    items = service.decode([Msg(0, b"\xff" * 950_000)])
    assert service.write(store, dlq, items, threading.Event(), first_delay_s=0)
    (_, value), = dlq.sent
    assert len(value) < 600_000


def test_a_dead_letter_kafka_refuses_is_backpressure_not_a_silent_loss():
    stop = threading.Event()
    store, dlq = Store(stop=stop), Dlq(fail="MSG_SIZE_TOO_LARGE")
    items = service.decode([Msg(0, entry(0, "oops"))])
    calls = {"n": 0}
    original = dlq.flush

    def flush(timeout):
        calls["n"] += 1
        if calls["n"] >= 3:
            stop.set()
        return original(timeout)

    dlq.flush = flush
    assert service.write(store, dlq, items, stop, first_delay_s=0) is False  # never committed
