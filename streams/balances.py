"""Holder balances and payout triggers, idempotent under replay.

A holder's state records every ledger entry id it has applied, so a re-delivered
entry (same offset after a crash, or a duplicate produced upstream) never counts
twice. If a replayed entry had triggered a payout, the same payout request (same
deterministic id) is returned again, so a crash between the state update and the
send can never lose a payout request; downstream dedupes by payout id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tributary.ids import payout_id
from tributary.money import whole_cents


@dataclass
class HolderBalance:
    holder_id: str
    currency: str = "USD"
    accrued_micros: int = 0  # all accruals credited to the holder
    reserved_micros: int = 0  # requested for payout and not returned by a failure
    paid_micros: int = 0  # confirmed paid by Stripe
    payout_sequence: int = 0
    # entry id -> payout id it triggered ("" if none)
    applied: dict[str, str] = field(default_factory=dict)
    payouts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def unpaid_micros(self) -> int:
        return self.accrued_micros - self.reserved_micros

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> HolderBalance:
        return cls(**raw)


def apply_entry(
    state: HolderBalance, entry: dict[str, Any], threshold_micros: int, now: str
) -> dict[str, Any] | None:
    """Apply one ledger entry to ``state`` in place; return a payout request to send.

    Returns the original request again when a replayed entry had triggered one.
    """
    entry_id = entry["entry_id"]
    if entry_id in state.applied:
        triggered = state.applied[entry_id]
        return state.payouts.get(triggered) if triggered else None
    amount = int(entry["amount_micros"])
    kind = entry["entry_type"]
    if kind == "accrual":
        state.accrued_micros += amount
    elif kind == "payout":
        state.paid_micros += amount
    elif kind == "payout_reversal":
        state.reserved_micros -= amount
    else:
        raise ValueError(f"unknown entry_type {kind!r} in entry {entry_id}")
    request = None
    if kind != "payout" and state.unpaid_micros >= threshold_micros:
        amount_due = whole_cents(state.unpaid_micros)  # sub-cent remainder stays on balance
        if amount_due > 0:
            pid = payout_id(state.holder_id, state.payout_sequence)
            state.reserved_micros += amount_due
            request = {
                "schema_version": 1,
                "payout_id": pid,
                "holder_id": state.holder_id,
                "amount_micros": amount_due,
                "currency": state.currency,
                "sequence": state.payout_sequence,
                "balance_after_micros": state.unpaid_micros,
                "requested_at": now,
            }
            state.payout_sequence += 1
            state.payouts[pid] = request
    state.applied[entry_id] = str(request["payout_id"]) if request else ""
    return request
