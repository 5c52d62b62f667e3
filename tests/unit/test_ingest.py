import json

import pytest

from schemas import examples, first_problem
from streams.contracts import ContractBook
from streams.ingest import Rejection, Source, dead_letter, parse_event, parse_record, price_event

BOOK = ContractBook.load()
SOURCE = Source("inference-events", 2, 41)

EXPECTED_CODES = {
    "invalid-malformed-json.json": ("malformed_json", None),
    "invalid-missing-event-id.json": ("schema_violation", "event_id"),
    "invalid-negative-revenue.json": ("schema_violation", "billing/revenue_micros"),
    "invalid-unknown-contract.json": ("unknown_contract", "contract_id"),
    "invalid-schema-version.json": ("unsupported_schema_version", "schema_version"),
    "invalid-wrong-type.json": ("schema_violation", "billing/revenue_micros"),
    "invalid-embedding-dimension.json": ("wrong_embedding_dimension", "output/embeddings/0"),
    "invalid-refund-without-reason.json": ("schema_violation", "reason"),
}


@pytest.mark.parametrize("name,raw", examples("inference-events"))
def test_every_example_is_classified(name, raw):
    results = [parsed for _, parsed, _ in parse_record(raw, BOOK)]
    result = results[0]
    if name.startswith("valid-"):
        assert results and not any(isinstance(r, Rejection) for r in results), results
    else:
        assert isinstance(result, Rejection)
        assert (result.code, result.field) == EXPECTED_CODES[name]
        assert result.reason  # a person can act on it


def test_every_invalid_example_has_an_expectation():
    invalid = {n for n, _ in examples("inference-events") if n.startswith("invalid-")}
    assert invalid == set(EXPECTED_CODES)


def test_pricing_by_revenue_and_by_tokens():
    (_, raw_revenue), (_, raw_tokens) = [e for e in examples("inference-events") if e[0] in
                                         ("valid-revenue.json", "valid-tokens.json")]
    rev = price_event(parse_event(raw_revenue, BOOK), BOOK, SOURCE)
    assert rev["revenue_micros"] == 25_000 and rev["pool_micros"] == 5_000
    assert rev["contract"] == {"contract_id": "standard-2026", "version": 1,
                               "royalty_rate_bps": 2000, "currency": "USD",
                               "probable_weight_bps": 10_000}  # probable shares paid in full
    tok = price_event(parse_event(raw_tokens, BOOK), BOOK, SOURCE)
    # 120 input tokens at 500/1k + 480 output tokens at 1500/1k = 60 + 720 micros
    assert tok["revenue_micros"] == 780 and tok["pool_micros"] == 156
    assert tok["source"] == {"topic": "inference-events", "partition": 2, "offset": 41}
    assert first_problem("attribution-request.v1", tok) is None


def test_contract_not_in_force_is_rejected():
    event = json.loads(dict(examples("inference-events"))["valid-revenue.json"])
    event["occurred_at"] = "2030-01-01T00:00:00Z"
    result = parse_event(json.dumps(event).encode(), BOOK)
    assert isinstance(result, Rejection) and result.code == "contract_not_in_force"


def test_oversized_and_non_object_inputs():
    assert parse_event(b"x" * 1_000_001, BOOK).code == "too_large"
    assert parse_event(b"[1, 2]", BOOK).code == "malformed_json"
    assert parse_event(b"\xff\xfe", BOOK).code == "malformed_json"


def test_dead_letter_record_matches_its_schema():
    rejection = parse_event(b"{oops", BOOK)
    record = dead_letter(b"{oops", rejection, SOURCE)
    assert first_problem("dead-letter.v1", record) is None
    assert record["source"]["offset"] == 41
