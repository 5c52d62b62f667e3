"""``tributary reconcile``: payout requests, their results, their ledger entries and the
transfers Stripe reports, all against each other.

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
  not_reserved             a request with no reservation (payable -> reserved) in the ledger:
                           informational (requests made before reservations were posted)
  reservation_mismatch     a reservation of another amount than the request
  outcome_not_posted       a result with no payout / payout_reversal entry in the ledger
  outcome_mismatch         the ledger's outcome entry disagrees with the result (status,
                           amount or transfer id)
  entry_without_result     a payout / payout_reversal entry with no result
  pending                  requested, no outcome yet (not a mismatch unless old)

Every finding says what to do (``Finding.action``). Amounts compare in the payout's
currency, micros against Stripe's minor units of the transfer's currency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sinks.stripe.payouts import FoundTransfer

MISMATCHES = ("duplicate_transfers", "amount_mismatch", "destination_mismatch", "paid_without_transfer",
              "transfer_id_mismatch", "failed_but_transferred", "transfer_without_payout",
              "reservation_mismatch", "outcome_not_posted", "outcome_mismatch", "entry_without_result")

ACTIONS = {
    "duplicate_transfers": "reverse the extra transfer in Stripe (Transfers > Reverse) after checking which one "
                           "the ledger names",
    "amount_mismatch": "compare the transfer with the payout request; reverse the transfer in Stripe if it is "
                       "not this payout's",
    "destination_mismatch": "check the holder's Connect account (`tributary holders status`); reverse and "
                            "re-issue if it went to the wrong account",
    "paid_without_transfer": "check Stripe for the transfer id; if none exists, the ledger's payout is wrong: "
                             "escalate before paying again",
    "transfer_id_mismatch": "the ledger names another transfer than Stripe's for this payout: compare both in "
                            "the Stripe dashboard",
    "failed_but_transferred": "the holder was paid although the ledger returned the amount: reverse the "
                              "transfer in Stripe, or the holder is paid twice",
    "transfer_without_payout": "a transfer no payout explains: find who made it (metadata, dashboard) and reverse "
                               "it if it is not ours",
    "not_reserved": "nothing if the request predates reservations (issue 14's upgrade); otherwise its "
                    "reservation entry is missing: `tributary trial-balance` shows the holder's reserved account",
    "reservation_mismatch": "the reservation differs from the request: escalate; `tributary trial-balance` "
                            "shows the holder's reserved account",
    "outcome_not_posted": "the payout's result exists but its ledger entry does not (a sink older than the "
                          "transactional one crashed between them): the holder's balance is wrong until it is posted",
    "outcome_mismatch": "the ledger and the payout result disagree: the result is what Stripe answered; "
                        "escalate",
    "entry_without_result": "a ledger outcome with no payout result: check `tributary explain <payout_id>`",
    "pending": "nothing, unless it stays pending: then check the Stripe sink (`tributary status`)",
}


@dataclass(frozen=True)
class LedgerPayout:
    payout_id: str
    holder_id: str
    amount_micros: int
    status: str  # "paid" | "failed" | "pending"
    transfer_id: str = ""
    destination: str = ""
    currency: str = "USD"
    # the ledger's side: the reservation posted (micros), and the outcome entry if any
    reserved_micros: int | None = None  # None: not known (the ledger was not read)
    entry_type: str = ""  # "payout" | "payout_reversal" | "" (none)
    entry_micros: int = 0
    entry_transfer_id: str = ""


@dataclass(frozen=True)
class Finding:
    kind: str
    payout_id: str
    holder_id: str
    detail: str

    @property
    def is_mismatch(self) -> bool:
        return self.kind in MISMATCHES

    @property
    def action(self) -> str:
        return ACTIONS[self.kind]

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "payout_id": self.payout_id, "holder_id": self.holder_id, "detail": self.detail,
                "action": self.action}


def ledger_findings(p: LedgerPayout) -> list[Finding]:
    """The request, its result and its ledger entries against each other."""
    if p.reserved_micros is None:
        return []
    out = []

    def note(kind: str, detail: str) -> None:
        out.append(Finding(kind, p.payout_id, p.holder_id, detail))

    if p.reserved_micros == 0:
        note("not_reserved", f"requested {p.amount_micros} micros {p.currency}, no reservation in the ledger")
    elif p.reserved_micros != p.amount_micros:
        note("reservation_mismatch", f"requested {p.amount_micros} micros {p.currency}, reserved {p.reserved_micros}")
    expected = {"paid": "payout", "failed": "payout_reversal"}.get(p.status, "")
    if p.status == "pending":
        if p.entry_type:
            note("entry_without_result", f"the ledger has a {p.entry_type} entry but no payout result")
    elif not p.entry_type:
        note("outcome_not_posted", f"result {p.status}, no {expected} entry in the ledger")
    elif p.entry_type != expected or p.entry_micros != p.amount_micros or (
            p.status == "paid" and p.entry_transfer_id != p.transfer_id):
        note("outcome_mismatch", f"result {p.status} {p.amount_micros} by {p.transfer_id or '-'}; ledger "
                                 f"{p.entry_type} {p.entry_micros} by {p.entry_transfer_id or '-'}")
    return out


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
        findings.extend(ledger_findings(p))

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
           if(s.payout_id = '', 'pending', s.status) AS status, s.transfer_id, s.destination, r.currency,
           e.reserved, e.outcome, e.outcome_micros, e.outcome_transfer
    FROM (SELECT payout_id, holder_id, amount_micros, currency FROM payout_requests FINAL) AS r
    LEFT JOIN (SELECT payout_id, status, transfer_id, destination FROM payout_results FINAL) AS s
      ON r.payout_id = s.payout_id
    LEFT JOIN (SELECT payout_id,
                      sumIf(amount_micros, entry_type = 'reservation') AS reserved,
                      anyIf(entry_type, entry_type IN ('payout', 'payout_reversal')) AS outcome,
                      sumIf(amount_micros, entry_type IN ('payout', 'payout_reversal')) AS outcome_micros,
                      anyIf(transfer_id, entry_type = 'payout') AS outcome_transfer
               FROM ledger_entries FINAL WHERE payout_id != '' GROUP BY payout_id) AS e
      ON r.payout_id = e.payout_id
    SETTINGS join_use_nulls = 0"""


def ledger_payouts(rows: list[list[Any]]) -> list[LedgerPayout]:
    return [LedgerPayout(str(r[0]), str(r[1]), int(r[2]), str(r[3]), str(r[4] or ""), str(r[5] or ""), str(r[6]),
                         int(r[7] or 0), str(r[8] or ""), int(r[9] or 0), str(r[10] or "")) for r in rows]
