"""The money stages' logic (streams.money) over partition state, fed records the way
the transactional loop feeds them. The same stages run on the real broker in
tests/integration/test_money_loops.py (transactions, restores, kills)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import first_problem
from schemas.batches import BATCH_MAX_ENTRIES, items
from streams.balances import PayoutPolicy
from streams.money import REJECTED, AccrueStage, BalancesStage
from tributary.state import DictBackend, Expiry, PartitionState
from tributary.topics import Topic

FREE = PayoutPolicy(min_payout_micros=1_000_000, fee_fixed_micros=0, fee_bps=0, max_fee_bps=10_000)


@dataclass
class Msg:
    """The parts of a confluent_kafka.Message the stages read."""

    _topic: str
    _value: bytes
    _offset: int = 0
    _key: bytes | None = None

    def key(self) -> bytes | None:
        return self._key

    def topic(self) -> str:
        return self._topic

    def value(self) -> bytes:
        return self._value

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


def attribution(event_id: str, pool: int, shares: list[tuple[str, str, int]], day: int = 20) -> Msg:
    value = {
        "schema_version": 1, "attribution_id": f"at_{event_id}", "event_id": event_id, "provider": "acme",
        "occurred_at": f"2026-11-{day:02d}T00:00:00Z",
        "contract": {"contract_id": "standard-2026", "version": 1, "royalty_rate_bps": 2000, "currency": "USD"},
        "pool_micros": pool, "unattributed_ppm": 0, "evidence": {},
        "shares_ppm": [{"work_id": w, "holder_id": h, "share_ppm": ppm} for h, w, ppm in shares],
    }
    return Msg(Topic.ATTRIBUTIONS.value, json.dumps(value).encode())


def refund(event_id: str) -> Msg:
    value = {"schema_version": 1, "kind": "refund", "correction_id": f"rf_{event_id}", "event_id": event_id,
             "provider": "acme", "reason": "chargeback", "occurred_at": "2026-11-21T00:00:00Z",
             "source": {"topic": "inference-events", "partition": 0, "offset": 1}}
    return Msg(Topic.CORRECTIONS.value, json.dumps(value).encode())


def post(stage: AccrueStage, state: PartitionState, msgs: list[Msg]) -> list[dict]:
    """One transaction of accrue: its ledger entries, batch records opened."""
    for msg in msgs:
        assert stage.handle(msg, state) == []  # entries are posted at the end of the batch
    out = []
    for record in (json.loads(o.value) for o in stage.end_batch(state)):
        out += items(record, "entries") or [record]
    return out


def test_accrue_posts_entries_keyed_by_holder_that_sum_to_the_pool_once():
    stage, state = AccrueStage(30 * 86_400), PartitionState(0, DictBackend())
    entries = post(stage, state, [attribution("e1", 1001, [("h1", "w1", 500_000), ("h2", "w2", 250_000)])])
    assert sum(e["amount_micros"] for e in entries) == 1001
    assert post(stage, state, [attribution("e1", 1001, [("h1", "w1", 500_000)])]) == []  # again: nothing


def test_accrue_posts_one_record_per_holder_per_transaction():
    """A thousand events make a few records per holder, each a ledger-batch.v1 of that
    holder's entries in posting order (or the entry itself when alone), keyed by holder."""
    stage, state = AccrueStage(30 * 86_400), PartitionState(0, DictBackend())
    for n in range(300):
        shares = [("h1", "w1", 500_000)] + ([("h2", "w2", 250_000)] if n % 2 else []) + (
            [("h3", "w3", 100_000)] if n == 7 else [])
        assert stage.handle(attribution(f"e{n}", 1000 + n, shares), state) == []
    out = stage.end_batch(state)
    records = {o.key: json.loads(o.value) for o in out}
    assert {o.topic for o in out} == {Topic.ROYALTY_LEDGER.value} and len(out) == len(records) == 4
    assert records[b"h3"]["entry_type"] == "accrual"  # alone: the entry itself
    for key in (b"h1", b"h2", b"escrow:unattributed"):
        record = records[key]
        assert first_problem("ledger-batch.v1", record) is None and record["kind"] == "batch"
        assert {e["holder_id"].encode() for e in record["entries"]} == {key}
        assert [e["event_id"] for e in record["entries"]] == sorted(
            (e["event_id"] for e in record["entries"]), key=lambda i: int(i[1:]))  # posting order
    assert len(records[b"h1"]["entries"]) == 300 and len(records[b"h2"]["entries"]) == 150
    assert stage.end_batch(state) == []  # posted once


def test_a_holders_batch_is_split_at_the_schemas_limit():
    stage, state = AccrueStage(30 * 86_400), PartitionState(0, DictBackend())
    for n in range(BATCH_MAX_ENTRIES + 20):
        stage.handle(attribution(f"e{n}", 100, [("h1", "w1", 1_000_000)]), state)
    sizes = sorted(len(json.loads(o.value).get("entries", [1])) for o in stage.end_batch(state) if o.key == b"h1")
    assert sizes == [20, BATCH_MAX_ENTRIES]


def test_balances_reads_batch_records_entry_by_entry():
    accrue, balances = AccrueStage(30 * 86_400), BalancesStage(FREE)
    astate, bstate = PartitionState(0, DictBackend()), PartitionState(0, DictBackend())
    for n in range(5):
        accrue.handle(attribution(f"e{n}", 500_000, [("h1", "w1", 1_000_000)]), astate)
    [record] = [o for o in accrue.end_batch(astate) if o.key == b"h1"]
    out = balances.handle(Msg(Topic.ROYALTY_LEDGER.value, record.value, 0, b"h1"), bstate)
    balances.end_batch(bstate)
    requests = [json.loads(o.value) for o in out if o.topic == Topic.PAYOUT_REQUESTS.value]
    # applied one by one: the threshold is crossed at the second entry, then at the fourth
    assert [r["amount_micros"] for r in requests] == [1_000_000, 1_000_000]
    assert bstate.get("h:USD:h1")["accrued_micros"] == 2_500_000


def test_accrue_skips_an_invalid_record_and_goes_on():
    stage, state = AccrueStage(30 * 86_400), PartitionState(0, DictBackend())
    entries = post(stage, state, [Msg(Topic.ATTRIBUTIONS.value, b"not json"),
                                  Msg(Topic.CORRECTIONS.value, b'{"kind": "refund"}'),  # fails correction.v1
                                  attribution("e2", 10, [("h1", "w1", 1_000_000)])])
    assert sorted((e["holder_id"], e["amount_micros"]) for e in entries) == [("escrow:unattributed", 0), ("h1", 10)]


def test_accrue_skips_a_record_the_ledger_cannot_post_and_leaves_no_state_for_it():
    """An attribution whose accounts fall outside the chart (an empty provider makes
    'provider::royalty_liability') is skipped with its reason, not retried forever, and
    leaves nothing behind: the same event attributed correctly later is posted."""
    stage, state = AccrueStage(30 * 86_400), PartitionState(0, DictBackend())
    bad = json.loads(attribution("e3", 100, [("h1", "w1", 1_000_000)]).value())
    bad["provider"] = ""
    before = REJECTED.labels("accrue", "unpostable")._value.get()
    assert post(stage, state, [Msg(Topic.ATTRIBUTIONS.value, json.dumps(bad).encode()),
                               attribution("e4", 50, [("h1", "w1", 1_000_000)])]) != []
    assert REJECTED.labels("accrue", "unpostable")._value.get() == before + 1
    assert "ac:e3" not in state
    assert sum(e["amount_micros"] for e in post(stage, state, [attribution("e3", 100, [("h1", "w1", 1_000_000)])])) == 100


def test_accrual_records_of_every_partition_of_a_batch_are_tracked_for_expiry():
    stage = AccrueStage(2 * 86_400)
    stage.expiry = Expiry(2 * 86_400, bucket_s=3_600)
    states = [PartitionState(p, DictBackend()) for p in (0, 1)]
    for p, state in enumerate(states):
        stage.handle(attribution(f"old{p}", 100, [("h1", "w1", 1_000_000)], day=1), state)
    for state in states:
        stage.end_batch(state)
    for p, state in enumerate(states):
        post(stage, state, [attribution(f"new{p}", 100, [("h1", "w1", 1_000_000)], day=10)])
    assert all(f"ac:old{p}" not in state for p, state in enumerate(states))  # both expired, not only partition 0


def test_accrual_records_expire_after_the_refund_window_and_a_late_refund_reverses_nothing():
    stage, state = AccrueStage(2 * 86_400), PartitionState(0, DictBackend())
    stage.expiry = Expiry(2 * 86_400, bucket_s=3_600)
    post(stage, state, [attribution("old", 100, [("h1", "w1", 1_000_000)], day=1)])
    post(stage, state, [attribution("new", 100, [("h1", "w1", 1_000_000)], day=10)])
    assert "ac:old" not in state and "ac:new" in state
    reversals = post(stage, state, [refund("old"), refund("new")])
    assert {r["event_id"] for r in reversals} == {"new"}  # no record of "old" left: nothing to reverse
    assert {r["entry_type"] for r in reversals} == {"accrual_reversal"}
    assert sum(r["amount_micros"] for r in reversals) == 100


def test_expiry_drops_a_few_lists_per_batch_and_never_the_recent_ones():
    state = PartitionState(0, DictBackend())
    expiry = Expiry(horizon_s=10, bucket_s=1, per_batch=2)
    for t in range(5):
        for k in range(3):  # three batches per second of event time
            key = f"k{t}-{k}"
            state[key] = 1
            expiry.track(state, [(key, float(t))])
    state["late"] = 1
    expiry.track(state, [("late", 100.0)])  # everything before 90 is due, two lists per batch
    left = sum(1 for t in range(5) for k in range(3) if f"k{t}-{k}" in state)
    assert left == 15 - 2
    for _ in range(10):
        expiry.track(state, [])
    assert not any(f"k{t}-{k}" in state for t in range(5) for k in range(3)) and "late" in state
    assert state.get("xb") == [100]


def test_balances_requests_a_payout_once_and_never_pays_escrow():
    stage, state = BalancesStage(FREE), PartitionState(0, DictBackend())
    entry = {"entry_id": "le_1", "entry_type": "accrual", "amount_micros": 5_000_000, "currency": "USD",
             "holder_id": "h1", "created_at": "2026-11-20T00:00:00+00:00"}
    escrow = {**entry, "entry_id": "le_2", "holder_id": "escrow:unattributed"}
    [out, reserved] = stage.handle(Msg(Topic.ROYALTY_LEDGER.value, json.dumps(entry).encode()), state)
    assert stage.handle(Msg(Topic.ROYALTY_LEDGER.value, json.dumps(escrow).encode()), state) == []
    # keyed by holder_id as accrue writes it: skipped before decoding
    assert stage.handle(Msg(Topic.ROYALTY_LEDGER.value, json.dumps(escrow).encode(), 1, b"escrow:unattributed"),
                        state) == []
    stage.end_batch(state)
    request = json.loads(out.value)
    assert out.topic == Topic.PAYOUT_REQUESTS.value and out.key == b"h1" and request["amount_micros"] == 5_000_000
    assert state.get("h:USD:h1")["reserved_micros"] == 5_000_000 and state.get("h:USD:escrow:unattributed") is None
    # the request's reservation, in the same transaction: payable -> reserved, naming the payout
    entry_out = json.loads(reserved.value)
    assert (reserved.topic, reserved.key) == (Topic.ROYALTY_LEDGER.value, b"h1")
    assert (entry_out["entry_type"], entry_out["debit_account"], entry_out["credit_account"],
            entry_out["amount_micros"], entry_out["payout_id"]) == (
        "reservation", "holder:h1:payable", "holder:h1:reserved", 5_000_000, request["payout_id"])
    # read back from the ledger, it changes nothing
    assert stage.handle(Msg(Topic.ROYALTY_LEDGER.value, reserved.value, 0, b"h1"), state) == []
    stage.end_batch(state)
    assert state.get("h:USD:h1")["reserved_micros"] == 5_000_000


def test_policies_are_stored_beside_the_balances_and_invalid_ones_ignored():
    stage, state = BalancesStage(FREE), PartitionState(0, DictBackend())
    good = {"schema_version": 1, "holder_id": "h-pol", "min_payout_micros": 5_000_000, "min_interval_s": 86_400}
    for value in (json.dumps(good).encode(), b'{"schema_version": 1, "holder_id": "h-bad", "min_payout_micros": -1}',
                  b"not json"):
        assert stage.handle(Msg(Topic.HOLDER_POLICIES.value, value), state) == []
    policy = stage.book.policy(state, "h-pol")
    assert policy.min_payout_micros == 5_000_000 and policy.fee_fixed_micros == FREE.fee_fixed_micros
    assert state.get("pol:h-bad") is None


events = st.lists(st.tuples(st.sampled_from(["e1", "e2", "e3", "e4"]), st.integers(0, 10**7),
                            st.sampled_from(["attribution", "attribution", "refund"])), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(spec=events, cuts=st.lists(st.integers(1, 10), max_size=5), crashes=st.sets(st.integers(0, 6)))
def test_accrue_posts_every_entry_once_whatever_the_batches_and_the_crashes(spec, cuts, crashes):
    """Each entry once, every event conserved (refunded events net to zero), however the
    input is cut into transactions and whichever abort before their commit."""
    msgs = [attribution(e, pool, [("h1", "w1", 600_000), ("h2", "w2", 100_000)]) if kind == "attribution"
            else refund(e) for e, pool, kind in spec]
    backend = DictBackend()
    stage, state = AccrueStage(30 * 86_400), PartitionState(0, backend)
    posted: list[dict] = []
    start = n = 0
    for cut in [*cuts, len(msgs)]:
        batch = msgs[start:start + cut]
        if not batch:
            break
        for attempt in ("abort", "commit") if n in crashes else ("commit",):
            out = post(stage, state, batch)
            if attempt == "abort":
                state.rollback()
            else:
                state.commit()
                posted += out
        start, n = start + cut, n + 1
    ids = [e["entry_id"] for e in posted]
    assert len(ids) == len(set(ids))
    first_pool = {}
    for e, pool, kind in spec:
        if kind == "attribution":
            first_pool.setdefault(e, pool)
    refunded = {e for e, _, kind in spec if kind == "refund"}
    for event_id, pool in first_pool.items():
        net = sum(p["amount_micros"] * (1 if p["entry_type"] == "accrual" else -1)
                  for p in posted if p["event_id"] == event_id)
        assert net == (0 if event_id in refunded else pool)
