"""``tributary reconcile``: the ledger's payouts against the transfers Stripe reports.

Pure comparison (``reconcile``) over two lists, so every rule is unit-tested; the CLI
reads the payouts from ClickHouse and the transfers from Stripe (paginated).

Each payout is matched to transfers by ``transfer_group`` (= payout id, set on every
transfer the sink creates), falling back to ``metadata.payout_id``. Findings:

  duplicate_transfers      more than one transfer for one payout (a double payment)
  amount_mismatch          the transfer's amount or currency differs from the ledger's payout
  destination_mismatch     paid to another Connect account than the ledger says
  paid_without_transfer    the ledger says paid, Stripe has no such transfer
  transfer_id_mismatch     the ledger names a different transfer id than Stripe's
  failed_but_transferred   the ledger says failed (amount returned to the holder),
                           yet Stripe has a transfer for it
  transfer_without_payout  a transfer Stripe reports that no ledger payout explains
  pending                  requested, no outcome yet (not a mismatch unless old)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sinks.stripe.payouts import FoundTransfer

MISMATCHES = ("duplicate_transfers", "amount_mismatch", "destination_mismatch", "paid_without_transfer",
              "transfer_id_mismatch", "failed_but_transferred", "transfer_without_payout")


@dataclass(frozen=True)
class LedgerPayout:
    payout_id: str
    holder_id: str
    amount_micros: int
    status: str  # "paid" | "failed" | "pending"
    transfer_id: str = ""
    destination: str = ""
    currency: str = "USD"


@dataclass(frozen=True)
class Finding:
    kind: str
    payout_id: str
    holder_id: str
    detail: str

    @property
    def is_mismatch(self) -> bool:
        return self.kind in MISMATCHES

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "payout_id": self.payout_id, "holder_id": self.holder_id, "detail": self.detail}


def reconcile(payouts: list[LedgerPayout], transfers: list[FoundTransfer]) -> list[Finding]:
    by_payout: dict[str, list[FoundTransfer]] = {}
    for t in transfers:
        key = t.transfer_group or t.payout_id or ""
        by_payout.setdefault(key, []).append(t)
    findings: list[Finding] = []
    known = set()
    for p in sorted(payouts, key=lambda p: p.payout_id):
        known.add(p.payout_id)
        found = by_payout.get(p.payout_id, [])

        def note(kind: str, detail: str, p: LedgerPayout = p) -> None:
            findings.append(Finding(kind, p.payout_id, p.holder_id, detail))

        if len(found) > 1:
            note("duplicate_transfers", f"{len(found)} transfers: " + ", ".join(
                t.describe() for t in found))
        if p.status == "pending":
            if found:
                note("pending", f"no outcome in the ledger yet, but Stripe has {found[0].id}: the sink "
                                "will record it when it resumes")
            else:
                note("pending", "requested, no outcome yet")
            continue
        if p.status == "failed":
            if found:
                note("failed_but_transferred", f"ledger says failed (amount returned to the balance) but "
                                               f"Stripe has {found[0].describe()}")
            continue
        if not found:
            note("paid_without_transfer", f"ledger says paid by {p.transfer_id or '?'}; Stripe reports no "
                                          "transfer for this payout")
            continue
        transfer = found[0]
        if (transfer.currency.upper(), transfer.amount_micros) != (p.currency, p.amount_micros):
            note("amount_mismatch", f"ledger {p.amount_micros} micros {p.currency}, Stripe {transfer.describe()}")
        if p.destination and transfer.destination and transfer.destination != p.destination:
            note("destination_mismatch", f"ledger {p.destination}, Stripe {transfer.destination}")
        if p.transfer_id and all(t.id != p.transfer_id for t in found):
            note("transfer_id_mismatch", f"ledger {p.transfer_id}, Stripe {transfer.id}")
    for key, found in sorted(by_payout.items()):
        if key not in known:
            for t in found:
                findings.append(Finding("transfer_without_payout", key, "",
                                        f"{t.describe()} to {t.destination}, no ledger payout"))
    return findings


LEDGER_SQL = """
    SELECT r.payout_id, r.holder_id, r.amount_micros,
           if(s.payout_id = '', 'pending', s.status) AS status, s.transfer_id, s.destination, r.currency
    FROM (SELECT payout_id, holder_id, amount_micros FROM payout_requests FINAL) AS r
    LEFT JOIN (SELECT payout_id, status, transfer_id, destination FROM payout_results FINAL) AS s
      ON r.payout_id = s.payout_id
    SETTINGS join_use_nulls = 0"""


def ledger_payouts(rows: list[list[Any]]) -> list[LedgerPayout]:
    return [LedgerPayout(str(r[0]), str(r[1]), int(r[2]), str(r[3]), str(r[4] or ""), str(r[5] or ""), str(r[6]))
            for r in rows]
