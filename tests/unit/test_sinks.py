"""Row conversion and the payout state machine, with a fake transfer API (the same
flows run against stripe-mock through the real sink in tests/integration)."""

import json
from datetime import UTC, datetime

import pytest
import stripe

from sinks.clickhouse.rows import to_rows
from sinks.stripe.payouts import (
    FoundTransfer,
    Outcome,
    RetryableStripeError,
    execute,
    is_retryable,
    result_record,
)
from streams.accrual import accrue
from tributary.topics import Topic

PAYOUT = {"payout_id": "po_1", "holder_id": "h1", "amount_micros": 1_230_000, "currency": "USD",
          "sequence": 0}


class FakeTransfers:
    def __init__(self, existing=None, fail_with=None):
        self.existing = existing or {}
        self.fail_with = fail_with
        self.created: list[tuple[str, int, str]] = []

    def find(self, payout_id):
        return self.existing.get(payout_id)

    def create(self, payout, destination):
        if self.fail_with:
            raise self.fail_with
        transfer_id = f"tr_{len(self.created)}"
        self.created.append((payout["payout_id"], payout["amount_micros"] // 10_000, destination))
        self.existing[payout["payout_id"]] = FoundTransfer(
            transfer_id, payout["amount_micros"] // 10_000, destination, payout["payout_id"], payout["payout_id"], 0)
        return transfer_id


def test_pays_once_then_finds_the_existing_transfer():
    api = FakeTransfers()
    first = execute(PAYOUT, "acct_1", api)
    second = execute(PAYOUT, "acct_1", api)  # a retry after a crash
    assert first == second == Outcome("paid", "tr_0", "acct_1")
    assert api.created == [("po_1", 123, "acct_1")]


def test_retryable_errors_raise_and_permanent_errors_fail_the_payout():
    with pytest.raises(RetryableStripeError):
        execute(PAYOUT, "acct_1", FakeTransfers(fail_with=stripe.RateLimitError("slow down")))
    with pytest.raises(RetryableStripeError):
        execute(PAYOUT, "acct_1", FakeTransfers(fail_with=stripe.APIConnectionError("reset")))
    failed = execute(PAYOUT, "acct_1", FakeTransfers(
        fail_with=stripe.InvalidRequestError("No such destination", "destination", http_status=400)))
    assert failed.status == "failed" and "No such destination" in failed.error


def test_holder_without_account_fails_with_a_fix():
    outcome = execute(PAYOUT, None, FakeTransfers())
    assert outcome.status == "failed" and "tributary holders add" in outcome.error


def test_error_classification():
    assert is_retryable(stripe.APIError("boom", http_status=502))
    assert not is_retryable(stripe.PermissionError("restricted", http_status=403))
    assert not is_retryable(ValueError("not stripe"))


def test_every_topic_record_becomes_a_row():
    attribution = {
        "schema_version": 1, "attribution_id": "at_1", "event_id": "e1", "occurred_at": "2026-11-20T00:00:00Z",
        "provider": "acme", "model": {"name": "m", "revision": "r"},
        "contract": {"contract_id": "standard-2026", "version": 1, "royalty_rate_bps": 2000, "currency": "USD"},
        "pool_micros": 101, "shares_ppm": [{"work_id": "w1", "holder_id": "h1", "share_ppm": 500_000}],
        "unattributed_ppm": 500_000,
        "evidence": {"model_name": "m", "model_revision": "r", "catalog_version": 3, "threshold": 0.6, "matches": []},
    }
    converted = to_rows(Topic.ATTRIBUTIONS, 0, 5, json.dumps(attribution).encode())
    [row] = converted.dicts()
    assert converted.table == "attributions" and row["attributed_ppm"] == 500_000 and row["works"] == ["w1"]
    entries = accrue(attribution, "2026-11-20T00:00:01+00:00")
    ledger = [to_rows(Topic.ROYALTY_LEDGER, 0, i, json.dumps(e).encode()) for i, e in enumerate(entries)]
    rows = [r for converted in ledger for r in converted.dicts()]
    assert {c.table for c in ledger} == {"ledger_entries"} and len(rows) == len(entries)
    assert sum(r["amount_micros"] for r in rows) == 101
    assert {datetime.fromisoformat(r["created_at"]) for r in rows} == {datetime(2026, 11, 20, 0, 0, 1, tzinfo=UTC)}
    result = result_record(PAYOUT, Outcome("paid", "tr_1", "acct_1"))
    assert to_rows(Topic.PAYOUT_RESULTS, 0, 0, json.dumps(result).encode()).dicts()[0]["transfer_id"] == "tr_1"
    holder = {"schema_version": 1, "kind": "holder", "holder_id": "h1", "name": "H", "stripe_account": "acct_1"}
    converted = to_rows(Topic.CATALOG_UPDATES, 0, 9, json.dumps(holder).encode())
    assert (converted.table, converted.dicts()) == (
        "holders", [{"holder_id": "h1", "name": "H", "stripe_account": "acct_1", "catalog_offset": 9}])
    assert to_rows(Topic.CATALOG_CHUNKS, 0, 0, b"{}") is None
    assert to_rows(Topic.ROYALTY_LEDGER, 0, 0, None) is None


def priced_request(event_id: str) -> dict:
    return {"schema_version": 1, "event_id": event_id, "occurred_at": "2026-11-20T00:00:00Z", "provider": "acme",
            "model": {"name": "m", "revision": "r"},
            "contract": {"contract_id": "standard-2026", "version": 1, "royalty_rate_bps": 2000, "currency": "USD"},
            "revenue_micros": 1_000, "pool_micros": 200, "output": {"text": "x"},
            "source": {"topic": "inference-events", "partition": 1, "offset": 7}}


def test_a_batch_record_of_requests_becomes_one_priced_event_row_per_request():
    single = to_rows(Topic.ATTRIBUTION_REQUESTS, 1, 3, json.dumps(priced_request("e0")).encode())
    assert (single.table, [r["event_id"] for r in single.dicts()]) == ("priced_events", ["e0"])
    batch = {"schema_version": 1, "kind": "batch", "requests": [priced_request(f"e{n}") for n in range(1, 4)]}
    converted = to_rows(Topic.ATTRIBUTION_REQUESTS, 1, 4, json.dumps(batch).encode())
    rows = converted.dicts()
    assert converted.table == "priced_events" and converted.count == 3 and converted.event_id == "e1"
    assert [r["event_id"] for r in rows] == [f"e{n}" for n in range(1, 4)]
    assert all(r["source_offset"] == 7 and r["pool_micros"] == 200 for r in rows)
