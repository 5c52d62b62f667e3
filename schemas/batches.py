"""Batch records: one Kafka record carrying many events, ``{"schema_version": 1,
"kind": "batch", <field>: [...]}``. ``events`` on inference-events (inference-batch.v1),
``requests`` on attribution-requests (attribution-request-batch.v1). All items of a
batch have the same home partition, the one the record is on; each item is judged on
its own, so one bad item never takes its neighbours with it."""

from __future__ import annotations

from typing import Any

BATCH_MAX_EVENTS = 1000  # the schemas' maxItems
BATCH_MAX_ENTRIES = 500  # ledger-batch.v1's maxItems (a record of ~300 KB at most)


def items(value: Any, field: str) -> list[Any] | None:
    """The items of batch record ``value`` (its list ``field``), or None when ``value``
    is not a batch record (a single event or request, or anything else)."""
    if isinstance(value, dict) and value.get("kind") == "batch":
        found = value.get(field)
        if isinstance(found, list):
            return found
    return None
