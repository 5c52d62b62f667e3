"""Accrual: an attribution -> double-entry ledger entries that conserve the pool."""

from __future__ import annotations

from typing import Any

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
