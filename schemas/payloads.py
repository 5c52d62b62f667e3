"""Payloads typed from their schema (msgspec Structs): decoded and validated in one C
pass at the edge, so a reader sees ``entry.holder_id`` and the checks of the JSON Schema
(required fields, types, ranges, enums) hold without a second, slower validator.

``tests/unit/test_payloads.py`` holds each Struct to its schema under ``schemas/json``
(the same fields, the same required ones, the schema's valid and invalid examples) and
to the ledger module's ``LedgerEntry`` TypedDict, so the three cannot drift apart."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, NamedTuple

import msgspec

# Every check of the schema except its two regular expressions (the id alphabet and an
# upper-case currency): msgspec runs those through Python's re, 1.4 us of a 2.5 us
# decode (benchmarks/sink_bench.py), for rules the ledger's writers already hold
# (tributary.ledger builds every entry; ids come from tributary.ids). Lengths, types,
# ranges, enums and required fields are all checked.
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Micros = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000_000_000)]
Version = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]  # ClickHouse's UInt32
Currency = Annotated[str, msgspec.Meta(min_length=3, max_length=3)]
EntryType = Literal["accrual", "accrual_reversal", "reservation", "payout", "payout_reversal"]


class LedgerEntry(msgspec.Struct, kw_only=True, gc=False):
    """ledger-entry.v1: one double-entry line on ``royalty-ledger``."""

    schema_version: Literal[1]
    entry_id: Id
    entry_type: EntryType
    debit_account: str
    credit_account: str
    amount_micros: Micros
    currency: Currency
    holder_id: Id
    source_id: Id
    # an RFC 3339 time; decoded, so a malformed one is refused here with its field named
    created_at: datetime
    work_id: str | None = None
    event_id: str | None = None
    contract_id: str | None = None
    contract_version: Version | None = None
    attribution_id: str | None = None
    payout_id: str | None = None
    transfer_id: str | None = None


class ExactLedgerEntry(LedgerEntry, kw_only=True, forbid_unknown_fields=True):
    """A ledger entry with no field the schema does not name: its own bytes can be stored
    as they are (nothing in them but checked columns: no ``ingested_at`` of its own)."""


class LedgerBatch(msgspec.Struct, kw_only=True):
    """ledger-batch.v1: many entries of one holder in one record."""

    schema_version: Literal[1]
    kind: Literal["batch"]
    entries: Annotated[list[LedgerEntry], msgspec.Meta(min_length=1, max_length=500)]


_ENTRY = msgspec.json.Decoder(LedgerEntry)
_EXACT = msgspec.json.Decoder(ExactLedgerEntry)
_BATCH = msgspec.json.Decoder(LedgerBatch)


class _Shape(msgspec.Struct):
    kind: object = None


_SHAPE = msgspec.json.Decoder(_Shape)
# how a batch record begins as tributary's own writers encode it: sorted keys (accrue,
# tributary.kafka.dumps) or the schema's order
_BATCH_STARTS = (b'{"entries":', b'{"schema_version":1,"kind":"batch"')


class LedgerRecord(NamedTuple):
    entries: list[LedgerEntry]
    exact: bool  # a single entry whose bytes hold only the schema's fields, all checked


def ledger_record(value: bytes) -> LedgerRecord:
    """The entries of one ``royalty-ledger`` record: a single entry or a batch. Raises
    ``msgspec.ValidationError`` naming the field (``$.entries[3].amount_micros``) and the
    reason, or ``msgspec.DecodeError`` for bytes that are not JSON."""
    if value.startswith(_BATCH_STARTS):
        try:
            return LedgerRecord(_BATCH.decode(value).entries, False)
        except msgspec.ValidationError:
            if _SHAPE.decode(value).kind == "batch":
                raise  # a batch with a bad entry: its own error, not the single-entry one
    try:
        return LedgerRecord([_EXACT.decode(value)], True)
    except msgspec.ValidationError:
        pass  # a field outside the schema, a batch in another key order, or a bad entry
    if _SHAPE.decode(value).kind == "batch":
        return LedgerRecord(_BATCH.decode(value).entries, False)
    return LedgerRecord([_ENTRY.decode(value)], False)
