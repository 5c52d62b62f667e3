"""Currencies: amounts are micros of each currency's major unit; Stripe's minor units
and payable steps per currency; balances, thresholds and payouts per (holder, currency),
never summed across currencies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sinks.stripe.payouts import FoundTransfer, execute
from sinks.stripe.reconcile import LedgerPayout, reconcile
from streams.balances import BalanceBook, PayoutPolicy
from tributary import ledger
from tributary.config import ConfigError, load_pipeline, parse_currency_amounts
from tributary.money import from_stripe_amount, minor_unit_micros, payable, to_stripe_amount
from tributary.state import DictBackend, PartitionState

T0 = datetime(2026, 11, 20, tzinfo=UTC)
POLICY = PayoutPolicy(min_payout_micros=1_000_000, fee_fixed_micros=0, fee_bps=0, max_fee_bps=10_000,
                      currencies={"JPY": {"min_payout_micros": 150_000_000}})


@pytest.mark.parametrize("currency,micros,amount,paid", [
    ("USD", 12_345_678, 1234, 12_340_000),   # cents; the 5,678 micros stay
    ("EUR", 9_999, 0, 0),
    ("JPY", 1_500_999_999, 1500, 1_500_000_000),  # zero-decimal: whole yen
    ("BHD", 2_345_678, 2340, 2_340_000),     # three decimals, the last one 0 (Stripe)
    ("HUF", 12_345_678, 1200, 12_000_000),   # two decimals in the API, whole forints only
])
def test_stripe_amounts_per_currency(currency, micros, amount, paid):
    assert payable(micros, currency) == paid
    assert to_stripe_amount(paid, currency) == amount
    assert from_stripe_amount(amount, currency.lower()) == paid
    if paid != micros:
        with pytest.raises(ValueError, match="not a payable amount"):
            to_stripe_amount(micros, currency)


def test_minor_units():
    assert (minor_unit_micros("USD"), minor_unit_micros("JPY"), minor_unit_micros("KWD")) == (10_000, 1_000_000, 1_000)


def accrual(holder: str, amount: int, currency: str, n: int) -> dict:
    return {"entry_id": f"le_{n}", "entry_type": "accrual", "amount_micros": amount, "currency": currency,
            "holder_id": holder, "created_at": (T0 + timedelta(minutes=n)).isoformat()}


def test_a_holder_has_a_balance_and_payouts_per_currency():
    book, state = BalanceBook(POLICY), PartitionState(0, DictBackend())
    assert book.apply(state, accrual("h1", 900_000, "USD", 0)) == []
    # 100 yen: far above the USD threshold in micros, below the JPY one; never added to the dollars
    assert book.apply(state, accrual("h1", 100_000_000, "JPY", 1)) == []
    [usd] = book.apply(state, accrual("h1", 150_000, "USD", 2))
    [jpy] = book.apply(state, accrual("h1", 60_500_000, "JPY", 3))
    assert (usd["currency"], usd["amount_micros"]) == ("USD", 1_050_000)
    assert (jpy["currency"], jpy["amount_micros"]) == ("JPY", 160_000_000)  # 160 yen; the 0.5 yen stays
    assert usd["sequence"] == jpy["sequence"] == 0 and usd["payout_id"] != jpy["payout_id"]
    book.flush()
    assert state.get("h:JPY:h1")["accrued_micros"] == 160_500_000
    assert state.get("h:USD:h1")["accrued_micros"] == 1_050_000
    # the reservation and the outcome carry the currency; the trial balance keeps them apart
    entries = [ledger.reservation(usd), ledger.reservation(jpy)]
    balances = ledger.trial_balance(entries)
    assert balances[("holder:h1:reserved", "JPY")] == 160_000_000
    assert balances[("holder:h1:reserved", "USD")] == 1_050_000


def test_a_balance_kept_before_currencies_moves_to_its_currency_key():
    state = PartitionState(0, DictBackend())
    state["h:h1"] = {"holder_id": "h1", "currency": "USD", "accrued_micros": 900_000, "reserved_micros": 0,
                     "paid_micros": 0, "payout_sequence": 3, "last_payout_at": None, "last_failure_at": None}
    state.commit()
    book = BalanceBook(POLICY)
    [request] = book.apply(state, accrual("h1", 200_000, "USD", 0))
    assert (request["amount_micros"], request["sequence"]) == (1_100_000, 3)
    book.flush()
    assert state.get("h:h1") is None and state.get("h:USD:h1")["payout_sequence"] == 4


class Api:
    def __init__(self, existing: FoundTransfer | None = None):
        self.existing, self.created = existing, []

    def find(self, payout_id):
        return self.existing

    def create(self, payout, destination):
        self.created.append(to_stripe_amount(payout["amount_micros"], payout["currency"]))
        return "tr_new"


def test_transfers_are_made_in_the_payouts_currency_and_minor_unit():
    payout = {"payout_id": "po_1", "holder_id": "h1", "amount_micros": 160_000_000, "currency": "JPY",
              "sequence": 0}
    api = Api()
    assert execute(payout, "acct_1", api).transfer_id == "tr_new" and api.created == [160]
    # a transfer of 160 *dollars* under this payout id is not this payout
    other = FoundTransfer("tr_usd", 160, "acct_1", "po_1", "po_1", 0, "usd")
    outcome = execute(payout, "acct_1", Api(other))
    assert outcome.status == "failed" and "tr_usd" in (outcome.error or "")
    assert execute(payout, "acct_1", Api(FoundTransfer("tr_jpy", 160, "acct_1", "po_1", "po_1", 0, "jpy"))
                   ).transfer_id == "tr_jpy"
    assert execute({**payout, "amount_micros": 160_500_000}, "acct_1", Api()).status == "failed"  # half a yen


def test_reconcile_compares_currency_as_well_as_amount():
    paid = LedgerPayout("po_1", "h1", 160_000_000, "paid", "tr_1", "acct_1", "JPY")
    assert reconcile([paid], [FoundTransfer("tr_1", 160, "acct_1", "po_1", "po_1", 0, "jpy")]) == []
    [finding] = reconcile([paid], [FoundTransfer("tr_1", 16000, "acct_1", "po_1", "po_1", 0, "usd")])
    assert finding.kind == "amount_mismatch" and "JPY" in finding.detail and "USD" in finding.detail


def test_per_currency_payout_defaults_are_parsed_and_checked():
    assert parse_currency_amounts("JPY=150000000/40000000, EUR=1000000/250000") == {
        "JPY": {"min_payout_micros": 150_000_000, "fee_fixed_micros": 40_000_000},
        "EUR": {"min_payout_micros": 1_000_000, "fee_fixed_micros": 250_000}}
    assert load_pipeline().payout_policy.for_currency("JPY").min_payout_micros == 150_000_000
    assert load_pipeline().payout_policy.for_currency("EUR").min_payout_micros == 1_000_000
    with pytest.raises(ConfigError, match="payout_currencies 'yen=5': expected CUR=min_payout_micros/fee"):
        load_pipeline(payout_currencies="yen=5")


def test_a_holders_policy_states_amounts_per_currency_on_top_of_the_defaults():
    defaults = load_pipeline().payout_policy
    mine = PayoutPolicy.from_json({"holder_id": "h1", "currencies": {"EUR": {"min_payout_micros": 5_000_000}}},
                                  defaults)
    assert mine.for_currency("EUR").min_payout_micros == 5_000_000
    assert mine.for_currency("JPY").min_payout_micros == 150_000_000  # the default's JPY amounts stay
