"""The data dictionary: every ClickHouse table and view the sink creates, what each row
is, its key, how it stays exact, and every column with its unit.

``python -m sinks.clickhouse.dictionary > docs/tables.md`` writes it from a freshly
migrated database (column names and types are the engine's own); the test
``tests/integration/test_data_dictionary.py`` fails when a table, view or column has no
description here or the file is stale.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field

from sinks.clickhouse.schema import ROLLUPS_DB_SQL, migrate

MICROS = "micro-units of `currency` (1,000,000 = one unit: 1 USD, 1 EUR, 1 JPY)"
READ_FINAL = "ReplacingMergeTree on the key; read with `FINAL` (or through the views), so a retried insert or a replayed record is one row"

# a column's meaning wherever it appears, unless a table says otherwise
COLUMNS: dict[str, str] = {
    "event_id": "the producer's id of the inference event (unique per provider; dedupe key at ingest)",
    "occurred_at": "when the inference happened (producer's clock, UTC)",
    "provider": "the model provider that emitted the event",
    "model_name": "the model that produced the output",
    "model_revision": "the model's revision as the producer reported it",
    "contract_id": "the royalty contract that priced the event",
    "contract_version": "the contract version in force at `occurred_at` (versions are immutable)",
    "currency": "ISO 4217 code; amounts are never added across currencies",
    "pool_micros": f"the royalty pool of the event, {MICROS}",
    "source_partition": "Kafka partition the row came from",
    "source_offset": "Kafka offset the row came from",
    "ingested_at": "when the sink wrote the row (the replacing version where no better one exists)",
    "attribution_id": "deterministic id of the attribution (event, catalog version, embedding revision)",
    "holder_id": "rights holder id (`escrow:unattributed` or `escrow:review` for escrow entries)",
    "work_id": "registered work id",
    "amount_micros": f"amount, {MICROS}; never negative (the direction is the entry type or the accounts)",
    "payout_id": "deterministic payout id (holder, currency, sequence)",
    "transfer_id": "Stripe transfer id (`tr_...`)",
    "reason": "free text, stored verbatim",
    "catalog_offset": "offset on `catalog-updates` (the replacing version: the latest record of a key wins)",
    "requested_at": "when the request was made (UTC)",
    "day": "calendar day (UTC) the inference happened",
    "kind": "record kind",
    "version": "version number",
    "title": "work title",
}


@dataclass(frozen=True)
class Table:
    about: str
    key: str
    exactness: str
    source: str  # the topic it is written from, or the tables a view reads
    columns: dict[str, str] = field(default_factory=dict)
    view: bool = False


TABLES: dict[str, Table] = {
    "priced_events": Table(
        "One row per accepted inference event, priced: the ingest stage's output.", "event_id", READ_FINAL,
        "`attribution-requests` (batch records opened into their events)", {
            "revenue_micros": f"what the provider billed for the inference, {MICROS}",
            "pool_micros": f"revenue x the contract's royalty rate, {MICROS}: what holders and escrow share",
            "metadata": "the producer's metadata object, JSON, verbatim",
            "source_partition": "partition of the event on `inference-events`",
            "source_offset": "offset of the event on `inference-events`"}),
    "attributions": Table(
        "One row per attributed output: which registered works it draws on, and the evidence.",
        "attribution_id", READ_FINAL, "`attributions`", {
            "pool_micros": "the event's royalty pool, micro-units of its currency (`priced_events.currency`)",
            "attributed_ppm": "share of the pool attributed to works, parts per million",
            "unattributed_ppm": "share of the pool no work earned (to `escrow:unattributed`), parts per million",
            "works": "the works credited",
            "catalog_version": "the catalog version the output was matched against",
            "embed_model": "the embedding model (and variant) that embedded the output",
            "embed_revision": "the embedding weights' revision (sha256)",
            "threshold": "the calibrated similarity bar a semantic match had to reach (cosine)",
            "shares": "JSON list of {work_id, holder_id, share_ppm, tier, words}",
            "evidence": "JSON: per sentence the method (copied / semantic), scores, quotes; enough to recompute "
                        "the shares (`tributary explain <event_id>`)"}),
    "ledger_entries": Table(
        "The journal: one double-entry line per row. Money moves only here.", "entry_id",
        READ_FINAL + "; entry ids derive from their source, so a replay posts the same ids",
        "`royalty-ledger` (batch records opened into their entries)", {
            "entry_id": "deterministic entry id (source, account, entry type)",
            "entry_type": "accrual, accrual_reversal, reservation, payout, payout_reversal",
            "debit_account": "account debited (`provider:<p>:royalty_liability`, `holder:<h>:payable|reserved|paid`, "
                             "`escrow:unattributed`, `escrow:review`)",
            "credit_account": "account credited (same chart of accounts)",
            "source_id": "what posted it: an attribution, a correction (refund or review) or a payout",
            "created_at": "ledger time of the entry (UTC)",
            "contract_id": "contract of the event (accruals)",
            "contract_version": "contract version of the event (accruals); 0 for payout entries"}),
    "payout_requests": Table(
        "One row per payout the balances stage requested (with its reservation).", "payout_id", READ_FINAL,
        "`payout-requests`", {"sequence": "the holder's n-th payout in this currency",
                              "amount_micros": f"amount reserved and requested, {MICROS}"}),
    "payout_results": Table(
        "One row per payout outcome from the Stripe sink.", "payout_id", READ_FINAL, "`payout-results`", {
            "status": "paid or failed", "destination": "the Connect account paid (`acct_...`)",
            "error": "why it failed (Stripe's message); empty when paid", "completed_at": "when Stripe answered (UTC)",
            "amount_micros": f"amount of the payout, {MICROS}"}),
    "dead_letters": Table(
        "One row per record refused by ingest or by the ClickHouse sink, with the reason.", "dlq_key",
        "ReplacingMergeTree keyed by the *source* record, so a dead letter written again on a replay is one row",
        "`inference-events.dlq`, `sink-clickhouse.dlq`", {
            "dlq_key": "source topic:partition:offset of the refused record",
            "error_code": "machine-readable reason (schema_violation, duplicate_event, unknown_contract, ...)",
            "field": "the field at fault (JSON path), when one is", "source_topic": "where the refused record was",
            "reason": "why it was refused, in words (names the field and what was expected)",
            "event_id": "the record's event id, when it could be read",
            "payload": "the refused record, verbatim (text)",
            "source_partition": "partition of the refused record", "source_offset": "offset of the refused record"}),
    "works": Table(
        "One row per registered work (its latest registration).", "work_id",
        "ReplacingMergeTree on work_id by `catalog_offset`: the latest registration wins", "`catalog-updates` (kind=work)",
        {"license": "licence terms recorded with the work",
         "removed": "1 only in rows written before migration 9; withdrawals are in `work_withdrawals`"}),
    "work_withdrawals": Table(
        "One row per withdrawn work: withdrawn when newer (`catalog_offset`) than the work's registration.",
        "work_id", "ReplacingMergeTree on work_id by `catalog_offset`", "`catalog-updates` (kind=work_removed)",
        {"reason": "why it was withdrawn (verbatim)"}),
    "holders": Table(
        "One row per rights holder.", "holder_id", "ReplacingMergeTree on holder_id by `catalog_offset`",
        "`catalog-updates` (kind=holder)", {"name": "display name", "stripe_account": "Stripe Connect account (`acct_...`)"}),
    "holder_policies": Table(
        "Each holder's payout policy and their Connect account's readiness, as on the compacted topic.",
        "policy_key", "ReplacingMergeTree on policy_key by `source_offset` (a key always lands on one partition)",
        "`holder-policies`", {
            "policy_key": "holder_id (the policy) or holder_id#account (the account's readiness)",
            "kind": "policy or account", "body": "the record, JSON (holder-policy.v1 or holder-account.v1)",
            "source_partition": "partition on `holder-policies`", "source_offset": "offset on `holder-policies`"}),
    "corrections": Table(
        "Refunds of accepted events and reviewers' decisions on probable attributions.", "correction_id",
        READ_FINAL, "`corrections`", {
            "correction_id": "deterministic id of the correction", "kind": "refund or review",
            "provider": "the provider that refunded (refunds)", "occurred_at": "when the correction was made (UTC)",
            "work_id": "review: the work whose probable share was decided", "decision": "review: accept or reject",
            "reviewer": "review: who decided"}),
    "review_requests": Table(
        "Holders' disputes of probable attributions, filed in the portal. Requests, never money.", "request_id",
        READ_FINAL + "; one request per (holder, event, work)", "`review-requests`", {
            "request_id": "deterministic id (holder, event, work)",
            "entry_id": "the ledger credit the holder disputed", "requested_by": "how it was filed (portal)",
            "reason": "the holder's words, verbatim"}),
    "contracts": Table(
        "Every royalty contract version.", "(contract_id, version)", READ_FINAL, "`contracts`", {
            "royalty_rate_bps": "share of revenue that goes to the royalty pool, basis points",
            "price_per_1k_input_tokens_micros": f"revenue per 1,000 input tokens, {MICROS}",
            "price_per_1k_output_tokens_micros": f"revenue per 1,000 output tokens, {MICROS}",
            "valid_from": "first instant the version prices events (UTC)",
            "valid_to": "the instant it stops (UTC, exclusive)", "models": "model name patterns it prices (empty: all)",
            "probable_weight_bps": "share of a probable match paid at once, basis points; the rest is held for review"}),
    "schema_migrations": Table(
        "The migrations applied to this database.", "version", "MergeTree; one row per applied migration",
        "the sink at start-up", {"description": "what the migration does", "applied_at": "when (UTC)"}),
    # -- views ---------------------------------------------------------------------------------
    "accrual_lines": Table(
        "Every accrual and accrual reversal with its event's day, provider and model: the one join of the "
        "ledger with the priced events, read by `holder_earnings_daily`, `unattributed_escrow`, the base "
        "rollup `earnings_day` and `tributary report earnings --live`.", "entry (one row per ledger row)",
        "over `ledger_entries FINAL` joined with `priced_events FINAL`: exact, computed at query time; an "
        "entry whose priced event is not stored yet is left out until it is",
        "ledger_entries, priced_events", {
            "day": "the day the inference happened (UTC), from the priced event",
            "entry_type": "`accrual` or `accrual_reversal`",
            "signed_micros": f"the amount, negative for a reversal, {MICROS}"}, view=True),
    "holder_earnings_daily": Table(
        "What each holder earned per day, work, provider, model and currency, net of refunds and review reversals.",
        "(day, holder_id, work_id, provider, model_name, currency)",
        "over `accrual_lines` (holders' rows): exact, computed at query time",
        "accrual_lines", {
            "earned_micros": f"accruals minus reversals, {MICROS}", "entries": "ledger rows summed (not outputs)"},
        view=True),
    "unattributed_escrow": Table(
        "Money no registered work earned, per day, provider, model and currency.",
        "(day, provider, model_name, currency)", "over `accrual_lines` (rows of `escrow:unattributed`): exact",
        "accrual_lines", {
            "escrow_micros": f"accruals to `escrow:unattributed` minus reversals, {MICROS}",
            "events": "distinct events with an escrow entry"}, view=True),
    "attribution_coverage": Table(
        "How much of the traffic attribution explains, per day and model.", "(day, model_name)",
        "over `attributions FINAL`", "attributions", {
            "events": "attributed outputs", "pool_micros": "sum of their pools, micro-units (mixed currencies: "
                                                           "a volume indicator only)",
            "events_attributed": "outputs with any share attributed to a work",
            "mean_attributed_fraction": "mean share of the pool attributed (0..1)"}, view=True),
    "holder_balances": Table(
        "Each holder's money per currency.", "(holder_id, currency)", "over `ledger_entries FINAL`: exact",
        "ledger_entries", {
            "accrued_micros": f"credited to the holder, net of reversals, {MICROS}",
            "paid_micros": f"paid out by Stripe transfers, {MICROS}",
            "unpaid_micros": f"accrued - paid (payable + reserved), {MICROS}", "payouts": "payouts made",
            "reserved_micros": f"in payout requests awaiting Stripe's answer, {MICROS}"}, view=True),
    "account_balances": Table(
        "Every ledger account's balance per currency: the trial balance (`tributary trial-balance`).",
        "(account, currency)", "over `ledger_entries FINAL`: exact", "ledger_entries", {
            "account": "ledger account (chart of accounts in `tributary/ledger.py`)",
            "debit_micros": f"sum of debits, {MICROS}", "credit_micros": f"sum of credits, {MICROS}",
            "balance_micros": f"credits - debits, {MICROS}", "postings": "entries touching the account"}, view=True),
    "pending_payouts": Table(
        "Payout requests still awaiting an outcome.", "payout_id", "over the FINAL tables",
        "payout_requests, payout_results", {"amount_micros": f"amount reserved, {MICROS}"}, view=True),
}


ROLLUP_EXACT = ("refreshable materialized view: recomputed from the FINAL tables every 30 s and swapped in "
                "whole, so it equals the journal as of its last refresh whatever was inserted twice")
ROLLUP_COLUMNS = {"earned_micros": f"accruals minus reversals, {MICROS}",
                  "outputs": "the distinct outputs (events) credited, as a uniqExact state: read "
                             "`uniqExactMerge(outputs)` (an output counts once however many works it credits)",
                  }
ROLLUP_BASE_COLUMNS = {**ROLLUP_COLUMNS, "entries": "ledger rows summed"}
TABLES.update({
    "rollups.earnings_day": Table(
        "The base rollup (in `<database>_rollups`): earnings per inference day, holder (escrow accounts "
        "included), work, provider, model and currency.", "(holder_id, day, work_id, model_name, provider, currency)",
        ROLLUP_EXACT, "ledger_entries FINAL joined with priced_events FINAL", ROLLUP_BASE_COLUMNS),
    "rollups.holder_day": Table(
        "Each holder's earnings per day and currency (the portal's and the reports' holder-by-week answers).",
        "(holder_id, day, currency)", ROLLUP_EXACT + " (after earnings_day)", "rollups.earnings_day", ROLLUP_COLUMNS),
    "rollups.holder_model_day": Table(
        "Each holder's earnings per day, model and currency.", "(holder_id, day, model_name, currency)",
        ROLLUP_EXACT + " (after earnings_day)", "rollups.earnings_day", ROLLUP_COLUMNS),
    "rollups.work_day": Table(
        "Each work's earnings and outputs per day and currency.", "(work_id, day, currency)",
        ROLLUP_EXACT + " (after earnings_day)", "rollups.earnings_day", ROLLUP_COLUMNS),
    "rollups.escrow_day": Table(
        "Unattributed escrow per day, provider, model and currency.", "(day, provider, model_name, currency)",
        ROLLUP_EXACT + " (after earnings_day)", "rollups.earnings_day",
        {"escrow_micros": f"accruals to `escrow:unattributed` minus reversals, {MICROS}",
         "events": "the distinct events with an accrual to escrow, as a uniqExact state: read "
                   "`uniqExactMerge(events)`"}),
})


def describe(table: str, column: str) -> str | None:
    spec = TABLES.get(table)
    if spec is None:
        return None
    return spec.columns.get(column) or COLUMNS.get(column)


def engine_columns(client: object) -> dict[str, list[tuple[str, str]]]:
    """table -> [(column, type)] as the engine has them."""
    rows = client.query(  # type: ignore[attr-defined]
        "SELECT database != currentDatabase(), table, name, type FROM system.columns "
        f"WHERE database IN (currentDatabase(), {ROLLUPS_DB_SQL}) "
        # the refresh views themselves, and a refresh's temporary tables (`.tmp...`, `_tmp_replace_...`)
        "AND table NOT LIKE '%_refresh' AND NOT startsWith(table, '.') AND NOT startsWith(table, '_tmp_replace_') "
        "ORDER BY database, table, position"
    ).result_rows
    out: dict[str, list[tuple[str, str]]] = {}
    for rollup, table, name, kind in rows:
        out.setdefault(f"rollups.{table}" if rollup else str(table), []).append((str(name), str(kind)))
    return out


def render(columns: dict[str, list[tuple[str, str]]]) -> str:
    lines = ["# ClickHouse tables and views", "",
             "Generated by `python -m sinks.clickhouse.dictionary` from a freshly migrated database; checked by "
             "`tests/integration/test_data_dictionary.py`. Money is integer micro-units of the row's `currency`; "
             "read tables with `FINAL` (the views do).", ""]
    sections = (("Tables", lambda t, spec: not spec.view and not t.startswith("rollups.")),
                ("Views", lambda t, spec: spec.view),
                ("Rollups (database `<database>_rollups`)", lambda t, spec: t.startswith("rollups.")))
    for kind, member in sections:
        lines += [f"## {kind}", ""]
        for name in sorted(t for t, spec in TABLES.items() if member(t, spec)):
            spec = TABLES[name]
            lines += [f"### `{name}`", "", spec.about, "",
                      f"- key: `{spec.key}`",
                      f"- exactness: {spec.exactness}", f"- from: {spec.source}", "",
                      "| column | type | meaning |", "|---|---|---|"]
            for column, kind_ in columns.get(name, []):
                lines.append(f"| `{column}` | `{kind_}` | {describe(name, column) or 'UNDOCUMENTED'} |")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def migrated_columns() -> dict[str, list[tuple[str, str]]]:
    from sinks.clickhouse.store import open_client

    with tempfile.TemporaryDirectory() as folder:
        client = open_client(f"chdb://{folder}/db")
        try:
            migrate(client)
            return engine_columns(client)
        finally:
            client.close()


if __name__ == "__main__":
    sys.stdout.write(render(migrated_columns()))
