"""The ledger module: the chart of accounts, the permitted flows checked on every post,
and the trial balance closing whatever accruals, reviews, refunds, payout requests and
outcomes happen, in whatever order."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import first_problem
from streams.accrual import AccrualBook
from streams.balances import BalanceBook, PayoutPolicy
from tributary import ledger
from tributary.ledger import InvalidEntry, Kind
from tributary.state import DictBackend, PartitionState

T0 = datetime(2026, 11, 20, tzinfo=UTC)
FREE = PayoutPolicy(min_payout_micros=1_000_000, fee_fixed_micros=0, fee_bps=0, max_fee_bps=10_000,
                    retry_failed_after_s=0)
CONTRACT = {"contract_id": "standard-2026", "version": 3, "royalty_rate_bps": 2000, "currency": "USD"}


def request(holder: str = "h1", amount: int = 2_000_000, n: int = 0) -> dict:
    return {"payout_id": f"po_{holder}_{n}", "holder_id": holder, "amount_micros": amount, "currency": "USD",
            "sequence": n, "requested_at": T0.isoformat()}


def test_every_account_name_parses_back_to_its_kind_and_holder():
    assert ledger.account_kind(ledger.provider_liability("acme")) == (Kind.PROVIDER_LIABILITY, None)
    assert ledger.account_kind(ledger.holder_payable("h:1")) == (Kind.HOLDER_PAYABLE, "h:1")
    assert ledger.account_kind(ledger.holder_reserved("h1")) == (Kind.HOLDER_RESERVED, "h1")
    assert ledger.account_kind(ledger.holder_paid("h1")) == (Kind.HOLDER_PAID, "h1")
    assert ledger.account_kind("escrow:unattributed") == (Kind.ESCROW_UNATTRIBUTED, None)
    assert ledger.account_kind("escrow:review") == (Kind.ESCROW_REVIEW, None)
    for bad in ("holder:h1:payout_reserved", "holder::payable", "provider::royalty_liability", "fees", ""):
        with pytest.raises(InvalidEntry, match="chart of accounts"):
            ledger.account_kind(bad)


def test_the_payout_flow_reserve_then_settle():
    r = request()
    reserved = ledger.reservation(r)
    paid = ledger.payout_outcome({**r, "status": "paid", "transfer_id": "tr_1"}, "USD", T0.isoformat())
    failed = ledger.payout_outcome({**r, "status": "failed"}, "USD", T0.isoformat())
    assert (reserved["debit_account"], reserved["credit_account"]) == ("holder:h1:payable", "holder:h1:reserved")
    assert (paid["debit_account"], paid["credit_account"], paid["transfer_id"]) == (
        "holder:h1:reserved", "holder:h1:paid", "tr_1")
    assert (failed["debit_account"], failed["credit_account"]) == ("holder:h1:reserved", "holder:h1:payable")
    assert len({reserved["entry_id"], paid["entry_id"], failed["entry_id"]}) == 3
    for e in (reserved, paid, failed):
        assert first_problem("ledger-entry.v1", e) is None
    # reserve then pay: the payable is where it was before minus the payout, nothing left reserved
    balances = ledger.trial_balance([reserved, paid])
    assert balances[("holder:h1:reserved", "USD")] == 0 and balances[("holder:h1:paid", "USD")] == 2_000_000
    assert ledger.problems(balances, pending={}) == []
    # reserve without an outcome: the reservation is exactly what is pending
    assert ledger.problems(ledger.trial_balance([reserved]), {("h1", "USD"): 2_000_000}) == []
    assert ledger.problems(ledger.trial_balance([reserved]), {}) == [
        "USD holder:h1:reserved: reserved 2000000 but payouts awaiting an outcome total 0"]


def entry(**changes) -> ledger.LedgerEntry:
    base = ledger.reservation(request())
    return {**base, **changes}  # type: ignore[typeddict-item]


@pytest.mark.parametrize("changes,reason", [
    # the shape the old Stripe sink posted: a payout straight from payable, skipping the reservation
    ({"entry_type": "payout", "debit_account": "holder:h1:payable", "credit_account": "holder:h1:paid"},
     "payout may not move money from holder_payable"),
    # a failed payout returned from an account nothing had credited (the old reversal)
    ({"entry_type": "payout_reversal", "debit_account": "holder:h1:payout_reserved"}, "chart of accounts"),
    # escrow is never paid out
    ({"entry_type": "payout", "debit_account": "escrow:unattributed", "credit_account": "holder:h1:paid"},
     "payout may not move money from escrow_unattributed"),
    ({"credit_account": "holder:h2:reserved"}, "account of holder h2 on an entry of holder h1"),
    ({"entry_type": "accrual", "debit_account": "provider:acme:royalty_liability",
      "credit_account": "escrow:unattributed"}, "must name it as its holder_id"),
    ({"entry_type": "refund"}, "unknown entry_type"),
    ({"amount_micros": -1}, "negative"),
])
def test_a_balanced_entry_can_still_be_refused(changes, reason):
    with pytest.raises(InvalidEntry, match=reason):
        ledger.check(entry(**changes))


def test_the_trial_balance_names_what_keeps_it_from_closing():
    wrong_side = {("holder:h1:paid", "EUR"): -7, ("holder:h1:payable", "EUR"): 7}
    assert ledger.problems(wrong_side) == [
        "EUR holder:h1:paid: balance -7 is on the wrong side for a holder_paid account"]
    # a review may take back what was already paid out: the payable goes below zero, legitimately
    assert ledger.problems({("holder:h1:payable", "USD"): -7, ("escrow:unattributed", "USD"): 7}) == []
    assert ledger.problems({}, {("h9", "USD"): 100}) == [
        "USD holder:h9:reserved: payouts of 100 await an outcome but nothing was reserved"]


# --- everything at once: accruals, reviews, refunds, payouts, in any order -----------------

steps = st.lists(st.tuples(
    st.sampled_from(["attribute", "attribute", "attribute", "accept", "reject", "refund", "paid", "failed"]),
    st.integers(min_value=0, max_value=5),  # which event
    st.integers(min_value=0, max_value=3_000_000)), min_size=1, max_size=40)


def attribution(event: int, pool: int) -> dict:
    holders = ["h1", "h2", "h3"]
    return {"attribution_id": f"at-{event}", "event_id": f"ev-{event}", "provider": "acme",
            "occurred_at": T0.isoformat(), "contract": {**CONTRACT, "probable_weight_bps": 5000},
            "pool_micros": pool,
            "shares_ppm": [{"holder_id": holders[event % 3], "work_id": f"w-{event % 3}", "share_ppm": 400_000},
                           {"holder_id": holders[(event + 1) % 3], "work_id": f"w-p{event}", "share_ppm": 300_000,
                            "tier": "probable"}]}


@settings(max_examples=200, deadline=None)
@given(script=steps)
def test_the_trial_balance_closes_after_any_sequence(script):
    """Accrue and balances as the pipeline runs them (balances reads every entry, its own
    reservations included); the Stripe sink settles pending payouts as paid or failed.
    After every step: every entry is a permitted flow, each event nets to its pool, and
    the trial balance closes with the reserved accounts equal to the pending payouts."""
    accrue_state, balance_state = PartitionState(0, DictBackend()), PartitionState(0, DictBackend())
    accruals, balances = AccrualBook(), BalanceBook(FREE)
    journal: list[ledger.LedgerEntry] = []
    pending: dict[str, dict] = {}
    pools: dict[str, int] = {}

    def post(entries: list[ledger.LedgerEntry]) -> None:
        for e in entries:
            journal.append(ledger.check(e))
            for r in balances.apply(balance_state, e):
                pending[r["payout_id"]] = r
                post([ledger.reservation(r)])

    for i, (kind, event, amount) in enumerate(script):
        now = (T0 + timedelta(minutes=i)).isoformat()
        correction = {"correction_id": f"c-{i}", "event_id": f"ev-{event}", "occurred_at": now}
        if kind == "attribute":
            if f"ev-{event}" not in pools:
                pools[f"ev-{event}"] = amount
            post(accruals.on_attribution(accrue_state, attribution(event, amount), now))
        elif kind in ("accept", "reject"):
            post(accruals.on_correction(accrue_state, {**correction, "kind": "review", "work_id": f"w-p{event}",
                                                       "decision": kind}, now))
        elif kind == "refund":
            post(accruals.on_correction(accrue_state, {**correction, "kind": "refund"}, now))
        elif pending:
            r = pending.pop(sorted(pending)[amount % len(pending)])
            post([ledger.payout_outcome({**r, "status": kind, "transfer_id": "tr"}, "USD", now)])
        balances.flush()
        waiting: dict[tuple[str, str], int] = defaultdict(int)
        for r in pending.values():
            waiting[(r["holder_id"], r["currency"])] += r["amount_micros"]
        assert ledger.problems(ledger.trial_balance(journal), waiting) == []
    # each event's accruals net to its pool (zero once refunded) on the provider's liability
    net: dict[str, int] = defaultdict(int)
    for e in journal:
        if e["event_id"]:
            net[e["event_id"]] += e["amount_micros"] if e["entry_type"] == "accrual" else -e["amount_micros"]
    refunded = {f"ev-{ev}" for k, ev, _ in script if k == "refund"}
    assert dict(net) == {ev: (0 if ev in refunded else pool) for ev, pool in pools.items()}
    # the balances stage's view equals the ledger's projection
    tb = ledger.trial_balance(journal)
    for holder in ("h1", "h2", "h3"):
        b = balances.balance(balance_state, holder)
        assert tb.get((ledger.holder_paid(holder), "USD"), 0) == b.paid_micros
        assert tb.get((ledger.holder_payable(holder), "USD"), 0) == b.accrued_micros - b.reserved_micros
        assert tb.get((ledger.holder_reserved(holder), "USD"), 0) == b.reserved_micros - b.paid_micros
