"""Accrual and balances: conservation, deterministic ids, idempotent replay."""

from hypothesis import given
from hypothesis import strategies as st

from schemas import first_problem
from streams.accrual import accrue
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


