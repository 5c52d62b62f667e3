"""Evidence tiers in money: copied (certain) shares paid in full, probable shares paid at
the contract's weight with the rest held in escrow:review, and review decisions posted
as reversals and new accruals that keep every event's pool conserved."""

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import first_problem
from streams.accrual import UNDER_REVIEW, AccrualBook, accrue, review_entries
from streams.contracts import ContractBook
from tributary.money import UNATTRIBUTED
from tributary.review import review_record
from tributary.state import DictBackend, PartitionState


def attribution(pool, weight_bps, shares):
    return {
        "attribution_id": "at_1", "event_id": "e1", "provider": "acme", "occurred_at": "2026-11-20T00:00:00Z",
        "pool_micros": pool,
        "contract": {"contract_id": "c", "version": 1, "royalty_rate_bps": 2000, "currency": "USD",
                     "probable_weight_bps": weight_bps},
        "shares_ppm": [{"work_id": w, "holder_id": h, "share_ppm": ppm, "tier": tier} for w, h, ppm, tier in shares],
    }


def net(entries):
    """Signed effect per (holder account, work)."""
    out = Counter()
    for e in entries:
        sign = -1 if e["entry_type"] == "accrual_reversal" else 1
        out[(e["holder_id"], e["work_id"])] += sign * e["amount_micros"]
    return {k: v for k, v in out.items() if v}


ATT = attribution(1_000_000, 5_000, [("w-copied", "h-1", 400_000, "certain"), ("w-sem", "h-2", 300_000, "probable")])


def test_certain_is_paid_in_full_probable_at_the_weight_the_rest_held():
    entries = accrue(ATT, "2026-11-20T00:00:01Z")
    assert net(entries) == {("h-1", "w-copied"): 400_000, ("h-2", "w-sem"): 150_000,
                            (UNDER_REVIEW, "w-sem"): 150_000, (UNATTRIBUTED, None): 300_000}
    assert sum(e["amount_micros"] for e in entries) == 1_000_000
    assert all(first_problem("ledger-entry.v1", e) is None for e in entries)
    assert len({e["entry_id"] for e in entries}) == len(entries)


def test_accept_releases_the_held_part_and_reject_moves_the_whole_probable_share_to_escrow():
    base = accrue(ATT, "t0")
    accepted = review_entries(ATT, review_record("e1", "w-sem", "accept", "used", "me"), "t1")
    assert net(base + accepted)[("h-2", "w-sem")] == 300_000 and (UNDER_REVIEW, "w-sem") not in net(base + accepted)
    rejected = review_entries(ATT, review_record("e1", "w-sem", "reject", "same topic only", "me"), "t1")
    after = net(base + rejected)
    assert ("h-2", "w-sem") not in after and (UNDER_REVIEW, "w-sem") not in after
    assert after[(UNATTRIBUTED, None)] + after.get((UNATTRIBUTED, "w-sem"), 0) == 600_000
    assert after[("h-1", "w-copied")] == 400_000  # the copied share is untouched
    for entries in (accepted, rejected):  # every move nets to zero on the provider's side
        assert sum(e["amount_micros"] * (-1 if e["entry_type"] == "accrual_reversal" else 1) for e in entries) == 0
    # a decision on a certain share or another work posts nothing
    assert review_entries(ATT, review_record("e1", "w-copied", "reject", "x", "me"), "t1") == []


@given(pool=st.integers(0, 10**9), weight=st.integers(0, 10_000),
       ppm=st.lists(st.integers(1, 300_000), min_size=1, max_size=3), decision=st.sampled_from(["accept", "reject"]))
def test_every_decision_keeps_the_pool_conserved(pool, weight, ppm, decision):
    shares = [(f"w{i}", f"h{i}", p, "probable" if i % 2 == 0 else "certain") for i, p in enumerate(ppm)]
    att = attribution(pool, weight, shares)
    entries = accrue(att, "t0") + review_entries(att, review_record("e1", "w0", decision, "r", "me"), "t1")
    assert sum(net(entries).values()) == pool
    assert all(v >= 0 for v in net(entries).values())


def test_the_book_applies_the_first_decision_once_and_a_refund_reverses_everything():
    book, state = AccrualBook(), PartitionState(0, DictBackend())
    first = book.on_attribution(state, ATT, "t0")
    decision = {**review_record("e1", "w-sem", "accept", "used", "me"), "occurred_at": "2026-11-20T01:00:00Z"}
    released = book.on_correction(state, decision, "t1")
    assert not {e["entry_id"] for e in released} & {e["entry_id"] for e in first}  # only what is new
    assert net(first + released)[("h-2", "w-sem")] == 300_000
    assert book.on_correction(state, decision, "t2") == []  # a repeat adds nothing
    changed_mind = {**review_record("e1", "w-sem", "reject", "oops", "me"), "correction_id": "rev_other"}
    assert book.on_correction(state, changed_mind, "t3") == []  # the first decision stands
    refund = {"schema_version": 1, "kind": "refund", "correction_id": "rf1", "event_id": "e1", "reason": "chargeback",
              "occurred_at": "2026-11-20T02:00:00Z"}
    assert net(first + released + book.on_correction(state, refund, "t4")) == {}
    assert book.on_attribution(state, ATT, "t5") == []  # the attribution again: nothing twice


def test_review_records_validate_and_need_a_decision():
    record = review_record("e1", "w-sem", "reject", "same topic only", "me")
    assert first_problem("correction.v1", record) is None
    assert record == {**review_record("e1", "w-sem", "reject", "same topic only", "me"),
                      "occurred_at": record["occurred_at"]}  # the id is the (event, work): deciding again collides
    assert first_problem("correction.v1", {k: v for k, v in record.items() if k != "decision"}) is not None


def test_contracts_carry_the_probable_weight_and_refuse_a_bad_one(tmp_path):
    path = tmp_path / "contracts.json"
    base = {"contract_id": "c", "version": 1, "currency": "USD", "royalty_rate_bps": 1000,
            "price_per_1k_input_tokens_micros": 1, "price_per_1k_output_tokens_micros": 1,
            "valid_from": "2026-01-01T00:00:00Z", "valid_to": "2027-01-01T00:00:00Z"}
    path.write_text('{"contracts": [' + str({**base, "probable_weight_bps": 2500}).replace("'", '"') + "]}")
    assert ContractBook.load(path)._by_id["c"][0].probable_weight_bps == 2500
    path.write_text('{"contracts": [' + str({**base, "probable_weight_bps": 20000}).replace("'", '"') + "]}")
    with pytest.raises(ValueError, match="probable_weight_bps"):
        ContractBook.load(path)
