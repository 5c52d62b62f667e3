"""Every reconcile rule on hand-built inputs (the CLI runs against the stateful Connect
double in tests/integration/test_stripe_sink.py)."""

from sinks.stripe.payouts import FoundTransfer
from sinks.stripe.reconcile import LedgerPayout, reconcile


def t(tid, payout_id, cents, dest="acct_1"):
    return FoundTransfer(tid, cents, dest, payout_id, payout_id, 0)


def kinds(findings):
    return sorted((f.kind, f.payout_id) for f in findings)


def test_matching_books_have_no_findings():
    payouts = [LedgerPayout("po_a", "h1", 1_230_000, "paid", "tr_1", "acct_1"),
               LedgerPayout("po_b", "h2", 500_000, "failed")]
    assert reconcile(payouts, [t("tr_1", "po_a", 123)]) == []


def test_every_kind_of_mismatch_is_listed():
    payouts = [
        LedgerPayout("po_dup", "h1", 1_000_000, "paid", "tr_1", "acct_1"),
        LedgerPayout("po_amount", "h1", 1_000_000, "paid", "tr_3", "acct_1"),
        LedgerPayout("po_dest", "h2", 1_000_000, "paid", "tr_4", "acct_1"),
        LedgerPayout("po_missing", "h2", 1_000_000, "paid", "tr_9", "acct_1"),
        LedgerPayout("po_failed", "h3", 1_000_000, "failed"),
        LedgerPayout("po_wrong_id", "h3", 1_000_000, "paid", "tr_x", "acct_1"),
        LedgerPayout("po_pending", "h3", 1_000_000, "pending"),
    ]
    transfers = [t("tr_1", "po_dup", 100), t("tr_2", "po_dup", 100), t("tr_3", "po_amount", 99),
                 t("tr_4", "po_dest", 100, "acct_2"), t("tr_5", "po_failed", 100), t("tr_6", "po_wrong_id", 100),
                 t("tr_7", "po_stray", 100)]
    findings = reconcile(payouts, transfers)
    assert kinds(findings) == sorted([
        ("duplicate_transfers", "po_dup"), ("amount_mismatch", "po_amount"), ("destination_mismatch", "po_dest"),
        ("paid_without_transfer", "po_missing"), ("failed_but_transferred", "po_failed"),
        ("transfer_id_mismatch", "po_wrong_id"), ("pending", "po_pending"), ("transfer_without_payout", "po_stray")])
    assert [f.is_mismatch for f in findings if f.kind == "pending"] == [False]
    assert all(f.detail for f in findings)


def test_the_ledgers_own_entries_are_reconciled_with_the_results():
    """Request, reservation, result and outcome entry against each other (the ledger side
    filled in, as LEDGER_SQL reads it)."""
    ok = LedgerPayout("po_ok", "h1", 1_000_000, "paid", "tr_1", "acct_1", "USD", 1_000_000, "payout", 1_000_000,
                      "tr_1")
    failed = LedgerPayout("po_failed", "h1", 1_000_000, "failed", "", "", "USD", 1_000_000, "payout_reversal",
                          1_000_000)
    payouts = [
        ok, failed,
        LedgerPayout("po_unreserved", "h1", 1_000_000, "pending", reserved_micros=0),  # before reservations
        LedgerPayout("po_half", "h1", 1_000_000, "pending", reserved_micros=500_000),
        LedgerPayout("po_lost_entry", "h2", 1_000_000, "paid", "tr_2", "acct_1", "USD", 1_000_000),
        LedgerPayout("po_wrong_kind", "h2", 1_000_000, "paid", "tr_3", "acct_1", "USD", 1_000_000,
                     "payout_reversal", 1_000_000),
        LedgerPayout("po_orphan", "h3", 1_000_000, "pending", "", "", "USD", 1_000_000, "payout", 1_000_000, "tr_9"),
    ]
    transfers = [t("tr_1", "po_ok", 100), t("tr_2", "po_lost_entry", 100), t("tr_3", "po_wrong_kind", 100),
                 t("tr_9", "po_orphan", 100)]
    findings = reconcile(payouts, transfers)
    assert sorted((f.kind, f.payout_id) for f in findings if f.is_mismatch) == sorted([
        ("reservation_mismatch", "po_half"), ("outcome_not_posted", "po_lost_entry"),
        ("outcome_mismatch", "po_wrong_kind"), ("entry_without_result", "po_orphan")])
    assert ("not_reserved", "po_unreserved") in [(f.kind, f.payout_id) for f in findings]  # informational
    assert all(f.action and f.as_dict()["action"] == f.action for f in findings)
