"""The bad-input corpus: malformed and hostile inference events, each with the
dead-letter code and field it must end in. Run through the ingest logic in
tests/unit/test_bad_input_corpus.py and through the real pipeline (broker, Faust
worker, ClickHouse) in tests/integration/test_pipeline_e2e.py.

``HOSTILE_VALID`` are events that are valid but carry hostile free text (SQL and
markup in the fields that reach ClickHouse): they must be accepted and stored
verbatim, never interpreted.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any


def base(event_id: str, occurred_at: str = "2026-11-20T12:00:00Z") -> dict[str, Any]:
    return {
        "schema_version": 1, "event_id": event_id, "occurred_at": occurred_at, "provider": "acme-ai",
        "model": {"name": "acme-chat", "revision": "2026-10-01"}, "contract_id": "standard-2026",
        "billing": {"revenue_micros": 25_000},
        "output": {"text": "It is a truth universally acknowledged, that a single man in possession of a "
                           "good fortune, must be in want of a wife."},
    }


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    code: str
    field: str | None  # the field the rejection must name (None: the whole payload)
    event_id: str | None  # the event id the dead letter must carry, where it can be read
    # sent before ``raw`` (and accepted): for duplicates and refunds of a known event
    prelude: bytes | None = None


def _event(name: str, change: Any) -> tuple[str, bytes]:
    event_id = f"corpus-{name}"
    event = base(event_id)
    change(event)
    return event_id, json.dumps(event).encode()


def _case(name: str, code: str, field: str | None, change: Any) -> Case:
    event_id, raw = _event(name, change)
    sent = json.loads(raw).get("event_id")
    return Case(name, raw, code, field, sent if isinstance(sent, str) else None)


def _set(path: str, value: Any) -> Any:
    def change(event: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node = event
        for p in parents:
            node = node[p]
        node[last] = value
    return change


def _drop(path: str) -> Any:
    def change(event: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node = event
        for p in parents:
            node = node[p]
        del node[last]
    return change


def _raw(name: str, raw: bytes, code: str, field: str | None = None, event_id: str | None = None) -> Case:
    return Case(name, raw, code, field, event_id)


def _cases() -> list[Case]:
    valid = json.dumps(base("corpus-x")).encode()
    dup_id = "corpus-duplicate"
    conflict_id = "corpus-conflicting"
    conflicting = base(conflict_id)
    conflicting["billing"]["revenue_micros"] = 250_000  # 10x the first copy
    refund_id = "corpus-refunded"
    refund = {"schema_version": 1, "kind": "refund", "event_id": refund_id, "refund_id": "corpus-refund-1",
              "provider": "acme-ai", "occurred_at": "2026-11-20T12:05:00Z", "reason": "customer refund"}
    return [
        # not JSON at all
        _raw("truncated-json", valid[:-7], "malformed_json"),
        _raw("empty-payload", b"", "malformed_json"),
        _raw("plain-text", b"hello, this is not an event", "malformed_json"),
        _raw("json-array", b"[1, 2, 3]", "malformed_json"),
        _raw("json-null", b"null", "malformed_json"),
        _raw("json-number", b"42", "malformed_json"),
        _raw("invalid-utf8", b'{"event_id": "\xff\xfe"}', "malformed_json"),
        _raw("nan-revenue", valid.replace(b'"revenue_micros": 25000', b'"revenue_micros": NaN'), "malformed_json"),
        _raw("deep-nesting", b"[" * 100_000 + b"]" * 100_000, "malformed_json"),
        _raw("huge-payload", json.dumps({**base("corpus-huge"), "metadata": {"pad": "x" * 1_000_100}}).encode(),
             "too_large"),
        # bad unicode that JSON allows but text does not
        _case("lone-surrogate-text", "bad_unicode", "output/text", _set("output/text", "broken \ud800 text")),
        _case("lone-surrogate-key", "bad_unicode", "metadata/\\udc00", _set("metadata", {"\udc00": 1})),
        # schema: missing fields, wrong types, out of range
        _case("missing-event-id", "schema_violation", "event_id", _drop("event_id")),
        _case("missing-occurred-at", "schema_violation", "occurred_at", _drop("occurred_at")),
        _case("missing-billing", "schema_violation", "billing", _drop("billing")),
        _case("missing-output", "schema_violation", "output", _drop("output")),
        _case("event-id-number", "schema_violation", "event_id", _set("event_id", 12345)),
        _case("revenue-as-string", "schema_violation", "billing/revenue_micros", _set("billing/revenue_micros", "25000")),
        _case("revenue-as-float", "schema_violation", "billing/revenue_micros", _set("billing/revenue_micros", 250.5)),
        _case("negative-revenue", "schema_violation", "billing/revenue_micros", _set("billing/revenue_micros", -1)),
        _case("overflowing-revenue", "schema_violation", "billing/revenue_micros",
              _set("billing/revenue_micros", 10**30)),
        _case("negative-tokens", "schema_violation", "billing/output_tokens",
              _set("billing", {"output_tokens": -5})),
        _case("absurd-tokens", "schema_violation", "billing/output_tokens",
              _set("billing", {"output_tokens": 10**12})),
        _case("empty-billing", "schema_violation", "billing", _set("billing", {})),
        _case("input-tokens-only", "bad_billing", "billing", _set("billing", {"input_tokens": 100})),
        _case("text-and-embeddings", "schema_violation", "output",
              _set("output", {"text": "x", "embeddings": [[0.1]], "embedding_model": "all-MiniLM-L6-v2"})),
        _case("text-too-long", "schema_violation", "output/text", _set("output/text", "a" * 100_001)),
        _case("unknown-top-level-field", "schema_violation", "surprise", _set("surprise", True)),
        _case("metadata-not-object", "schema_violation", "metadata", _set("metadata", "req-1")),
        _case("event-id-too-long", "schema_violation", "event_id", _set("event_id", "e" * 129)),
        _case("event-id-with-nul", "schema_violation", "event_id", _set("event_id", "evt\u0000nul")),
        # injection in constrained identifiers never passes the schema
        _case("sql-in-provider", "schema_violation", "provider",
              _set("provider", "acme'); DROP TABLE ledger_entries; --")),
        _case("sql-in-contract-id", "schema_violation", "contract_id",
              _set("contract_id", "standard-2026' OR '1'='1")),
        # versions, contracts, models, time
        _case("schema-version-2", "unsupported_schema_version", "schema_version", _set("schema_version", 2)),
        _case("schema-version-string", "unsupported_schema_version", "schema_version", _set("schema_version", "1")),
        _case("schema-version-missing", "unsupported_schema_version", "schema_version", _drop("schema_version")),
        _case("unknown-contract", "unknown_contract", "contract_id", _set("contract_id", "no-such-contract")),
        _case("contract-not-in-force", "contract_not_in_force", "occurred_at",
              _set("occurred_at", "2025-06-01T00:00:00Z")),
        _case("unknown-model", "unknown_model", "model/name",
              lambda e: e.update(contract_id="research-2026", model={"name": "unlisted-model", "revision": "1"})),
        _case("timestamp-without-zone", "bad_timestamp", "occurred_at", _set("occurred_at", "2026-11-01T12:00:00")),
        _case("timestamp-nonsense", "bad_timestamp", "occurred_at", _set("occurred_at", "yesterday")),
        _case("timestamp-in-future", "occurred_at_in_future", "occurred_at", _set("occurred_at", "2026-12-31T00:00:00Z")),
        # embeddings
        _case("embedding-wrong-dimension", "wrong_embedding_dimension", "output/embeddings/0",
              _set("output", {"embeddings": [[0.1] * 100], "embedding_model": "all-MiniLM-L6-v2"})),
        _case("embedding-wrong-model", "wrong_embedding_model", "output/embedding_model",
              _set("output", {"embeddings": [[0.1] * 384], "embedding_model": "text-embedding-3-small"})),
        # ambiguous or inexact input is rejected, never interpreted (the hostile check's findings)
        _raw("duplicate-key-money", valid.replace(b'"revenue_micros": 25000',
                                                  b'"revenue_micros": 25000, "revenue_micros": 25000000'),
             "duplicate_key", "billing/revenue_micros", "corpus-x"),
        _raw("duplicate-key-event-id", valid.replace(b'"event_id": "corpus-x"',
                                                     b'"event_id": "corpus-x", "event_id": "corpus-other"'),
             "duplicate_key", "event_id"),
        _raw("duplicate-key-nested", valid.replace(b'"revision": "2026-10-01"',
                                                   b'"revision": "2026-10-01", "revision": "2026-10-02"'),
             "duplicate_key", "model/revision", "corpus-x"),
        _case("integral-float-revenue", "schema_violation", "billing/revenue_micros",
              _set("billing/revenue_micros", 25000.0)),
        _case("integral-float-tokens", "schema_violation", "billing/output_tokens",
              _set("billing", {"output_tokens": 120.0})),
        _case("float-schema-version", "unsupported_schema_version", "schema_version", _set("schema_version", 1.0)),
        _case("boolean-schema-version", "unsupported_schema_version", "schema_version", _set("schema_version", True)),
        _case("timestamp-before-2000", "bad_timestamp", "occurred_at", _set("occurred_at", "0001-01-01T00:00:00Z")),
        # duplicates and refunds (after a valid prelude)
        Case("duplicate-event-id", json.dumps(base(dup_id)).encode(), "duplicate_event_id", "event_id", dup_id,
             prelude=json.dumps(base(dup_id)).encode()),
        Case("conflicting-duplicate", json.dumps(conflicting).encode(), "conflicting_duplicate", "event_id",
             conflict_id, prelude=json.dumps(base(conflict_id)).encode()),
        Case("duplicate-refund", json.dumps({**refund, "refund_id": "corpus-refund-2"}).encode(), "duplicate_refund",
             "event_id", refund_id, prelude=json.dumps(base(refund_id)).encode() + b"\n" + json.dumps(refund).encode()),
        _raw("refund-unknown-event", json.dumps({**refund, "event_id": "corpus-never-sent",
                                                 "refund_id": "corpus-refund-3"}).encode(),
             "refund_for_unknown_event", "event_id", "corpus-never-sent"),
        _raw("refund-time-before-2000", json.dumps({**refund, "occurred_at": "1900-01-01T00:00:00Z"}).encode(),
             "bad_timestamp", "occurred_at", refund_id),
        _raw("refund-without-reason", json.dumps({k: v for k, v in refund.items() if k != "reason"}).encode(),
             "schema_violation", "reason", refund_id),
    ]


CASES = _cases()

# valid events whose free text is hostile: stored verbatim, never executed or rendered
HOSTILE_TEXT = {
    "model/name": "x'); DROP TABLE ledger_entries; --",
    "model/revision": "<script>alert(1)</script>",
    "output/text": "Robert'); DROP TABLE priced_events;-- \\' \" ` $(rm -rf /) {{7*7}}",
    "metadata": {"request_id": "1' UNION SELECT * FROM holders --", "note": "\u202egnp.exe \u0000 zero"},
}


def hostile_valid(event_id: str = "corpus-hostile-valid") -> dict[str, Any]:
    event = base(event_id)
    event["model"] = {"name": HOSTILE_TEXT["model/name"], "revision": HOSTILE_TEXT["model/revision"]}
    event["output"] = {"text": HOSTILE_TEXT["output/text"]}
    event["metadata"] = copy.deepcopy(HOSTILE_TEXT["metadata"])
    return event


def preludes() -> list[bytes]:
    return [part for case in CASES if case.prelude for part in case.prelude.split(b"\n")]
