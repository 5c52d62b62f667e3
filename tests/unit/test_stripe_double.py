"""The payout state machine against the stateful Connect double, through the official
Stripe client over HTTP: idempotency, lost responses, pruned keys, the client's own
retries and Stripe-Should-Retry, retryable and permanent failures. (Request validity
is checked against stripe-mock in tests/integration; the whole sink runs against this
double in tests/chaos.)"""

import pytest
from stripe._http_client import HTTPClient

from sinks.stripe.payouts import MAX_NETWORK_RETRIES, RetryableStripeError, StripeTransfers, execute
from tests.stripe_double import ConnectDouble

PAYOUT = {"payout_id": "po_double_1", "holder_id": "h1", "amount_micros": 1_230_000, "currency": "USD",
          "sequence": 0, "requested_at": "2026-11-20T10:00:00+00:00"}


@pytest.fixture(autouse=True)
def quick_client_retries(monkeypatch):
    """stripe-python's retry backoff (0.5 s .. 5 s), shortened for the tests."""
    monkeypatch.setattr(HTTPClient, "INITIAL_DELAY", 0.01)
    monkeypatch.setattr(HTTPClient, "MAX_DELAY", 0.02)


@pytest.fixture
def double():
    d = ConnectDouble().start()
    yield d
    d.stop()


@pytest.fixture
def api(double):
    return StripeTransfers("sk_test_double", double.url)


def retry(payout, destination, api, attempts=5):
    """What the sink does: retry retryable errors; count the tries."""
    for n in range(1, attempts + 1):
        try:
            return execute(payout, destination, api), n
        except RetryableStripeError:
            continue
    raise AssertionError("never settled")


def test_a_payout_becomes_one_transfer_with_its_id_as_group_and_metadata(double, api):
    outcome = execute(PAYOUT, "acct_1", api)
    assert outcome.status == "paid"
    [transfer] = double.transfers
    assert (transfer.id, transfer.amount, transfer.transfer_group) == (outcome.transfer_id, 123, "po_double_1")
    assert transfer.metadata == {"payout_id": "po_double_1", "holder_id": "h1", "sequence": "0",
                                 "period": "through 2026-11-20T10:00:00+00:00"}
    assert execute(PAYOUT, "acct_1", api).transfer_id == transfer.id  # a re-delivery: found, not re-created
    assert len(double.transfers) == 1 and double.create_attempts == 1


def test_a_lost_response_is_retried_by_the_client_with_the_same_idempotency_key(double, api):
    double.inject("drop_after_create")
    outcome = execute(PAYOUT, "acct_1", api)  # created, the response lost, the retry replayed
    assert outcome.status == "paid" and [t.id for t in double.transfers] == [outcome.transfer_id]
    assert double.create_keys == ["po_double_1", "po_double_1"]


def test_a_lost_response_is_retried_without_a_second_transfer_even_after_keys_are_pruned(double, api):
    double.inject("drop_after_create", *["drop"] * MAX_NETWORK_RETRIES)  # and Stripe stays unreachable
    with pytest.raises(RetryableStripeError):
        execute(PAYOUT, "acct_1", api)  # created, but we never saw the id
    double.prune_idempotency_keys()  # Stripe forgets keys after 24 h: only the lookup protects us
    outcome, _ = retry(PAYOUT, "acct_1", api)
    assert outcome.status == "paid" and [t.id for t in double.transfers] == [outcome.transfer_id]


def test_idempotency_key_replays_the_first_response(double, api):
    created = api.create(PAYOUT, "acct_1")
    assert api.create(PAYOUT, "acct_1") == created and len(double.transfers) == 1


def test_rate_limits_5xx_and_dropped_connections_are_retried(double, api):
    double.inject("rate_limit", "server_error", "drop")
    outcome, tries = retry(PAYOUT, "acct_1", api)
    # a 429 without Stripe's advice is the sink's to wait out; the 500 and the dropped
    # connection are retried by the client within the second try, with the same key
    assert outcome.status == "paid" and tries == 2 and len(double.transfers) == 1
    assert double.create_attempts == 4 and set(double.create_keys) == {"po_double_1"}


def test_stripe_should_retry_true_is_retried_by_the_client_even_on_a_429(double, api):
    double.inject("lock_timeout")
    outcome = execute(PAYOUT, "acct_1", api)
    assert outcome.status == "paid" and len(double.transfers) == 1
    assert double.create_keys == ["po_double_1", "po_double_1"]


def test_stripe_should_retry_false_is_not_retried_and_fails_the_payout(double, api):
    double.inject("server_error_final")  # retrying would replay this 500 for 24 h
    outcome = execute(PAYOUT, "acct_1", api)
    assert outcome.status == "failed" and "Something went wrong" in outcome.error
    assert double.create_attempts == 1 and double.transfers == []


def test_a_final_server_error_after_the_transfer_was_made_reports_the_transfer(double, api):
    double.inject("server_error_final_after_create")
    outcome = execute(PAYOUT, "acct_1", api)  # the lookup after the error finds it
    assert outcome.status == "paid" and [t.id for t in double.transfers] == [outcome.transfer_id]
    assert double.create_attempts == 1


def test_restricted_account_and_insufficient_balance_fail_the_payout_permanently(double, api):
    double.restricted.add("acct_bad")
    failed = execute(PAYOUT, "acct_bad", api)
    assert failed.status == "failed" and "restricted" in failed.error
    double.balance_cents = 100
    poor = execute({**PAYOUT, "payout_id": "po_double_2"}, "acct_1", api)
    assert poor.status == "failed" and "insufficient" in poor.error
    assert double.transfers == []


def test_an_existing_transfer_with_another_amount_is_never_taken_for_this_payout(double, api):
    execute(PAYOUT, "acct_1", api)
    clash = execute({**PAYOUT, "amount_micros": 2_000_000}, "acct_1", api)
    assert clash.status == "failed" and "already exists" in clash.error and len(double.transfers) == 1


def test_listing_follows_pagination(double, api):
    for n in range(130):
        api.create({**PAYOUT, "payout_id": f"po_page_{n}"}, "acct_1")
    listed = api.all_transfers()
    assert len(listed) == 130 and len({t.id for t in listed}) == 130
    assert {t.payout_id for t in listed} == {f"po_page_{n}" for n in range(130)}
