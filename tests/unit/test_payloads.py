"""The typed payloads (schemas.payloads) say what their JSON Schemas say: the same fields,
the same required ones, every valid example accepted and every invalid one refused, and
the ledger module's TypedDict names the same fields."""

from __future__ import annotations

import json

import msgspec
import pytest

from schemas import examples, first_problem, schema
from schemas.payloads import LedgerBatch, LedgerEntry, ledger_record
from tributary import ledger


def ledger_entries(value: bytes) -> list:
    return ledger_record(value).entries


def fields(struct: type[msgspec.Struct]) -> tuple[set[str], set[str]]:
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    return {f.name for f in info.fields}, {f.name for f in info.fields if f.required}


@pytest.mark.parametrize(("struct", "name"), [(LedgerEntry, "ledger-entry.v1"), (LedgerBatch, "ledger-batch.v1")])
def test_each_struct_has_its_schemas_fields_and_required_ones(struct, name):
    names, required = fields(struct)
    assert names == set(schema(name)["properties"])
    assert required == set(schema(name)["required"])


def test_the_ledger_modules_entry_names_the_same_fields():
    assert set(ledger.LedgerEntry.__annotations__) == fields(LedgerEntry)[0]


def test_every_ledger_example_is_judged_as_its_schema_judges_it():
    judged = 0
    for name, raw in examples("royalty-ledger"):
        payload = json.loads(raw)
        schema_name = "ledger-batch.v1" if payload.get("kind") == "batch" else "ledger-entry.v1"
        schema_ok = first_problem(schema_name, payload) is None
        try:
            entries = ledger_entries(raw)
            typed_ok = all(first_problem("ledger-entry.v1", msgspec.to_builtins(e)) is None for e in entries)
        except msgspec.ValidationError:
            typed_ok = False
        assert typed_ok == schema_ok == name.startswith("valid-"), name
        judged += 1
    assert judged >= 8


def entry(**changes: object) -> dict:
    base = json.loads(dict(examples("royalty-ledger"))["valid-accrual.json"])
    return {**base, **changes}


@pytest.mark.parametrize(("changes", "field"), [
    ({"amount_micros": "100"}, "amount_micros"),
    ({"amount_micros": 100.0}, "amount_micros"),  # not an integer as written: never an Int64 by accident
    ({"amount_micros": 10**15 + 1}, "amount_micros"),
    ({"contract_version": 2**32}, "contract_version"),
    ({"currency": "dollars"}, "currency"),
    ({"entry_type": "gift"}, "entry_type"),
    ({"holder_id": ""}, "holder_id"),
    ({"entry_id": "x" * 129}, "entry_id"),
    ({"created_at": "yesterday"}, "created_at"),
    ({"schema_version": 2}, "schema_version"),
    ({"contract_version": "1"}, "contract_version"),
])
def test_a_bad_value_is_refused_naming_its_field(changes, field):
    with pytest.raises(msgspec.ValidationError, match=rf"`\$\.{field}`"):
        ledger_entries(json.dumps(entry(**changes)).encode())


def test_a_missing_field_is_refused_by_name():
    payload = entry()
    del payload["source_id"]
    with pytest.raises(msgspec.ValidationError, match="missing required field `source_id`"):
        ledger_entries(json.dumps(payload).encode())


def test_single_entries_and_batches_both_decode_and_a_batchs_error_is_its_own():
    single = entry()
    assert [e.entry_id for e in ledger_entries(json.dumps(single).encode())] == [single["entry_id"]]
    batch = {"schema_version": 1, "kind": "batch", "entries": [single, entry(entry_id="le_2", amount_micros=7)]}
    assert [e.amount_micros for e in ledger_entries(json.dumps(batch).encode())] == [single["amount_micros"], 7]
    batch["entries"][1]["amount_micros"] = -1
    with pytest.raises(msgspec.ValidationError, match=r"`\$\.entries\[1\]\.amount_micros`"):
        ledger_entries(json.dumps(batch).encode())
    # as accrue writes it: sorted keys, so "entries" comes first
    from tributary import kafka

    assert [e.amount_micros for e in ledger_entries(kafka.dumps({**batch, "entries": batch["entries"][:1]}))] == [
        single["amount_micros"]]
    with pytest.raises(msgspec.ValidationError, match=r"`\$\.entries\[1\]\.amount_micros`"):
        ledger_entries(kafka.dumps(batch))
    # a batch of one is a batch (its entry is stored, not the record as a row)
    one = kafka.dumps({"schema_version": 1, "kind": "batch", "entries": [single]})
    entries, exact = ledger_record(one)
    assert not exact and msgspec.to_builtins(entries) == msgspec.to_builtins(ledger_entries(json.dumps(single).encode()))
    # a single entry is stored as its own bytes only when it holds nothing but the schema's fields
    assert ledger_record(json.dumps(single).encode()).exact
    injected = ledger_record(json.dumps({**single, "ingested_at": "2099-01-01 00:00:00"}).encode())
    assert not injected.exact and injected.entries[0].entry_id == single["entry_id"]
    # a yen payout above a million yen (10**12 micros) is a valid entry
    assert ledger_entries(json.dumps(entry(amount_micros=15 * 10**11, currency="JPY")).encode())
    # an entry whose text happens to contain "batch" is still a single entry
    assert ledger_entries(json.dumps(entry(work_id="batch")).encode())[0].work_id == "batch"
    with pytest.raises(msgspec.ValidationError):
        ledger_entries(json.dumps({"schema_version": 1, "kind": "batch", "entries": []}).encode())
