"""Accrual and balances: conservation, deterministic ids, idempotent replay."""

from hypothesis import given
from hypothesis import strategies as st

from schemas import first_problem
from streams.accrual import accrue, payout_entry
from streams.balances import HolderBalance, apply_entry
from tributary.money import UNATTRIBUTED

NOW = "2026-11-20T00:00:00+00:00"


def attribution(pool: int, shares: list[tuple[str, str, int]]) -> dict:
    return {
        "schema_version": 1, "attribution_id": "at_1", "event_id": "evt-1", "provider": "acme",
        "contract": {"contract_id": "standard-2026", "version": 1, "royalty_rate_bps": 2000, "currency": "USD"},
        "pool_micros": pool,
        "shares_ppm": [{"work_id": w, "holder_id": h, "share_ppm": s} for w, h, s in shares],
        "unattributed_ppm": 1_000_000 - sum(s for _, _, s in shares),
        "evidence": {},
    }


share_lists = st.lists(
    st.tuples(st.sampled_from(["w1", "w2", "w3"]), st.sampled_from(["h1", "h2"]),
              st.integers(min_value=0, max_value=333_333)), max_size=3)


@given(pool=st.integers(min_value=0, max_value=10**12), shares=share_lists)
def test_accrual_conserves_the_pool(pool, shares):
    entries = accrue(attribution(pool, shares), NOW)
    assert sum(e["amount_micros"] for e in entries) == pool
    assert len({e["entry_id"] for e in entries}) == len(entries)
    assert sum(1 for e in entries if e["credit_account"] == UNATTRIBUTED) == 1
    for e in entries:
        assert first_problem("ledger-entry.v1", e) is None
        assert e["contract_version"] == 1 and e["attribution_id"] == "at_1"


@given(pool=st.integers(min_value=0, max_value=10**12), shares=share_lists)
def test_accrual_is_deterministic(pool, shares):
    assert accrue(attribution(pool, shares), NOW) == accrue(attribution(pool, shares), NOW)


def accrual(entry_id: str, amount: int) -> dict:
    return {"entry_id": entry_id, "entry_type": "accrual", "amount_micros": amount, "currency": "USD"}


@given(amounts=st.lists(st.integers(min_value=0, max_value=3_000_000), min_size=1, max_size=30),
       replays=st.lists(st.integers(min_value=0, max_value=29), max_size=30))
def test_balance_updates_are_idempotent_under_replay(amounts, replays):
    entries = [accrual(f"e{i}", a) for i, a in enumerate(amounts)]
    once = HolderBalance("h1")
    requests_once = [apply_entry(once, e, 1_000_000, NOW) for e in entries]
    replayed = HolderBalance("h1")
    stream = list(entries)
    for r in replays:  # duplicates re-delivered later in the stream
        stream.append(entries[r % len(entries)])
    requests_replayed = [apply_entry(replayed, e, 1_000_000, NOW) for e in stream]
    assert (once.accrued_micros, once.reserved_micros) == (replayed.accrued_micros, replayed.reserved_micros)
    assert once.accrued_micros == sum(amounts)
    distinct = {r["payout_id"] for r in requests_once if r}
    assert {r["payout_id"] for r in requests_replayed if r} == distinct
    # after every payout the unpaid balance is below the threshold; sub-cent remainders stay
    assert 0 <= once.unpaid_micros < 1_000_000
    assert sum(once.payouts[p]["amount_micros"] for p in distinct) == once.reserved_micros
    assert all(once.payouts[p]["amount_micros"] % 10_000 == 0 for p in distinct)


def test_replay_of_the_triggering_entry_returns_the_same_request():
    state = HolderBalance("h1")
    first = apply_entry(state, accrual("e1", 1_234_567), 1_000_000, NOW)
    assert first["amount_micros"] == 1_230_000 and state.unpaid_micros == 4_567
    assert apply_entry(state, accrual("e1", 1_234_567), 1_000_000, NOW) == first
    assert state.accrued_micros == 1_234_567


def test_failed_payout_returns_the_amount_and_pays_it_again():
    state = HolderBalance("h1")
    request = apply_entry(state, accrual("e1", 2_000_000), 1_000_000, NOW)
    result = {"payout_id": request["payout_id"], "holder_id": "h1", "status": "failed",
              "amount_micros": request["amount_micros"], "transfer_id": None}
    reversal = payout_entry(result, "USD", NOW)
    assert reversal["entry_type"] == "payout_reversal"
    assert first_problem("ledger-entry.v1", reversal) is None
    retry = apply_entry(state, reversal, 1_000_000, NOW)
    assert retry is not None and retry["payout_id"] != request["payout_id"]
    assert retry["amount_micros"] == 2_000_000


def test_paid_payout_moves_payable_to_paid():
    state = HolderBalance("h1")
    request = apply_entry(state, accrual("e1", 1_500_000), 1_000_000, NOW)
    result = {"payout_id": request["payout_id"], "holder_id": "h1", "status": "paid",
              "amount_micros": request["amount_micros"], "transfer_id": "tr_1"}
    entry = payout_entry(result, "USD", NOW)
    assert (entry["debit_account"], entry["credit_account"]) == ("holder:h1:payable", "holder:h1:paid")
    assert apply_entry(state, entry, 1_000_000, NOW) is None
    assert state.paid_micros == 1_500_000 and state.unpaid_micros == 0


def test_state_round_trips_through_json():
    state = HolderBalance("h1")
    apply_entry(state, accrual("e1", 1_500_000), 1_000_000, NOW)
    assert HolderBalance.from_json(state.to_json()) == state


def test_shares_above_one_hundred_percent_are_refused():
    import pytest

    with pytest.raises(ValueError, match="exceed 100%"):
        accrue(attribution(100, [("w1", "h1", 600_000), ("w2", "h2", 500_000)]), NOW)
