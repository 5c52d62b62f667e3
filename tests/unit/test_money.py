import pytest
from hypothesis import given
from hypothesis import strategies as st

from tributary.money import UNATTRIBUTED, format_micros, payable, royalty_pool, split_pool

accounts = st.text(alphabet="abcdefgh", min_size=1, max_size=4)
weights = st.dictionaries(accounts, st.integers(min_value=0, max_value=10**6), min_size=1, max_size=12).filter(
    lambda w: sum(w.values()) > 0
)


@given(pool=st.integers(min_value=0, max_value=10**13), weights=weights)
def test_split_conserves_every_micro(pool, weights):
    split = split_pool(pool, weights)
    assert sum(split.values()) == pool
    assert set(split) == set(weights)
    assert all(v >= 0 for v in split.values())


@given(pool=st.integers(min_value=0, max_value=10**13), weights=weights)
def test_split_is_within_one_micro_of_exact_share(pool, weights):
    total = sum(weights.values())
    for account, amount in split_pool(pool, weights).items():
        exact_numerator = pool * weights[account]
        # floor(exact) <= amount <= floor(exact) + 1
        assert exact_numerator // total <= amount <= exact_numerator // total + 1


@given(pool=st.integers(min_value=0, max_value=10**9), weights=weights)
def test_split_is_deterministic_whatever_the_input_order(pool, weights):
    reversed_weights = dict(reversed(list(weights.items())))
    assert split_pool(pool, weights) == split_pool(pool, reversed_weights)


def test_ties_go_to_the_smaller_account_key():
    assert split_pool(1, {"b": 1, "a": 1}) == {"a": 1, "b": 0}
    assert split_pool(2, {"c": 1, "b": 1, "a": 1}) == {"a": 1, "b": 1, "c": 0}


def test_unattributed_is_an_account_like_any_other():
    split = split_pool(100, {"h1": 300_000, UNATTRIBUTED: 700_000})
    assert split == {"h1": 30, UNATTRIBUTED: 70}


@pytest.mark.parametrize("weights", [{}, {"a": 0}, {"a": -1, "b": 2}])
def test_split_rejects_bad_weights(weights):
    with pytest.raises(ValueError):
        split_pool(10, weights)


def test_royalty_pool_rounds_down_and_validates():
    assert royalty_pool(25_000, 2000) == 5_000
    assert royalty_pool(33_333, 2000) == 6_666
    with pytest.raises(ValueError):
        royalty_pool(-1, 2000)
    with pytest.raises(ValueError):
        royalty_pool(1, 10_001)


def test_whole_cents_keeps_the_sub_cent_remainder_out():
    assert payable(1_234_567, "USD") == 1_230_000
    assert payable(9_999, "USD") == 0


def test_format_micros():
    assert format_micros(1_234_567) == "1.234567 USD"
    assert format_micros(-5) == "-0.000005 USD"
