"""Kafka records -> ClickHouse rows. Pure: (topic, partition, offset, value) in, the rows
of one table out (one per item of a batch record) as JSON lines, the form ClickHouse
parses itself (``JSONEachRow``): the sink never builds per-value Python objects for the
insert. The ledger, the largest topic, is decoded straight into typed entries
(``schemas.payloads``, msgspec, validated in C) and encoded back as lines in one call;
the other topics build a dict per row and encode it with orjson."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson

from schemas.batches import items
from schemas.payloads import ledger_record
from tributary.topics import Topic
from tributary.topology import CLICKHOUSE_SOURCES

Row = dict[str, Any]
_LINES = msgspec.json.Encoder()

_INT64 = (-(2**63), 2**63 - 1)
# every integer column the dict-built rows fill, and the range its ClickHouse type holds
# (tests/integration/test_data_dictionary.py checks this against the engine's types)
INT_COLUMNS: dict[str, tuple[int, int]] = {
    **dict.fromkeys(("revenue_micros", "pool_micros", "amount_micros", "catalog_offset", "source_offset",
                     "price_per_1k_input_tokens_micros", "price_per_1k_output_tokens_micros"), _INT64),
    **dict.fromkeys(("attributed_ppm", "unattributed_ppm", "contract_version", "version", "royalty_rate_bps",
                     "probable_weight_bps"), (0, 2**32 - 1)),
    **dict.fromkeys(("catalog_version", "sequence"), (0, 2**64 - 1)),
    "source_partition": (-(2**31), 2**31 - 1), "removed": (0, 255),
}


@dataclass(slots=True)
class Rows:
    """What one record becomes: ``count`` rows of ``table`` as newline-terminated JSON
    lines, and the event its first row names (a dead letter of the record names it)."""

    table: str
    lines: bytes
    count: int
    event_id: str | None = None

    @classmethod
    def of(cls, table: str, rows: list[Row]) -> Rows:
        """Rows built from a record's fields: each value checked as the column will hold it
        (ClickHouse's JSON input would store a null as 0 or "" and wrap an integer that
        does not fit), so such a record is refused here, naming the field."""
        for row in rows:
            for name, value in row.items():
                if value is None:
                    raise ValueError(f"field {name}: null where a value is required")
                bounds = INT_COLUMNS.get(name)
                if bounds is not None and (type(value) is not int or not bounds[0] <= value <= bounds[1]):
                    raise ValueError(f"field {name}: {value!r} is not an integer from {bounds[0]} to {bounds[1]}")
        event_id = rows[0].get("event_id") if rows else None
        return cls(table, b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in rows), len(rows),
                   event_id if isinstance(event_id, str) else None)

    def dicts(self) -> list[Row]:
        """The rows decoded again (tests, and reading a row back for a message)."""
        return [orjson.loads(line) for line in self.lines.split(b"\n") if line.strip()]


def _time(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _s(value: Any) -> str:
    return "" if value is None else str(value)


def priced_event(v: dict[str, Any]) -> Row:
    return {
        "event_id": v["event_id"], "occurred_at": _time(v["occurred_at"]), "provider": v["provider"],
        "model_name": v["model"]["name"], "model_revision": v["model"]["revision"],
        "contract_id": v["contract"]["contract_id"], "contract_version": v["contract"]["version"],
        "currency": v["contract"]["currency"], "revenue_micros": v["revenue_micros"],
        "pool_micros": v["pool_micros"], "source_partition": v["source"]["partition"],
        "source_offset": v["source"]["offset"], "metadata": json.dumps(v.get("metadata") or {}),
    }


def attribution(v: dict[str, Any]) -> Row:
    ev = v["evidence"]
    return {
        "attribution_id": v["attribution_id"], "event_id": v["event_id"],
        "occurred_at": _time(v.get("occurred_at")), "provider": v.get("provider", ""),
        "model_name": v.get("model", {}).get("name", ""), "pool_micros": v["pool_micros"],
        "attributed_ppm": 1_000_000 - v["unattributed_ppm"], "unattributed_ppm": v["unattributed_ppm"],
        "works": sorted({s["work_id"] for s in v["shares_ppm"]}),
        "catalog_version": ev["catalog_version"], "embed_model": ev["model_name"],
        "embed_revision": ev["model_revision"], "threshold": float(ev["threshold"]),
        "shares": json.dumps(v["shares_ppm"]), "evidence": json.dumps(ev),
    }


def payout_request(v: dict[str, Any]) -> Row:
    return {
        "payout_id": v["payout_id"], "holder_id": v["holder_id"], "amount_micros": v["amount_micros"],
        "currency": v["currency"], "sequence": v["sequence"], "requested_at": _time(v.get("requested_at")),
    }


def payout_result(v: dict[str, Any]) -> Row:
    return {
        "payout_id": v["payout_id"], "holder_id": v["holder_id"], "status": v["status"],
        "amount_micros": v["amount_micros"], "transfer_id": _s(v.get("transfer_id")),
        "destination": _s(v.get("destination")), "error": _s(v.get("error")),
        "completed_at": _time(v.get("completed_at")),
    }


def dead_letter(v: dict[str, Any], topic: str, partition: int, offset: int) -> Row:
    """Keyed by the *source* message, so a dead letter written again on a replay (a new
    record at a new offset of the dead-letter topic) is the same row, not a second one."""
    src = v.get("source", {})
    key = (f"{src['topic']}:{src['partition']}:{src['offset']}" if {"topic", "partition", "offset"} <= src.keys()
           else f"{topic}:{partition}:{offset}")
    return {
        "dlq_key": key, "error_code": v.get("error_code", ""),
        "field": _s(v.get("field")), "reason": v.get("reason", ""), "event_id": _s(v.get("event_id")),
        "source_topic": _s(src.get("topic")), "source_partition": int(src.get("partition", -1)),
        "source_offset": int(src.get("offset", -1)), "payload": v.get("payload", ""),
    }


def correction(v: dict[str, Any]) -> Row:
    return {
        "correction_id": v["correction_id"], "kind": v["kind"], "event_id": v["event_id"],
        "provider": _s(v.get("provider")), "reason": _s(v.get("reason")),
        "occurred_at": _time(v.get("occurred_at")), "work_id": _s(v.get("work_id")),
        "decision": _s(v.get("decision")), "reviewer": _s(v.get("reviewer")),
    }


def contract(v: dict[str, Any]) -> Row:
    return {
        "contract_id": v["contract_id"], "version": v["version"], "currency": v["currency"],
        "royalty_rate_bps": v["royalty_rate_bps"],
        "price_per_1k_input_tokens_micros": v["price_per_1k_input_tokens_micros"],
        "price_per_1k_output_tokens_micros": v["price_per_1k_output_tokens_micros"],
        "valid_from": _time(v["valid_from"]), "valid_to": _time(v["valid_to"]),
        "models": list(v.get("models") or []), "probable_weight_bps": v.get("probable_weight_bps", 10_000),
    }


def holder_policy(v: dict[str, Any], partition: int, offset: int) -> Row:
    """A holder's payout policy or its account readiness (kind=account), one row per key
    as on the compacted topic; the latest record of a key has the highest offset (a key
    always lands on the same partition)."""
    account = v.get("kind") == "account"
    return {
        "policy_key": v["holder_id"] + ("#account" if account else ""), "holder_id": v["holder_id"],
        "kind": "account" if account else "policy", "body": json.dumps(v, sort_keys=True),
        "source_partition": partition, "source_offset": offset,
    }


def review_request(v: dict[str, Any]) -> Row:
    return {
        "request_id": v["request_id"], "event_id": v["event_id"], "work_id": v["work_id"],
        "holder_id": v["holder_id"], "entry_id": v["entry_id"], "reason": v["reason"],
        "requested_at": _time(v.get("requested_at")), "requested_by": _s(v.get("requested_by")),
    }


def catalog_update(v: dict[str, Any], offset: int) -> tuple[str, Row] | None:
    kind = v.get("kind")
    if kind == "work":
        return "works", {
            "work_id": v["work_id"], "holder_id": _s(v.get("holder_id")), "title": _s(v.get("title")),
            "license": _s(v.get("license")), "removed": 0, "catalog_offset": offset,
        }
    if kind == "work_removed":  # its own table: the work's holder and title stay in works
        return "work_withdrawals", {"work_id": v["work_id"], "reason": _s(v.get("title")), "catalog_offset": offset}
    if kind == "holder":
        return "holders", {
            "holder_id": v["holder_id"], "name": _s(v.get("name")),
            "stripe_account": _s(v.get("stripe_account")), "catalog_offset": offset,
        }
    return None


def to_rows(topic: str, partition: int, offset: int, value: bytes | None) -> Rows | None:
    """The rows a record becomes, all in one table: one row for most records, one per
    item of a batch record (requests on attribution-requests, entries on
    royalty-ledger); None for records the sink does not store. Raises on a record that
    cannot become rows (a ledger record's error names the field and the reason)."""
    if value is None:
        return None
    if topic == Topic.ROYALTY_LEDGER:  # typed and validated in one pass, encoded in one call
        entries, exact = ledger_record(value)
        if exact and b"\n" not in value:
            # a single entry holding only the schema's fields, every one checked, is its own
            # line: ClickHouse skips schema_version (not a column) and parses the same values
            return Rows("ledger_entries", value + b"\n", 1, entries[0].event_id)
        return Rows("ledger_entries", _LINES.encode_lines(entries), len(entries), entries[0].event_id)
    v = orjson.loads(value)  # C: ~7x json's speed (measured in benchmarks/sink_bench.py)
    match topic:
        case Topic.ATTRIBUTION_REQUESTS:
            requests = items(v, "requests")
            return Rows.of("priced_events", [priced_event(r) for r in ([v] if requests is None else requests)])
        case Topic.ATTRIBUTIONS:
            return Rows.of("attributions", [attribution(v)])
        case Topic.PAYOUT_REQUESTS:
            return Rows.of("payout_requests", [payout_request(v)])
        case Topic.PAYOUT_RESULTS:
            return Rows.of("payout_results", [payout_result(v)])
        case Topic.INFERENCE_EVENTS_DLQ | Topic.SINK_CLICKHOUSE_DLQ:
            return Rows.of("dead_letters", [dead_letter(v, topic, partition, offset)])
        case Topic.CATALOG_UPDATES:
            converted = catalog_update(v, offset)
            return None if converted is None else Rows.of(converted[0], [converted[1]])
        case Topic.CORRECTIONS:
            return Rows.of("corrections", [correction(v)])
        case Topic.CONTRACTS:
            return Rows.of("contracts", [contract(v)])
        case Topic.HOLDER_POLICIES:
            return Rows.of("holder_policies", [holder_policy(v, partition, offset)])
        case Topic.REVIEW_REQUESTS:
            return Rows.of("review_requests", [review_request(v)])
    return None



SOURCE_TOPICS = list(CLICKHOUSE_SOURCES)  # the topology registry's subscriptions for this sink
