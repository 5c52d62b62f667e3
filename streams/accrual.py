"""Accrual: an attribution -> double-entry ledger entries that conserve the pool."""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from streams.contracts import parse_time
from streams.window import ExpiryIndex
from tributary.ids import ledger_entry_id
from tributary.money import SHARE_DENOMINATOR, UNATTRIBUTED, split_pool


def provider_liability(provider: str) -> str:
    return f"provider:{provider}:royalty_liability"


def holder_payable(holder_id: str) -> str:
    return f"holder:{holder_id}:payable"


def holder_paid(holder_id: str) -> str:
    return f"holder:{holder_id}:paid"


def accrue(attribution: dict[str, Any], created_at: str) -> list[dict[str, Any]]:
    """Split the event's pool by its shares, one accrual entry per (holder, work).

    sum(entries) == pool_micros exactly: the unattributed part is an entry credited
    to the escrow account. Entry ids are derived from the attribution id, so a replay
    yields the same ids.
    """
    pool = int(attribution["pool_micros"])
    weights: dict[str, int] = {}
    owners: dict[str, tuple[str, str | None]] = {}
    for share in attribution["shares_ppm"]:
        key = f"{share['holder_id']}\x1f{share['work_id']}"
        weights[key] = weights.get(key, 0) + int(share["share_ppm"])
        owners[key] = (share["holder_id"], share["work_id"])
    unattributed = SHARE_DENOMINATOR - sum(weights.values())
    if unattributed < 0:
        raise ValueError(f"attribution {attribution['attribution_id']} shares exceed 100%")
    weights[UNATTRIBUTED] = unattributed
    owners[UNATTRIBUTED] = (UNATTRIBUTED, None)
    split = split_pool(pool, weights)
    contract = attribution["contract"]
    entries = []
    for key in sorted(split):
        amount = split[key]
        if amount == 0 and key != UNATTRIBUTED:
            continue
        holder_id, work_id = owners[key]
        credit = UNATTRIBUTED if key == UNATTRIBUTED else holder_payable(holder_id)
        entries.append(
            {
                "schema_version": 1,
                "entry_id": ledger_entry_id(attribution["attribution_id"], key, "accrual"),
                "entry_type": "accrual",
                "debit_account": provider_liability(attribution["provider"]),
                "credit_account": credit,
                "amount_micros": amount,
                "currency": contract["currency"],
                "holder_id": holder_id,
                "work_id": work_id,
                "event_id": attribution["event_id"],
                "source_id": attribution["attribution_id"],
                "contract_id": contract["contract_id"],
                "contract_version": contract["version"],
                "attribution_id": attribution["attribution_id"],
                "payout_id": None,
                "transfer_id": None,
                "created_at": created_at,
            }
        )
    return entries


def payout_entry(result: dict[str, Any], currency: str, created_at: str) -> dict[str, Any]:
    """The ledger entry that records a payout's outcome.

    paid: holder payable -> holder paid (with the transfer id).
    failed: a reversal that returns the reserved amount to the holder's balance.
    """
    holder_id = result["holder_id"]
    paid = result["status"] == "paid"
    entry_type = "payout" if paid else "payout_reversal"
    return {
        "schema_version": 1,
        "entry_id": ledger_entry_id(result["payout_id"], holder_id, entry_type),
        "entry_type": entry_type,
        "debit_account": holder_payable(holder_id) if paid else f"holder:{holder_id}:payout_reserved",
        "credit_account": holder_paid(holder_id) if paid else holder_payable(holder_id),
        "amount_micros": int(result["amount_micros"]),
        "currency": currency,
        "holder_id": holder_id,
        "work_id": None,
        "event_id": None,
        "source_id": result["payout_id"],
        "contract_id": None,
        "contract_version": None,
        "attribution_id": None,
        "payout_id": result["payout_id"],
        "transfer_id": result.get("transfer_id"),
        "created_at": created_at,
    }


def reverse(entries: list[dict[str, Any]], correction: dict[str, Any], created_at: str) -> list[dict[str, Any]]:
    """Reversal entries that cancel ``entries`` exactly (a refund): same accounts and
    amounts, debit and credit swapped, new ids derived from the correction."""
    reversals = []
    for entry in entries:
        if entry["entry_type"] != "accrual":
            continue
        reversals.append({
            **entry,
            "entry_id": ledger_entry_id(correction["correction_id"], entry["entry_id"], "accrual_reversal"),
            "entry_type": "accrual_reversal",
            "debit_account": entry["credit_account"],
            "credit_account": entry["debit_account"],
            "source_id": correction["correction_id"],
            "created_at": created_at,
        })
    return reversals


# the fields of an attribution that determine its ledger entries
ACCRUAL_FIELDS = ("attribution_id", "event_id", "provider", "contract", "pool_micros", "shares_ppm")


@dataclass
class AccrualBook:
    """What the accrue agent remembers per event (``ac:<event_id>``): the attribution
    fields its entries derive from, when they were created, and any refund. One
    table write per message, so a crash never leaves half a record; a replay
    re-sends the same entries (same ids, same ``created_at``). Records expire
    ``refund_window_s`` of event time behind the newest event of their partition;
    refunds after that are recorded on the corrections topic but reverse nothing."""

    table: MutableMapping[str, Any]
    refund_window_s: float = 30 * 86_400
    _index: ExpiryIndex = field(init=False)
    needs_rebuild: bool = True

    def __post_init__(self) -> None:
        self._index = ExpiryIndex(self.refund_window_s)

    def rebuild(self) -> None:
        self._index.clear()
        for key, value in list(self.table.items()):
            if key.startswith("ac:"):
                self._index.add(value["part"], value["t"], key)
        self.needs_rebuild = False

    def _entries(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        return accrue(record["attribution"], record["created_at"]) if record.get("attribution") else []

    def on_attribution(self, attribution: dict[str, Any], partition: int, now: str) -> list[dict[str, Any]]:
        key = f"ac:{attribution['event_id']}"
        record = self.table.get(key) or {}
        if record.get("attribution") and record["attribution"]["attribution_id"] != attribution["attribution_id"]:
            # the same event attributed again (e.g. after a catalog change): the first attribution
            # stands; a re-attribution is a correction, not a second accrual
            return []
        if not record.get("attribution"):
            occurred = attribution.get("occurred_at")
            record = {**record, "attribution": {k: attribution[k] for k in ACCRUAL_FIELDS},
                      "created_at": now, "part": partition,
                      "t": parse_time(occurred).timestamp() if occurred else record.get("t", 0.0)}
            if record.get("refund") and not record.get("refunded_at"):
                record["refunded_at"] = now
            self.table[key] = record
            self._index.add(partition, record["t"], key)
        return self._send(record, partition)

    def on_correction(self, correction: dict[str, Any], partition: int, now: str) -> list[dict[str, Any]]:
        key = f"ac:{correction['event_id']}"
        record = self.table.get(key) or {"part": partition, "t": parse_time(correction["occurred_at"]).timestamp()}
        if record.get("refund") and record["refund"]["correction_id"] != correction["correction_id"]:
            return []  # ingest allows one refund per event; a second id is ignored here too
        if not record.get("refund"):
            record = {**record, "refund": correction, "refunded_at": now if record.get("attribution") else None}
            self.table[key] = record
            if not record.get("attribution"):
                self._index.add(partition, record["t"], key)
        return self._send(record, partition)

    def _send(self, record: dict[str, Any], partition: int) -> list[dict[str, Any]]:
        entries = self._entries(record)
        if record.get("refund") and record.get("refunded_at"):
            entries += reverse(entries, record["refund"], record["refunded_at"])
        for expired in self._index.expire(partition):
            self.table.pop(expired, None)
        return entries
