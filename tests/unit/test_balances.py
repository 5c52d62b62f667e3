"""Balances: payout policy, idempotent replay, and exactness under a crash at any
write (a crash keeps a prefix of the table's changelog writes)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import first_problem
from streams.accrual import payout_entry
from streams.balances import BalanceBook, HolderBalance, PayoutPolicy

FREE = PayoutPolicy(min_payout_micros=1_000_000, fee_fixed_micros=0, fee_bps=0, max_fee_bps=10_000)
T0 = datetime(2026, 11, 20, tzinfo=UTC)


def entry(entry_id: str, amount: int, holder: str = "h1", kind: str = "accrual", minute: int = 0, **extra):
    return {"entry_id": entry_id, "entry_type": kind, "amount_micros": amount, "currency": "USD",
            "holder_id": holder, "created_at": (T0 + timedelta(minutes=minute)).isoformat(), **extra}


class RecordingTable(dict):
    """A dict that logs writes in order, like a Faust table's changelog."""

    def __init__(self):
        super().__init__()
        self.log: list[tuple[str, str, object]] = []

    def __setitem__(self, key, value):
        self.log.append(("set", key, copy.deepcopy(value)))
        super().__setitem__(key, value)

    def pop(self, key, default=None):
        if key in self:
            self.log.append(("del", key, None))
        return super().pop(key, default)


def restore(log) -> dict:
    table: dict = {}
    for op, key, value in log:
        if op == "set":
            table[key] = copy.deepcopy(value)
        else:
            table.pop(key, None)
    return table


def run(book: BalanceBook, entries, start: int = 0) -> list[dict]:
    sent = []
    for offset in range(start, len(entries)):
        sent += book.apply(entries[offset], 0, offset)
    return sent


def holder_view(book: BalanceBook) -> dict:
    return {h: (s.accrued_micros, s.reserved_micros, s.paid_micros, s.payout_sequence)
            for h, s in book._states.items()}


def test_policy_minimum_fee_share_cadence_and_pause():
    policy = PayoutPolicy(min_payout_micros=1_000_000, fee_fixed_micros=250_000, fee_bps=25,
                          max_fee_bps=1_000, min_interval_s=3600)
    assert policy.blocked(900_000, None) == "below the minimum payout"
    # $2.00: fee 0.255 = 12.75% > 10%
    assert policy.blocked(2_000_000, None) == "estimated fees exceed the allowed share"
    assert policy.blocked(3_000_000, None) is None  # fee 0.2575 = 8.6%
    assert policy.blocked(3_000_000, 60.0) == "cadence: too soon after the last payout"
    assert PayoutPolicy(paused=True).blocked(10**9, None) == "payouts paused for this holder"
    assert policy.estimated_fee(1) == 250_001  # fee rounds up: never under-estimated


def test_threshold_whole_cents_and_sub_cent_remainder():
    book = BalanceBook({}, FREE)
    book.rebuild()
    assert book.apply(entry("e1", 600_000), 0, 0) == []
    [request] = book.apply(entry("e2", 634_567), 0, 1)
    assert request["amount_micros"] == 1_230_000 and request["balance_after_micros"] == 4_567
    assert first_problem("payout-request.v1", request) is None
    assert book.state("h1").unpaid_micros == 4_567


def test_cadence_uses_ledger_time_not_the_wall_clock():
    book = BalanceBook({}, PayoutPolicy(min_payout_micros=100_000, fee_fixed_micros=0, fee_bps=0,
                                        max_fee_bps=10_000, min_interval_s=3600))
    book.rebuild()
    assert len(book.apply(entry("e1", 200_000, minute=0), 0, 0)) == 1
    assert book.apply(entry("e2", 200_000, minute=30), 0, 1) == []  # 30 min later: held
    [late] = book.apply(entry("e3", 1, minute=61), 0, 2)
    assert late["amount_micros"] == 200_000  # what accrued since; the extra micro stays


def test_duplicates_never_count_twice_and_replays_resend_the_same_request():
    book = BalanceBook({}, FREE)
    book.rebuild()
    [first] = book.apply(entry("e1", 1_500_000), 0, 0)
    assert book.apply(entry("e1", 1_500_000), 0, 7) == [first]  # a duplicate, later in the log
    assert book.state("h1").accrued_micros == 1_500_000


def test_failed_payout_is_returned_and_paid_again():
    book = BalanceBook({}, FREE)
    book.rebuild()
    [request] = book.apply(entry("e1", 2_000_000), 0, 0)
    reversal = payout_entry({"payout_id": request["payout_id"], "holder_id": "h1", "status": "failed",
                             "amount_micros": request["amount_micros"]}, "USD", T0.isoformat())
    assert first_problem("ledger-entry.v1", reversal) is None
    assert book.apply(reversal, 0, 1) == []  # not at once: see the retry_failed_after_s test below
    [retry] = book.apply(entry("e2", 1, minute=24 * 60 + 1), 0, 2)
    assert retry["payout_id"] != request["payout_id"] and retry["amount_micros"] == 2_000_000


def test_paid_payout_moves_payable_to_paid_and_is_no_longer_pending():
    table: dict = {}
    book = BalanceBook(table, FREE)
    book.rebuild()
    [request] = book.apply(entry("e1", 1_500_000), 0, 0)
    paid = payout_entry({"payout_id": request["payout_id"], "holder_id": "h1", "status": "paid",
                         "amount_micros": request["amount_micros"], "transfer_id": "tr_1"}, "USD", T0.isoformat())
    assert (paid["debit_account"], paid["credit_account"]) == ("holder:h1:payable", "holder:h1:paid")
    assert book.apply(paid, 0, 1) == []
    assert book.state("h1").paid_micros == 1_500_000
    assert BalanceBook(table, FREE).rebuild() == []  # nothing pending after a restart


def test_unfinished_payouts_are_resent_after_a_restart():
    table: dict = {}
    book = BalanceBook(table, FREE)
    book.rebuild()
    [request] = book.apply(entry("e1", 1_500_000), 0, 0)
    assert BalanceBook(table, FREE).rebuild() == [request]


def test_marks_older_than_the_window_are_evicted():
    table: dict = {}
    book = BalanceBook(table, FREE, dedupe_window=10)
    book.rebuild()
    for offset in range(30):
        book.apply(entry(f"e{offset}", 1), 0, offset)
    marks = sorted(int(k[3:]) for k in table if k.startswith("e:"))
    assert marks == list(range(19, 30))
    assert book.state("h1").accrued_micros == 30


ledger_streams = st.lists(
    st.tuples(st.sampled_from(["h1", "h2", "h3"]), st.integers(min_value=0, max_value=900_000),
              st.booleans()),
    min_size=1, max_size=40)


def build_ledger(spec) -> list[dict]:
    entries = []
    for i, (holder, amount, duplicate) in enumerate(spec):
        if duplicate and entries:
            entries.append(copy.deepcopy(entries[i % len(entries)]))  # an upstream replay
        else:
            entries.append(entry(f"e{i}", amount, holder, minute=i))
    return entries


@settings(max_examples=300, deadline=None)
@given(spec=ledger_streams, crash=st.floats(min_value=0, max_value=1), resume=st.floats(min_value=0, max_value=1))
def test_exact_after_a_crash_at_any_write_and_a_replay(spec, crash, resume):
    entries = build_ledger(spec)
    reference = BalanceBook({}, FREE)
    reference.rebuild()
    reference_sent = run(reference, entries)

    table = RecordingTable()
    first = BalanceBook(table, FREE)
    first.rebuild()
    sent = run(first, entries)
    # crash: the changelog kept a prefix of the writes; offsets were committed up to some
    # point at or before the entry being processed when the crash happened
    kept = table.log[: int(len(table.log) * crash)]
    last_offset = max((v["o"] for op, k, v in kept if op == "set" and k.startswith("e:")), default=-1)
    committed = int((last_offset + 1) * resume)
    recovered = BalanceBook(restore(kept), FREE)
    sent_after = recovered.rebuild() + run(recovered, entries, start=committed)

    assert holder_view(recovered) == holder_view(reference)
    by_id = {r["payout_id"]: r["amount_micros"] for r in reference_sent}
    emitted = {r["payout_id"]: r["amount_micros"] for r in sent + sent_after}
    assert emitted == by_id  # the same payouts, same amounts, whatever was repeated
    for holder, state in reference._states.items():
        assert state.accrued_micros == sum(e["amount_micros"] for e in
                                           {e["entry_id"]: e for e in entries}.values() if e["holder_id"] == holder)


def test_state_round_trips_through_json():
    state = HolderBalance("h1", accrued_micros=5, upto=3)
    assert HolderBalance.from_json(state.to_json()) == state


def test_a_permanently_failed_payout_is_not_retried_on_every_accrual():
    from streams.balances import BalanceBook, PayoutPolicy

    book = BalanceBook({}, default_policy=PayoutPolicy(min_payout_micros=1_000_000, fee_fixed_micros=0,
                                                       retry_failed_after_s=3_600))
    book.rebuild()

    def entry(n, kind, amount, at, payout_id=None):
        return {"entry_id": f"e{n}", "holder_id": "h1", "entry_type": kind, "amount_micros": amount,
                "currency": "USD", "created_at": at, "payout_id": payout_id}

    [first] = book.apply(entry(1, "accrual", 1_500_000, "2026-11-20T10:00:00+00:00"), 0, 1)
    # Stripe refused it (restricted account): the amount comes back, no new request at once
    assert book.apply(entry(2, "payout_reversal", first["amount_micros"], "2026-11-20T10:00:05+00:00",
                            first["payout_id"]), 0, 2) == []
    assert book.apply(entry(3, "accrual", 10_000, "2026-11-20T10:30:00+00:00"), 0, 3) == []
    # an hour of ledger time later the holder is tried again, for the whole unpaid balance
    [second] = book.apply(entry(4, "accrual", 10_000, "2026-11-20T11:00:06+00:00"), 0, 4)
    assert second["amount_micros"] == 1_520_000 and second["payout_id"] != first["payout_id"]
    # the same state after a crash: rebuilt from the table, the failure time is kept
    again = BalanceBook(book.table, default_policy=book.default_policy)
    again.rebuild()
    assert again.state("h1").last_failure_at == "2026-11-20T10:00:05+00:00"
    assert again.state("h1").reserved_micros == 1_520_000


def test_a_failed_table_write_leaves_no_phantom_reservation():
    """A table write that raises half-way through an entry (Faust did, on a changelog whose
    partitions its metadata did not know yet) must not leave the in-memory balance with a
    reservation the table never recorded: the book is rebuilt from the table first."""
    from streams.balances import BalanceBook, PayoutPolicy

    class Flaky(dict):
        fail = True

        def __setitem__(self, key, value):
            if self.fail and key.startswith("p:"):
                raise RuntimeError("changelog write failed")
            super().__setitem__(key, value)

    table = Flaky()
    book = BalanceBook(table, default_policy=PayoutPolicy(min_payout_micros=1_000_000, fee_fixed_micros=0))
    book.rebuild()
    entry = {"entry_id": "e1", "holder_id": "h1", "entry_type": "accrual", "amount_micros": 1_500_000,
             "currency": "USD", "created_at": "2026-11-20T10:00:00+00:00"}
    with pytest.raises(RuntimeError):
        book.apply(entry, 0, 7)
    assert book.needs_rebuild
    table.fail = False
    book.rebuild()
    [request] = book.apply(entry, 0, 7)  # the redelivered entry: counted once, paid once
    assert request["amount_micros"] == 1_500_000 and request["sequence"] == 0
    assert book.state("h1").accrued_micros == 1_500_000
