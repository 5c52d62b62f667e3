"""Ingest dedupe window, late and future events, refunds; accrual records and reversals."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from schemas import first_problem
from streams.accrual import AccrualBook
from streams.contracts import ContractBook
from streams.ingest import IngestBook, Source, home_partition
from tributary.state import DictBackend, PartitionState

BOOK = ContractBook.load()
T0 = datetime(2026, 11, 20, tzinfo=UTC)


def event(event_id: str, at: datetime = T0, **extra) -> bytes:
    return json.dumps({
        "schema_version": 1, "event_id": event_id, "occurred_at": at.isoformat(), "provider": "acme",
        "model": {"name": "m", "revision": "r"}, "contract_id": "standard-2026",
        "billing": {"revenue_micros": 100_000}, "output": {"text": "hello there"}, **extra}).encode()


def refund(event_id: str, refund_id: str = "rf-1") -> bytes:
    return json.dumps({"schema_version": 1, "kind": "refund", "refund_id": refund_id, "event_id": event_id,
                       "occurred_at": T0.isoformat(), "provider": "acme", "reason": "chargeback"}).encode()


def src(offset: int, partition: int = 0) -> Source:
    return Source("inference-events", partition, offset)


def fresh(**kwargs) -> IngestBook:
    book = IngestBook({}, BOOK, **kwargs)
    book.rebuild()
    return book


def test_redelivery_is_processed_again_but_a_copy_is_a_duplicate():
    book = fresh()
    first = book.handle(event("e1"), src(0), T0)
    assert first.request is not None
    again = book.handle(event("e1"), src(0), T0)  # the same message after a crash
    assert again.request == first.request
    copy = book.handle(event("e1"), src(5), T0)
    assert copy.rejection.code == "duplicate_event_id" and "offset 0" in copy.rejection.reason


def test_marks_expire_and_events_older_than_the_window_are_late():
    book = fresh(window_s=3600)
    book.handle(event("old", T0), src(0), T0)
    book.handle(event("new", T0 + timedelta(hours=2)), src(1), T0 + timedelta(hours=2))
    assert "ev:old" not in book.table  # expired: beyond the window
    late = book.handle(event("older", T0 - timedelta(minutes=1)), src(2), T0 + timedelta(hours=2))
    assert late.rejection.code == "late_event" and late.rejection.field == "occurred_at"
    # other partitions keep their own watermark
    assert book.handle(event("p1", T0), src(0, partition=1), T0).request is not None


def test_future_timestamps_are_rejected_against_the_kafka_timestamp():
    decision = fresh().handle(event("e1", T0 + timedelta(hours=3)), src(0), T0)
    assert decision.rejection.code == "occurred_at_in_future"


def test_refunds_need_an_accepted_event_and_happen_once():
    book = fresh()
    assert book.handle(refund("nope"), src(0), T0).rejection.code == "refund_for_unknown_event"
    book.handle(event("e1"), src(1), T0)
    decision = book.handle(refund("e1"), src(2), T0)
    assert decision.correction["correction_id"] == "rf-1" and decision.correction["event_id"] == "e1"
    assert first_problem("correction.v1", decision.correction) is None
    assert book.handle(refund("e1"), src(2), T0).correction == decision.correction  # redelivery
    assert book.handle(refund("e1", "rf-2"), src(3), T0).rejection.code == "duplicate_refund"


def test_rebuild_restores_the_window_from_the_table():
    book = fresh(window_s=3600)
    book.handle(event("a", T0), src(0), T0)
    restarted = IngestBook(book.table, BOOK, window_s=3600)
    restarted.rebuild()
    restarted.handle(event("b", T0 + timedelta(hours=2)), src(1), T0 + timedelta(hours=2))
    assert "ev:a" not in restarted.table


def attribution(event_id: str = "e1", pool: int = 1001) -> dict:
    return {"schema_version": 1, "attribution_id": f"at-{event_id}", "event_id": event_id, "provider": "acme",
            "occurred_at": T0.isoformat(),
            "contract": {"contract_id": "standard-2026", "version": 1, "royalty_rate_bps": 2000, "currency": "USD"},
            "pool_micros": pool, "unattributed_ppm": 400_000, "evidence": {"matches": []},
            "shares_ppm": [{"work_id": "w1", "holder_id": "h1", "share_ppm": 600_000}]}


def correction(event_id: str = "e1", correction_id: str = "rf-1") -> dict:
    return {"schema_version": 1, "kind": "refund", "correction_id": correction_id, "event_id": event_id,
            "provider": "acme", "reason": "chargeback", "occurred_at": T0.isoformat()}


def net(entries: list[dict]) -> dict[str, int]:
    unique = {e["entry_id"]: e for e in entries}.values()
    out: dict[str, int] = {}
    for e in unique:
        sign = -1 if e["entry_type"] == "accrual_reversal" else 1
        out[e["holder_id"]] = out.get(e["holder_id"], 0) + sign * e["amount_micros"]
    return out


@given(refund_first=st.booleans(), replays=st.integers(min_value=0, max_value=3))
def test_a_refund_reverses_the_accrual_exactly_in_either_order(refund_first, replays):
    book, state = AccrualBook(), PartitionState(0, DictBackend())
    sent = []
    steps = [("c", correction()), ("a", attribution())]
    if not refund_first:
        steps.reverse()
    for kind, message in steps + steps[:1] * replays:
        handler = book.on_correction if kind == "c" else book.on_attribution
        sent += handler(state, message, "2026-11-20T01:00:00+00:00")
    assert net(sent) == {"h1": 0, "escrow:unattributed": 0}
    assert len({e["entry_id"] for e in sent}) == len(sent)  # each entry once, repeats add nothing
    assert sum(e["amount_micros"] for e in sent if e["entry_type"] == "accrual") == 1001
    for e in sent:
        assert first_problem("ledger-entry.v1", e) is None


def test_a_second_attribution_of_the_same_event_does_not_accrue_twice():
    book, state = AccrualBook(), PartitionState(0, DictBackend())
    assert book.on_attribution(state, attribution(), "2026-11-20T01:00:00+00:00")
    assert book.on_attribution(state, attribution(), "2026-11-20T09:00:00+00:00") == []  # the same again
    other = {**attribution(), "attribution_id": "at-other"}
    assert book.on_attribution(state, other, "2026-11-20T01:00:00+00:00") == []  # a re-attribution


def test_duplicate_keys_are_rejected_never_interpreted():
    book = fresh()
    raw = event("dup-keys").replace(b'"revenue_micros": 100000', b'"revenue_micros": 25000, "revenue_micros": 25000000')
    decision = book.handle(raw, src(0), T0)
    assert decision.rejection.code == "duplicate_key" and decision.rejection.field == "billing/revenue_micros"
    two_ids = event("first-id").replace(b'"event_id": "first-id"', b'"event_id": "first-id", "event_id": "second"')
    decision = book.handle(two_ids, src(1), T0)
    assert decision.rejection.code == "duplicate_key" and decision.rejection.field == "event_id"
    assert decision.rejection.event_id is None  # which id it is, is exactly what is ambiguous
    assert book.handle(raw, src(2), T0).rejection.event_id == "dup-keys"
    assert book.table == {}  # nothing marked either way


def test_integral_floats_are_not_integers():
    """25000.0 is an "integer" to JSON Schema but not to the ledger's Int64 columns."""
    decision = fresh().handle(event("float-money").replace(b"100000", b"25000.0"), src(0), T0)
    assert decision.rejection.code == "schema_violation"
    assert decision.rejection.field == "billing/revenue_micros"


def test_the_first_copy_in_the_log_wins_and_a_conflicting_copy_names_both_offsets():
    book = fresh()
    assert book.handle(event("c1"), src(3), T0).request["revenue_micros"] == 100_000
    ten_x = event("c1").replace(b"100000", b"1000000")
    conflict = book.handle(ten_x, src(9), T0).rejection
    assert conflict.code == "conflicting_duplicate"
    assert "offset 3" in conflict.reason and "offset 9" in conflict.reason
    same = book.handle(event("c1"), src(12), T0).rejection
    assert same.code == "duplicate_event_id"
    # a restart rebuilds from the table: the same decisions, in the same log order
    again = IngestBook(book.table, BOOK)
    again.rebuild()
    assert again.handle(event("c1"), src(3), T0).request["revenue_micros"] == 100_000
    assert again.handle(ten_x, src(9), T0).rejection.code == "conflicting_duplicate"


def test_a_copy_off_its_home_partition_is_forwarded_there_not_decided():
    from streams.ingest import home_partition

    book = fresh(partitions=4)
    home = home_partition("routed", 4)
    away = (home + 1) % 4
    decision = book.handle(event("routed"), src(0, partition=away), T0)
    assert decision.reroute == home and decision.event_id == "routed" and not book.table
    assert book.handle(event("routed"), src(0, partition=home), T0).request is not None
    # a rejection is dead-lettered wherever it is read
    assert book.handle(b"{oops", src(1, partition=away), T0).rejection.code == "malformed_json"


def test_home_partition_matches_the_sdk_and_kafkas_default_partitioner():
    """The Java murmur2 partitioner (librdkafka's murmur2_random for keyed records)."""
    from streams.ingest import home_partition

    # Kafka's Utils.murmur2 (signed in Java; toPositive masks the sign bit): UtilsTest values
    for key, java in (("21", -973932308), ("foobar", -790332482), ("a-little-bit-long-string", -985981536)):
        for partitions in (1, 3, 4, 12):
            assert home_partition(key, partitions) == (java & 0x7FFFFFFF) % partitions


def test_an_event_whose_derived_records_would_not_fit_in_kafka_is_too_large():
    from streams.ingest import MAX_EVENT_BYTES

    padded = json.loads(event("big"))
    padded["metadata"] = {"pad": "x" * 950_000}
    raw = json.dumps(padded).encode()
    assert len(raw) < 1_000_000  # fits the broker as sent, but not once priced
    assert fresh().handle(raw, src(0), T0).rejection.code == "too_large"
    padded["metadata"] = {"pad": "x" * (MAX_EVENT_BYTES - 1_000)}
    decision = fresh().handle(json.dumps(padded).encode(), src(0), T0)
    assert len(json.dumps(decision.request)) < 1_000_000 - 1_000


def test_forwarding_the_same_producer_message_again_is_a_redelivery_not_a_duplicate():
    """A replay of the partition an unkeyed event was read on forwards it home again, at a
    new offset: the same producer message, so the same decision, and no dead letter."""
    book = fresh()
    first = book.handle(event("fwd"), Source("inference-events", 2, 40, origin="inference-events/0@7"), T0)
    again = book.handle(event("fwd"), Source("inference-events", 2, 95, origin="inference-events/0@7"), T0)
    assert first.request is not None and again.request == first.request
    other = book.handle(event("fwd"), Source("inference-events", 2, 96, origin="inference-events/1@3"), T0)
    assert other.rejection.code == "duplicate_event_id"


def batch(*raws: bytes) -> bytes:
    return b'{"schema_version": 1, "kind": "batch", "events": [' + b", ".join(raws) + b"]}"


def test_a_batch_is_judged_event_by_event_and_a_redelivery_decides_the_same():
    book = fresh()
    record = batch(event("b-1"), event("b-2").replace(b'"revenue_micros": 100000', b'"revenue_micros": -1'),
                   event("b-1"), refund("b-1"))
    first = [(w.identity, d.request is not None, d.rejection and d.rejection.code, d.correction is not None)
             for w, d, _ in book.handle_record(record, src(5), T0)]
    assert first == [("inference-events/0@5#0", True, None, False),
                     ("inference-events/0@5#1", False, "schema_violation", False),
                     ("inference-events/0@5#2", False, "duplicate_event_id", False),
                     ("inference-events/0@5#3", False, None, True)]
    again = [(w.identity, d.request is not None, d.rejection and d.rejection.code, d.correction is not None)
             for w, d, _ in book.handle_record(record, src(5), T0)]
    assert again == first  # the same record read again (a replay): the same decisions, nothing new
    assert book.handle_record(batch(event("b-1")), src(6), T0)[0][1].rejection.code == "duplicate_event_id"


def test_a_batch_event_off_its_home_partition_is_forwarded_alone_and_a_bad_batch_is_one_rejection():
    book = fresh()
    book.partitions = 4
    ids = [f"home-{i}" for i in range(12)]
    away = next(i for i in ids if home_partition(i, 4) != 0)
    at_home = next(i for i in ids if home_partition(i, 4) == 0)
    decisions = book.handle_record(batch(event(at_home), event(away)), src(0), T0)
    assert decisions[0][1].request is not None
    assert decisions[1][1].reroute == home_partition(away, 4) and decisions[1][2]["event_id"] == away
    [(_, whole, _)] = book.handle_record(b'{"schema_version": 1, "kind": "batch", "events": []}', src(1), T0)
    assert whole.rejection.code == "schema_violation"
    dup = batch(event("dk-1"), event("dk-2").replace(b'"revenue_micros": 100000',
                                                     b'"revenue_micros": 1, "revenue_micros": 100000'))
    codes = [(d.rejection and d.rejection.code, d.rejection and d.rejection.field)
             for _, d, _ in book.handle_record(dup, src(2), T0)]
    assert codes == [(None, None), ("duplicate_key", "billing/revenue_micros")]
