"""Deterministic ids: every derived record's id is a hash of its source ids, so a
replay produces the same id and downstream stores can drop the duplicate."""

from __future__ import annotations

import hashlib


def derived_id(prefix: str, *parts: object) -> str:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return f"{prefix}_{digest[:24]}"


def ledger_entry_id(source_id: str, account: str, entry_type: str) -> str:
    return derived_id("le", entry_type, source_id, account)


def attribution_id(event_id: str, catalog_version: int, model_revision: str) -> str:
    return derived_id("at", event_id, catalog_version, model_revision)


def payout_id(holder_id: str, sequence: int, currency: str) -> str:
    """A holder's ``sequence``-th payout in ``currency`` (each currency counts its own)."""
    return derived_id("po", holder_id, currency, sequence)


def chunk_id(work_id: str, catalog_version: int, chunk_index: int) -> str:
    return derived_id("ch", work_id, catalog_version, chunk_index)
