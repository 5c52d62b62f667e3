"""Every topic's example payloads: valid ones match the topic's schema and every
consumer of the topic handles them; invalid ones are refused with a reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from gpu_workers.catalog import index_works
from gpu_workers.embedder import HashingEmbedder
from gpu_workers.index import QdrantIndex
from gpu_workers.indexer import chunk_records
from gpu_workers.scoring import recompute
from gpu_workers.worker import attribute_batch
from schemas import examples, first_problem, topic_manifests
from schemas.batches import items
from sinks.clickhouse.rows import to_rows
from sinks.stripe.payouts import execute
from streams.accrual import AccrualBook
from streams.balances import BalanceBook, PayoutPolicy
from streams.contracts import ContractBook
from streams.ingest import IngestBook, Source
from tributary import ledger
from tributary.config import PipelineConfig
from tributary.sample import load_catalog
from tributary.state import DictBackend, PartitionState

TOPICS = sorted(topic_manifests())
ALL = [(t, name, raw) for t in TOPICS for name, raw in examples(t)]
NOW = datetime(2026, 11, 3, tzinfo=UTC)
BATCH_FIELDS = {"inference-events": "events", "attribution-requests": "requests",
                "royalty-ledger": "entries"}  # schemas.batches


def schema_for(topic: str, payload: object) -> str:
    schemas = topic_manifests()[topic].schemas
    if isinstance(payload, dict) and payload.get("kind") == "batch" and "v1-batch" in schemas:
        return schemas["v1-batch"]
    if isinstance(payload, dict) and payload.get("kind") == "refund" and "v1-refund" in schemas:
        return schemas["v1-refund"]
    if isinstance(payload, dict) and payload.get("kind") == "account" and "v1-account" in schemas:
        return schemas["v1-account"]
    return schemas["v1"]


def unbatched(topic: str, payload: object) -> list:
    """A batch record's items, or the single payload: what a consumer handles one by one."""
    found = items(payload, BATCH_FIELDS[topic]) if topic in BATCH_FIELDS else None
    return [payload] if found is None else found


@pytest.mark.parametrize("topic", TOPICS)
def test_every_topic_has_a_valid_example(topic):
    if not topic_manifests()[topic].schemas:  # a stage's internal state topic: no contract to show
        assert topic.endswith("-state")
        return
    assert any(name.startswith("valid-") for name, _ in examples(topic)), topic


@pytest.mark.parametrize("topic,name,raw", ALL, ids=[f"{t}/{n}" for t, n, _ in ALL])
def test_examples_match_or_break_their_schema(topic, name, raw):
    try:
        payload = json.loads(raw)
    except json.JSONDecodeError:
        assert name.startswith("invalid-")
        return
    problem = first_problem(schema_for(topic, payload), payload)
    if name.startswith("valid-"):
        assert problem is None, problem
        for item in unbatched(topic, payload):  # a batch's items are checked one by one
            assert first_problem(schema_for(topic, item), item) is None, (item, problem)
    elif topic != "inference-events":  # ingest also checks meaning (contract, dimensions): below
        assert problem is not None and problem.reason


@pytest.mark.parametrize("topic", sorted(t for t, m in topic_manifests().items() if "v1-batch" in m.schemas))
def test_every_batch_schema_has_a_batch_example_whose_items_share_a_home_partition(topic):
    from tributary.partitioner import home_partition

    batches = [p for p in valid(topic) if p.get("kind") == "batch"]
    assert batches and set(BATCH_FIELDS) >= {topic}
    manifest = topic_manifests()[topic]
    for batch in batches:
        homes = {home_partition(item[manifest.key], manifest.partitions) for item in unbatched(topic, batch)}
        assert len(homes) == 1, homes


def valid(topic: str) -> list[dict]:
    return [json.loads(raw) for name, raw in examples(topic) if name.startswith("valid-")]


def valid_items(topic: str) -> list[dict]:
    """Every valid example, batch records opened into their items."""
    return [item for payload in valid(topic) for item in unbatched(topic, payload)]


def invalid(topic: str) -> list[bytes]:
    return [raw for name, raw in examples(topic) if name.startswith("invalid-")]


def test_ingest_over_every_inference_example():
    book = IngestBook({}, ContractBook.load())
    book.rebuild()
    for offset, (name, raw) in enumerate(sorted(examples("inference-events"), key=lambda e: "refund" in e[0])):
        batch = items(json.loads(raw), "events") if name.startswith("valid-") else None
        for event in [raw] if batch is None else [json.dumps(e).encode() for e in batch]:  # one by one
            decision = book.handle(event, Source("inference-events", 0, offset), NOW)
            if name.startswith("invalid-"):
                assert decision.rejection is not None and decision.rejection.reason, name
            else:
                assert decision.rejection is None, (name, decision.rejection)
                assert (decision.request or decision.correction) is not None


def test_attribution_worker_over_every_request_example():
    """The sample catalog indexed as the indexer does (the fake embedder, calibrated from
    the catalog itself as the worker's default is); every request example is attributed
    to a valid attribution whose evidence gives its shares back."""
    embedder = HashingEmbedder()
    index = QdrantIndex(":memory:", dim=embedder.dim)
    catalog = index_works(load_catalog()["works"], embedder, index)
    requests = valid_items("attribution-requests")
    out = attribute_batch(requests, embedder, index, catalog, PipelineConfig())
    assert [a["event_id"] for a in out] == [r["event_id"] for r in requests]
    for a in out:
        assert first_problem("attribution.v1", a) is None
        assert a["evidence"]["calibration"]["version"] == catalog.calibration().version
        assert recompute(a["evidence"]) == (a["shares_ppm"], a["unattributed_ppm"])
    # the request example quotes the opening sentence of Pride and Prejudice word for word
    # (23 of its 56 words: certain); its paraphrase of Moby-Dick is for the real model to judge
    [quote] = [a for a in out if a["event_id"] == "evt-example-0001"]
    certain = [(s["work_id"], s["words"]) for s in quote["shares_ppm"] if s["tier"] == "certain"]
    assert certain == [("w-pride-prejudice", 23.0)] and quote["evidence"]["output_words"] == 56


def test_attribution_examples_carry_evidence_that_gives_their_shares_back():
    """What `tributary explain` checks on every attribution holds for the examples too
    (regenerate the example with gpu_workers.scoring.build_attribution when the
    evidence changes shape)."""
    for attribution in valid("attributions"):
        assert recompute(attribution["evidence"]) == (attribution["shares_ppm"], attribution["unattributed_ppm"])


def test_accrue_over_every_attribution_and_correction_example():
    book, state = AccrualBook(), PartitionState(0, DictBackend())
    posted: list[dict] = []
    for attribution in valid("attributions"):
        entries = book.on_attribution(state, attribution, NOW.isoformat())
        assert sum(e["amount_micros"] for e in entries) == attribution["pool_micros"]
        posted += entries
    for correction in valid("corrections"):
        posted += book.on_correction(state, correction, NOW.isoformat())
        if correction["kind"] == "refund":  # the event's entries and their reversals net to nothing
            assert sum(-e["amount_micros"] if e["entry_type"] == "accrual_reversal" else e["amount_micros"]
                       for e in posted if e["event_id"] == correction["event_id"]) == 0


def test_balances_over_every_ledger_example():
    book, state = BalanceBook(PayoutPolicy()), PartitionState(0, DictBackend())
    for entry in valid_items("royalty-ledger"):
        assert ledger.check(entry)  # every example is a permitted flow of the chart of accounts
        if not entry["holder_id"].startswith("escrow:"):
            for request in book.apply(state, entry):
                assert first_problem("payout-request.v1", request) is None


def test_policy_agent_accepts_valid_and_refuses_invalid_policies():
    for policy in valid("holder-policies"):
        if policy.get("kind") == "account":  # a Connect account's readiness: balances, below
            book, state = BalanceBook(PayoutPolicy()), PartitionState(0, DictBackend())
            assert book.set_readiness(state, policy) == []
            assert (book.waiting_reason(state, policy["holder_id"]) is None) == policy["transfers_ready"]
            continue
        assert PayoutPolicy.from_json(policy, PayoutPolicy()).min_payout_micros == policy["min_payout_micros"]
    for raw in invalid("holder-policies"):
        assert first_problem("holder-policy.v1", json.loads(raw)) is not None


def test_stripe_sink_over_every_payout_request_example():
    class Api:
        def find(self, payout_id):
            return None

        def create(self, payout, destination):
            return "tr_example"

    for request in valid("payout-requests"):
        assert execute(request, "acct_example", Api()).transfer_id == "tr_example"


def test_indexer_over_every_work_example():
    for update in valid("catalog-updates"):
        if update["kind"] == "work":
            records = chunk_records(update, 1, HashingEmbedder())
            assert records and all(first_problem("catalog-chunk.v1", r) is None for r in records)


@pytest.mark.parametrize("topic", TOPICS)
def test_clickhouse_sink_over_every_valid_example(topic):
    for offset, payload in enumerate(valid(topic)):
        converted = to_rows(topic, 0, offset, json.dumps(payload).encode())
        if topic in ("inference-events", "catalog-chunks"):
            assert converted is None  # the sink does not store these topics
        else:  # one row per item of a batch record
            assert converted.count == len(converted.dicts()) == len(unbatched(topic, payload))
            assert converted.table and all(converted.dicts())


def test_the_topics_page_is_generated_from_the_schemas():
    from pathlib import Path

    from schemas.docs import render

    page = Path(__file__).resolve().parents[2] / "docs" / "topics.md"
    assert page.read_text() == render(), "docs/topics.md is stale: run `make docs`"
