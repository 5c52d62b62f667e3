"""Balances: payout policy, payout outcomes settled once, and exactness however the
ledger is cut into transactions and whichever of them crash before committing."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import first_problem
from streams.balances import BalanceBook, HolderBalance, PayoutPolicy
from tributary.ledger import payout_outcome
from tributary.state import DictBackend, PartitionState

FREE = PayoutPolicy(min_payout_micros=1_000_000, fee_fixed_micros=0, fee_bps=0, max_fee_bps=10_000)
T0 = datetime(2026, 11, 20, tzinfo=UTC)


def entry(entry_id: str, amount: int, holder: str = "h1", kind: str = "accrual", minute: int = 0, **extra):
    return {"entry_id": entry_id, "entry_type": kind, "amount_micros": amount, "currency": "USD",
            "holder_id": holder, "created_at": (T0 + timedelta(minutes=minute)).isoformat(), **extra}


def partition() -> PartitionState:
    return PartitionState(0, DictBackend())


class Committed:
    """The balances stage over one partition the way the transactional loop runs it:
    each batch's state changes and payout requests commit together, or (a crash) not at
    all, and the batch is read again by a fresh process from the committed state."""

    def __init__(self, policy: PayoutPolicy = FREE):
        self.policy = policy
        self.backend = DictBackend()
        self.sent: list[dict] = []
        self.restart()

    def restart(self) -> None:
        """A new process: nothing in memory but what it reads from the committed state."""
        self.book, self.state = BalanceBook(self.policy), PartitionState(0, self.backend)

    def batch(self, entries: list[dict], crash: bool = False) -> list[dict]:
        """``crash``: the transaction aborts (the same process reads the batch again)."""
        book, state = self.book, self.state
        out = [r for e in entries for r in book.apply(state, e)]
        book.flush()
        if crash:
            state.rollback()
            return []
        state.commit()
        self.sent += out
        return out

    def balance(self, holder: str = "h1") -> HolderBalance:
        return HolderBalance.from_json(PartitionState(0, self.backend).get(f"h:USD:{holder}"))


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
    book, state = BalanceBook(FREE), partition()
    assert book.apply(state, entry("e1", 600_000)) == []
    [request] = book.apply(state, entry("e2", 634_567))
    assert request["amount_micros"] == 1_230_000 and request["balance_after_micros"] == 4_567
    assert first_problem("payout-request.v1", request) is None
    assert book.balance(state, "h1").unpaid_micros == 4_567


def test_cadence_uses_ledger_time_not_the_wall_clock():
    book, state = BalanceBook(PayoutPolicy(min_payout_micros=100_000, fee_fixed_micros=0, fee_bps=0,
                                           max_fee_bps=10_000, min_interval_s=3600)), partition()
    assert len(book.apply(state, entry("e1", 200_000, minute=0))) == 1
    assert book.apply(state, entry("e2", 200_000, minute=30)) == []  # 30 min later: held
    [late] = book.apply(state, entry("e3", 1, minute=61))
    assert late["amount_micros"] == 200_000  # what accrued since; the extra micro stays


def test_a_repeated_payout_outcome_counts_once():
    """The Stripe sink may write an outcome twice after a crash: only a pending payout settles."""
    book, state = BalanceBook(FREE), partition()
    [request] = book.apply(state, entry("e1", 1_500_000))
    paid = payout_outcome({"payout_id": request["payout_id"], "holder_id": "h1", "status": "paid",
                         "amount_micros": request["amount_micros"], "transfer_id": "tr_1"}, "USD", T0.isoformat())
    assert book.apply(state, paid) == [] and book.apply(state, paid) == []
    assert book.balance(state, "h1").paid_micros == 1_500_000
    assert f"p:{request['payout_id']}" not in state  # settled: no longer pending


def test_failed_payout_is_returned_and_paid_again():
    book, state = BalanceBook(FREE), partition()
    [request] = book.apply(state, entry("e1", 2_000_000))
    reversal = payout_outcome({"payout_id": request["payout_id"], "holder_id": "h1", "status": "failed",
                             "amount_micros": request["amount_micros"]}, "USD", T0.isoformat())
    assert first_problem("ledger-entry.v1", reversal) is None
    assert book.apply(state, reversal) == []  # not at once: see the retry_failed_after_s test below
    assert book.apply(state, reversal) == []  # a repeat returns nothing twice
    assert book.balance(state, "h1").reserved_micros == 0
    [retry] = book.apply(state, entry("e2", 1, minute=24 * 60 + 1))
    assert retry["payout_id"] != request["payout_id"] and retry["amount_micros"] == 2_000_000


def test_a_payout_outcome_settles_the_reservation():
    paid = payout_outcome({"payout_id": "po_1", "holder_id": "h1", "status": "paid", "amount_micros": 5,
                           "transfer_id": "tr_1"}, "USD", T0.isoformat())
    assert (paid["debit_account"], paid["credit_account"]) == ("holder:h1:reserved", "holder:h1:paid")
    failed = payout_outcome({"payout_id": "po_1", "holder_id": "h1", "status": "failed", "amount_micros": 5},
                            "USD", T0.isoformat())
    assert (failed["debit_account"], failed["credit_account"]) == ("holder:h1:reserved", "holder:h1:payable")
    assert failed["entry_id"] != paid["entry_id"]


def test_balances_ignore_their_own_reservations_read_back():
    from tributary.ledger import reservation

    book, state = BalanceBook(FREE), partition()
    [request] = book.apply(state, entry("e1", 1_500_000))
    assert book.apply(state, reservation(request)) == []
    assert book.balance(state, "h1").reserved_micros == 1_500_000  # reserved once, not twice


def test_the_state_a_batch_wrote_is_what_the_next_process_reads():
    loop = Committed()
    [request] = loop.batch([entry("e1", 1_500_000), entry("e2", 7, holder="h2")])
    assert loop.balance("h1").reserved_micros == 1_500_000 and loop.balance("h2").accrued_micros == 7
    assert PartitionState(0, loop.backend).get(f"p:{request['payout_id']}") == request


ledger_streams = st.lists(
    st.tuples(st.sampled_from(["h1", "h2", "h3"]), st.integers(min_value=0, max_value=900_000),
              st.sampled_from(["accrual", "accrual", "accrual", "paid", "failed", "repeat"])),
    min_size=1, max_size=40)


def build(spec, requests: list[dict]) -> list[dict]:
    """Entries from ``spec``; payout outcomes settle the requests issued so far (a repeat
    writes the last outcome again, as a crashed Stripe sink may)."""
    entries: list[dict] = []
    outcomes: list[dict] = []
    for i, (holder, amount, kind) in enumerate(spec):
        if kind == "accrual" or not requests:
            entries.append(entry(f"e{i}", amount, holder, minute=i))
        elif kind == "repeat" and outcomes:
            entries.append(copy.deepcopy(outcomes[-1]))
        elif kind in ("paid", "failed"):
            r = requests[i % len(requests)]
            outcome = payout_outcome({"payout_id": r["payout_id"], "holder_id": r["holder_id"], "status": kind,
                                    "amount_micros": r["amount_micros"], "transfer_id": "tr"}, "USD",
                                   (T0 + timedelta(minutes=i)).isoformat())
            outcomes.append(outcome)
            entries.append(outcome)
    return entries


@settings(max_examples=300, deadline=None)
@given(spec=ledger_streams, cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=6),
       crashes=st.sets(st.integers(min_value=0, max_value=8)))
def test_exact_whatever_the_batches_and_the_crashes(spec, cuts, crashes):
    """The same balances and the same payouts, each issued once, however the input is
    cut into transactions and whichever transactions crash before their commit."""
    reference = BalanceBook(FREE)
    ref_state = partition()
    issued: list[dict] = []
    entries = build(spec, [])
    # outcomes need the payout ids: issue with accruals only first, then build the full stream
    for e in entries:
        issued += reference.apply(ref_state, e)
    entries = build(spec, issued)
    reference, ref_state = BalanceBook(FREE), partition()
    expected = [r for e in entries for r in reference.apply(ref_state, e)]
    reference.flush()

    loop = Committed()
    start, n = 0, 0
    for cut in [*cuts, len(entries)]:
        end = min(len(entries), start + cut)
        if start >= end:
            break
        if n in crashes:
            loop.batch(entries[start:end], crash=True)  # nothing of it happened; read again
            if n % 2:
                loop.restart()  # or the process died: a new one reads it again
        loop.batch(entries[start:end])
        start, n = end, n + 1
    if start < len(entries):
        loop.batch(entries[start:])
    assert [r["payout_id"] for r in loop.sent] == [r["payout_id"] for r in expected]
    for holder in ("h1", "h2", "h3"):
        if ref_state.get(f"h:USD:{holder}"):
            assert loop.balance(holder) == reference.balance(ref_state, holder)


def test_state_round_trips_through_json():
    state = HolderBalance("h1", accrued_micros=5, payout_sequence=3)
    assert HolderBalance.from_json(state.to_json()) == state


def test_a_permanently_failed_payout_is_not_retried_on_every_accrual():
    loop = Committed(PayoutPolicy(min_payout_micros=1_000_000, fee_fixed_micros=0, retry_failed_after_s=3_600))

    def entry(n, kind, amount, at, payout_id=None):
        return {"entry_id": f"e{n}", "holder_id": "h1", "entry_type": kind, "amount_micros": amount,
                "currency": "USD", "created_at": at, "payout_id": payout_id}

    [first] = loop.batch([entry(1, "accrual", 1_500_000, "2026-11-20T10:00:00+00:00")])
    # Stripe refused it (restricted account): the amount comes back, no new request at once
    assert loop.batch([entry(2, "payout_reversal", first["amount_micros"], "2026-11-20T10:00:05+00:00",
                             first["payout_id"])]) == []
    assert loop.batch([entry(3, "accrual", 10_000, "2026-11-20T10:30:00+00:00")]) == []
    # the failure time is state: a later process (a new batch, a new book) still waits
    assert loop.balance().last_failure_at == "2026-11-20T10:00:05+00:00"
    # an hour of ledger time later the holder is tried again, for the whole unpaid balance
    [second] = loop.batch([entry(4, "accrual", 10_000, "2026-11-20T11:00:06+00:00")])
    assert second["amount_micros"] == 1_520_000 and second["payout_id"] != first["payout_id"]
    assert loop.balance().reserved_micros == 1_520_000


def test_payouts_wait_while_the_connect_account_cannot_receive_transfers():
    """An Express account not yet onboarded: nothing is requested, with the reason kept;
    once Stripe says it can receive transfers, what is due in each currency is requested."""
    book, state = BalanceBook(FREE), partition()
    account = {"schema_version": 1, "kind": "account", "holder_id": "h1", "stripe_account": "acct_1",
               "transfers_ready": False, "reason": "Stripe still needs: external_account",
               "checked_at": T0.isoformat()}
    assert book.set_readiness(state, account) == []
    assert book.apply(state, entry("e1", 1_500_000)) == []
    assert book.apply(state, entry("e2", 2_000_000, currency="EUR")) == []
    assert book.waiting_reason(state, "h1") == "Stripe still needs: external_account"
    assert book.waiting_reason(state, "h2") is None  # no record: not held
    requests = book.set_readiness(state, {**account, "transfers_ready": True, "reason": ""})
    assert sorted((r["currency"], r["amount_micros"]) for r in requests) == [("EUR", 2_000_000), ("USD", 1_500_000)]
    assert all(f"p:{r['payout_id']}" in state for r in requests)
    assert book.set_readiness(state, {**account, "transfers_ready": True, "reason": ""}) == []  # nothing more due


def test_a_payout_failed_on_the_account_is_retried_as_soon_as_the_account_is_ready():
    """The sink fails a payout to an account that cannot receive transfers (the amount
    returns) and says so; once the account is ready the amount is requested again at once,
    not a day later (retry_failed_after_s) or only on a next accrual."""
    from tributary.ledger import payout_outcome

    book, state = BalanceBook(replace(FREE, retry_failed_after_s=86_400)), partition()
    [request] = book.apply(state, entry("e1", 1_500_000))
    failed = payout_outcome({**request, "status": "failed"}, "USD", T0.isoformat())
    assert book.apply(state, failed) == []
    account = {"schema_version": 1, "kind": "account", "holder_id": "h1", "stripe_account": "acct_1",
               "transfers_ready": False, "reason": "restricted", "checked_at": T0.isoformat()}
    assert book.set_readiness(state, account) == []
    later = (T0 + timedelta(minutes=10)).isoformat()
    [again] = book.set_readiness(state, {**account, "transfers_ready": True, "reason": "", "checked_at": later})
    assert again["amount_micros"] == 1_500_000 and again["payout_id"] != request["payout_id"]


def test_a_legacy_balance_keeps_the_holders_other_currencies_listed():
    book, state = BalanceBook(FREE), partition()
    book.apply(state, entry("e1", 10, currency="EUR"))
    book.flush()
    state["h:h1"] = {"holder_id": "h1", "currency": "USD", "accrued_micros": 5, "reserved_micros": 0,
                     "paid_micros": 0, "payout_sequence": 0, "last_payout_at": None, "last_failure_at": None}
    book.apply(state, entry("e2", 10))
    book.flush()
    assert state.get("cur:h1") == ["EUR", "USD"] and state.get("h:USD:h1")["accrued_micros"] == 15
