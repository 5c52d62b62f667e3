"""Versioned schema migrations, applied in order at start-up.

Deduplication: every table is a ReplacingMergeTree ordered by the record's
deterministic id, and every money query reads through ``FINAL`` (directly or via
the views below). A re-delivered batch therefore never shows up twice to a query,
whether or not ClickHouse has merged the parts yet. No materialized views: an MV is
fed by inserts, so a retried insert would add money twice.
"""

from __future__ import annotations

from typing import Any

V = "ingested_at DateTime64(6, 'UTC') DEFAULT now64(6)"

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "core tables", [
        f"""CREATE TABLE IF NOT EXISTS priced_events (
            event_id String, occurred_at DateTime64(3, 'UTC'), provider LowCardinality(String),
            model_name LowCardinality(String), model_revision String, contract_id LowCardinality(String),
            contract_version UInt32, currency LowCardinality(String), revenue_micros Int64,
            pool_micros Int64, source_partition Int32, source_offset Int64, metadata String, {V}
        ) ENGINE = ReplacingMergeTree(ingested_at) ORDER BY event_id""",
        f"""CREATE TABLE IF NOT EXISTS attributions (
            attribution_id String, event_id String, occurred_at DateTime64(3, 'UTC'),
            provider LowCardinality(String), model_name LowCardinality(String), pool_micros Int64,
            attributed_ppm UInt32, unattributed_ppm UInt32, works Array(String),
            catalog_version UInt64, embed_model String, embed_revision String, threshold Float64,
            shares String, evidence String, {V}
        ) ENGINE = ReplacingMergeTree(ingested_at) ORDER BY attribution_id""",
        f"""CREATE TABLE IF NOT EXISTS ledger_entries (
            entry_id String, entry_type LowCardinality(String), debit_account String,
            credit_account String, amount_micros Int64, currency LowCardinality(String),
            holder_id String, work_id String, event_id String, source_id String,
            contract_id String, contract_version UInt32, attribution_id String, payout_id String,
            transfer_id String, created_at DateTime64(3, 'UTC'), {V}
        ) ENGINE = ReplacingMergeTree(ingested_at) ORDER BY entry_id""",
        f"""CREATE TABLE IF NOT EXISTS payout_requests (
            payout_id String, holder_id String, amount_micros Int64, currency LowCardinality(String),
            sequence UInt64, requested_at DateTime64(3, 'UTC'), {V}
        ) ENGINE = ReplacingMergeTree(ingested_at) ORDER BY payout_id""",
        f"""CREATE TABLE IF NOT EXISTS payout_results (
            payout_id String, holder_id String, status LowCardinality(String), amount_micros Int64,
            transfer_id String, destination String, error String, completed_at DateTime64(3, 'UTC'), {V}
        ) ENGINE = ReplacingMergeTree(ingested_at) ORDER BY payout_id""",
        f"""CREATE TABLE IF NOT EXISTS dead_letters (
            dlq_key String, error_code LowCardinality(String), field String, reason String,
            event_id String, source_topic String, source_partition Int32, source_offset Int64,
            payload String, {V}
        ) ENGINE = ReplacingMergeTree(ingested_at) ORDER BY dlq_key""",
        f"""CREATE TABLE IF NOT EXISTS works (
            work_id String, holder_id String, title String, license String, removed UInt8,
            catalog_offset Int64, {V}
        ) ENGINE = ReplacingMergeTree(catalog_offset) ORDER BY work_id""",
        f"""CREATE TABLE IF NOT EXISTS holders (
            holder_id String, name String, stripe_account String, catalog_offset Int64, {V}
        ) ENGINE = ReplacingMergeTree(catalog_offset) ORDER BY holder_id""",
    ]),
    (2, "analyst views (all read through FINAL)", [
        """CREATE OR REPLACE VIEW holder_earnings_daily AS
           SELECT toDate(p.occurred_at) AS day, l.holder_id AS holder_id, l.work_id AS work_id,
                  p.provider AS provider, p.model_name AS model_name, l.currency AS currency,
                  sum(l.amount_micros) AS earned_micros, count() AS entries
           FROM (SELECT * FROM ledger_entries FINAL WHERE entry_type = 'accrual'
                 AND credit_account LIKE 'holder:%') AS l
           INNER JOIN (SELECT event_id, occurred_at, provider, model_name FROM priced_events FINAL) AS p
             ON l.event_id = p.event_id
           GROUP BY day, holder_id, work_id, provider, model_name, currency""",
        """CREATE OR REPLACE VIEW unattributed_escrow AS
           SELECT toDate(p.occurred_at) AS day, p.provider AS provider, p.model_name AS model_name,
                  sum(l.amount_micros) AS escrow_micros, count() AS events
           FROM (SELECT * FROM ledger_entries FINAL WHERE credit_account = 'escrow:unattributed') AS l
           INNER JOIN (SELECT event_id, occurred_at, provider, model_name FROM priced_events FINAL) AS p
             ON l.event_id = p.event_id
           GROUP BY day, provider, model_name""",
        """CREATE OR REPLACE VIEW attribution_coverage AS
           SELECT toDate(occurred_at) AS day, model_name, count() AS events,
                  sum(pool_micros) AS pool_micros,
                  countIf(attributed_ppm > 0) AS events_attributed,
                  avg(attributed_ppm) / 1e6 AS mean_attributed_fraction
           FROM attributions FINAL GROUP BY day, model_name""",
        """CREATE OR REPLACE VIEW holder_balances AS
           SELECT holder_id,
                  sumIf(amount_micros, entry_type = 'accrual') AS accrued_micros,
                  sumIf(amount_micros, entry_type = 'payout') AS paid_micros,
                  accrued_micros - paid_micros AS unpaid_micros,
                  countIf(entry_type = 'payout') AS payouts
           FROM ledger_entries FINAL WHERE holder_id NOT LIKE 'escrow:%' GROUP BY holder_id""",
    ]),
]

# signed effect of an entry on what a holder (or escrow) earned
SIGNED = "if(entry_type = 'accrual_reversal', -amount_micros, amount_micros)"

MIGRATIONS.append((3, "refunds: corrections table; views net accrual reversals", [
    f"""CREATE TABLE IF NOT EXISTS corrections (
        correction_id String, kind LowCardinality(String), event_id String, provider String,
        reason String, occurred_at DateTime64(3, 'UTC'), {V}
    ) ENGINE = ReplacingMergeTree(ingested_at) ORDER BY correction_id""",
    f"""CREATE OR REPLACE VIEW holder_earnings_daily AS
       SELECT toDate(p.occurred_at) AS day, l.holder_id AS holder_id, l.work_id AS work_id,
              p.provider AS provider, p.model_name AS model_name, l.currency AS currency,
              sum(l.signed_micros) AS earned_micros, count() AS entries
       FROM (SELECT *, {SIGNED} AS signed_micros FROM ledger_entries FINAL
             WHERE entry_type IN ('accrual', 'accrual_reversal') AND holder_id NOT LIKE 'escrow:%') AS l
       INNER JOIN (SELECT event_id, occurred_at, provider, model_name FROM priced_events FINAL) AS p
         ON l.event_id = p.event_id
       GROUP BY day, holder_id, work_id, provider, model_name, currency""",
    f"""CREATE OR REPLACE VIEW unattributed_escrow AS
       SELECT toDate(p.occurred_at) AS day, p.provider AS provider, p.model_name AS model_name,
              sum(l.signed_micros) AS escrow_micros, uniqExact(l.event_id) AS events
       FROM (SELECT *, {SIGNED} AS signed_micros FROM ledger_entries FINAL
             WHERE holder_id = 'escrow:unattributed') AS l
       INNER JOIN (SELECT event_id, occurred_at, provider, model_name FROM priced_events FINAL) AS p
         ON l.event_id = p.event_id
       GROUP BY day, provider, model_name""",
    f"""CREATE OR REPLACE VIEW holder_balances AS
       SELECT holder_id,
              sumIf({SIGNED}, entry_type IN ('accrual', 'accrual_reversal')) AS accrued_micros,
              sumIf(amount_micros, entry_type = 'payout') AS paid_micros,
              accrued_micros - paid_micros AS unpaid_micros,
              countIf(entry_type = 'payout') AS payouts
       FROM ledger_entries FINAL WHERE holder_id NOT LIKE 'escrow:%' GROUP BY holder_id""",
]))

MIGRATIONS.append((4, "review decisions on probable attributions", [
    "ALTER TABLE corrections ADD COLUMN IF NOT EXISTS work_id String DEFAULT ''",
    "ALTER TABLE corrections ADD COLUMN IF NOT EXISTS decision LowCardinality(String) DEFAULT ''",
    "ALTER TABLE corrections ADD COLUMN IF NOT EXISTS reviewer String DEFAULT ''",
]))

MIGRATIONS.append((5, "the ledger's accounts: balances per account and currency, payouts awaiting an outcome", [
    """CREATE OR REPLACE VIEW account_balances AS
       SELECT account, currency, sum(debit) AS debit_micros, sum(credit) AS credit_micros,
              credit_micros - debit_micros AS balance_micros, count() AS postings
       FROM (SELECT debit_account AS account, currency, amount_micros AS debit, toInt64(0) AS credit
             FROM ledger_entries FINAL
             UNION ALL
             SELECT credit_account AS account, currency, toInt64(0) AS debit, amount_micros AS credit
             FROM ledger_entries FINAL)
       GROUP BY account, currency""",
    """CREATE OR REPLACE VIEW pending_payouts AS
       SELECT r.payout_id AS payout_id, r.holder_id AS holder_id, r.currency AS currency,
              r.amount_micros AS amount_micros, r.requested_at AS requested_at
       FROM (SELECT * FROM payout_requests FINAL) AS r
       LEFT ANTI JOIN (SELECT payout_id FROM payout_results FINAL) AS s ON r.payout_id = s.payout_id""",
]))

MIGRATIONS.append((6, "currencies: balances and escrow per currency, never summed across currencies", [
    f"""CREATE OR REPLACE VIEW holder_balances AS
       SELECT holder_id, currency,
              sumIf({SIGNED}, entry_type IN ('accrual', 'accrual_reversal')) AS accrued_micros,
              sumIf(amount_micros, entry_type = 'payout') AS paid_micros,
              accrued_micros - paid_micros AS unpaid_micros,
              countIf(entry_type = 'payout') AS payouts,
              sumIf(amount_micros, entry_type = 'reservation')
                - sumIf(amount_micros, entry_type IN ('payout', 'payout_reversal')) AS reserved_micros
       FROM ledger_entries FINAL WHERE holder_id NOT LIKE 'escrow:%' GROUP BY holder_id, currency""",
    f"""CREATE OR REPLACE VIEW unattributed_escrow AS
       SELECT toDate(p.occurred_at) AS day, p.provider AS provider, p.model_name AS model_name,
              l.currency AS currency, sum(l.signed_micros) AS escrow_micros, uniqExact(l.event_id) AS events
       FROM (SELECT *, {SIGNED} AS signed_micros FROM ledger_entries FINAL
             WHERE holder_id = 'escrow:unattributed') AS l
       INNER JOIN (SELECT event_id, occurred_at, provider, model_name FROM priced_events FINAL) AS p
         ON l.event_id = p.event_id
       GROUP BY day, provider, model_name, currency""",
]))

MIGRATIONS.append((7, "contracts as data: every version from the contracts topic", [
    f"""CREATE TABLE IF NOT EXISTS contracts (
        contract_id String, version UInt32, currency LowCardinality(String), royalty_rate_bps UInt32,
        price_per_1k_input_tokens_micros Int64, price_per_1k_output_tokens_micros Int64,
        valid_from DateTime64(3, 'UTC'), valid_to DateTime64(3, 'UTC'), models Array(String),
        probable_weight_bps UInt32, {V}
    ) ENGINE = ReplacingMergeTree(ingested_at) ORDER BY (contract_id, version)""",
]))

MIGRATIONS.append((8, "holder portal: payout policies and account readiness, holders' review requests", [
    f"""CREATE TABLE IF NOT EXISTS holder_policies (
        policy_key String, holder_id String, kind LowCardinality(String), body String,
        source_partition Int32, source_offset Int64, {V}
    ) ENGINE = ReplacingMergeTree(source_offset) ORDER BY policy_key""",
    f"""CREATE TABLE IF NOT EXISTS review_requests (
        request_id String, event_id String, work_id String, holder_id String, entry_id String,
        reason String, requested_at DateTime64(3, 'UTC'), requested_by String, {V}
    ) ENGINE = ReplacingMergeTree(ingested_at) ORDER BY request_id""",
]))

MIGRATIONS.append((9, "withdrawals keep the work's holder and title", [
    # a withdrawal used to replace the work's row (holder and title lost); now a row of its
    # own, withdrawn when newer (same key, same partition: offsets compare) than the registration
    f"""CREATE TABLE IF NOT EXISTS work_withdrawals (
        work_id String, reason String, catalog_offset Int64, {V}
    ) ENGINE = ReplacingMergeTree(catalog_offset) ORDER BY work_id""",
]))

# -- exact rollups: refreshable materialized views ------------------------------------------
# A materialized view fed by inserts would count a retried or replayed insert twice. These
# are *refreshable* views instead: every REFRESH_S seconds ClickHouse recomputes each rollup
# from the deduplicated (FINAL) tables and swaps it in whole, so a rollup is always exactly
# the journal as of its last refresh, however often a batch was inserted. The base rollup
# joins the ledger with the priced events once; the others aggregate it (DEPENDS ON).
# Refreshable views need an Atomic database: they live in ``<database>_rollups``.
REFRESH_S = 30
SIGNED_ACCRUAL = "if(entry_type = 'accrual_reversal', -amount_micros, amount_micros)"
R = "{rollups}"  # filled in by migrate(): the rollups database
# distinct outputs kept as uniqExact states, so coarser rollups and reports merge them
# (uniqExactMerge) instead of adding per-work counts: an output counts once per group
OUTPUTS = "AggregateFunction(uniqExact, String)"
S = "{source}"  # and the database of the tables


# Every accrual and its reversal with its event's day, provider and model: the one place
# the ledger is joined with the priced events. The analyst views, the base rollup and the
# live report (tributary.reports) all read it.
ACCRUAL_LINES = f"""CREATE OR REPLACE VIEW accrual_lines AS
    SELECT toDate(p.occurred_at) AS day, l.holder_id AS holder_id, l.work_id AS work_id, p.provider AS provider,
           p.model_name AS model_name, l.currency AS currency, l.event_id AS event_id, l.entry_type AS entry_type,
           l.signed_micros AS signed_micros
    FROM (SELECT entry_type, holder_id, work_id, event_id, currency, {SIGNED_ACCRUAL} AS signed_micros
          FROM ledger_entries FINAL WHERE entry_type IN ('accrual', 'accrual_reversal')) AS l
    INNER JOIN (SELECT event_id, occurred_at, provider, model_name FROM priced_events FINAL) AS p
      ON l.event_id = p.event_id"""


def _rollup(name: str, columns: str, order: str, select: str, depends: str = "") -> list[str]:
    return [f"CREATE TABLE IF NOT EXISTS {R}.{name} ({columns}) ENGINE = MergeTree ORDER BY ({order})",
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {R}.{name}_refresh REFRESH EVERY {REFRESH_S} SECOND "
            + (f"DEPENDS ON {R}.{depends}_refresh " if depends else "") + f"TO {R}.{name} AS {select}"]


ROLLUPS = {
    "earnings_day": ("day Date, holder_id String, work_id String, provider LowCardinality(String), "
                     "model_name LowCardinality(String), currency LowCardinality(String), earned_micros Int64, "
                     f"outputs {OUTPUTS}, entries UInt64",
                     "holder_id, day, work_id, model_name, provider, currency", f"""
        SELECT day, holder_id, work_id, provider, model_name, currency, sum(signed_micros) AS earned_micros,
               uniqExactStateIf(event_id, entry_type = 'accrual') AS outputs, count() AS entries
        FROM {S}.accrual_lines GROUP BY day, holder_id, work_id, provider, model_name, currency""", ""),
    "holder_day": (f"day Date, holder_id String, currency LowCardinality(String), earned_micros Int64, outputs {OUTPUTS}",
                   "holder_id, day, currency", f"""
        SELECT day, holder_id, currency, sum(earned_micros) AS earned_micros, uniqExactMergeState(outputs) AS outputs
        FROM {R}.earnings_day WHERE holder_id NOT LIKE 'escrow:%' GROUP BY day, holder_id, currency""",
                   "earnings_day"),
    "holder_model_day": ("day Date, holder_id String, model_name LowCardinality(String), "
                         f"currency LowCardinality(String), earned_micros Int64, outputs {OUTPUTS}",
                         "holder_id, day, model_name, currency", f"""
        SELECT day, holder_id, model_name, currency, sum(earned_micros) AS earned_micros,
               uniqExactMergeState(outputs) AS outputs
        FROM {R}.earnings_day WHERE holder_id NOT LIKE 'escrow:%'
        GROUP BY day, holder_id, model_name, currency""", "earnings_day"),
    "work_day": ("day Date, work_id String, holder_id String, currency LowCardinality(String), earned_micros Int64, "
                 f"outputs {OUTPUTS}", "work_id, day, currency", f"""
        SELECT day, work_id, holder_id, currency, sum(earned_micros) AS earned_micros,
               uniqExactMergeState(outputs) AS outputs
        FROM {R}.earnings_day WHERE holder_id NOT LIKE 'escrow:%' GROUP BY day, work_id, holder_id, currency""",
                 "earnings_day"),
    "escrow_day": ("day Date, provider LowCardinality(String), model_name LowCardinality(String), "
                   f"currency LowCardinality(String), escrow_micros Int64, events {OUTPUTS}",
                   "day, provider, model_name, currency", f"""
        SELECT day, provider, model_name, currency, sum(earned_micros) AS escrow_micros,
               uniqExactMergeState(outputs) AS events
        FROM {R}.earnings_day WHERE holder_id = 'escrow:unattributed'
        GROUP BY day, provider, model_name, currency""", "earnings_day"),
}

def _create(rollups: dict[str, tuple[str, str, str, str]]) -> list[str]:
    return [statement for name, (columns, order, select, depends) in rollups.items()
            for statement in _rollup(name, columns, order, select, depends)]


CREATE_ROLLUPS = _create(ROLLUPS)
# versions 10 and 11 as they were written (a migration's text never changes): the base
# rollup joined the tables itself, before accrual_lines existed
_EARNINGS_DAY_V11 = f"""
        SELECT toDate(p.occurred_at) AS day, l.holder_id AS holder_id, l.work_id AS work_id, p.provider AS provider,
               p.model_name AS model_name, l.currency AS currency, sum(l.signed) AS earned_micros,
               uniqExactStateIf(l.event_id, l.entry_type = 'accrual') AS outputs, count() AS entries
        FROM (SELECT entry_type, holder_id, work_id, event_id, currency, {SIGNED_ACCRUAL} AS signed
              FROM {S}.ledger_entries FINAL WHERE entry_type IN ('accrual', 'accrual_reversal')) AS l
        INNER JOIN (SELECT event_id, occurred_at, provider, model_name FROM {S}.priced_events FINAL) AS p
          ON l.event_id = p.event_id
        GROUP BY day, holder_id, work_id, provider, model_name, currency"""
CREATE_ROLLUPS_V11 = _create({**ROLLUPS, "earnings_day": (*ROLLUPS["earnings_day"][:2], _EARNINGS_DAY_V11, "")})
# the dependents first (a view another one depends on cannot go before it)
DROP_ROLLUPS = [f"DROP {kind} IF EXISTS {R}.{name}{suffix}" for name in reversed(list(ROLLUPS))
                for kind, suffix in (("VIEW", "_refresh"), ("TABLE", ""))]

MIGRATIONS.append((10, f"exact rollups: refreshable materialized views, recomputed every {REFRESH_S} s from FINAL", [
    f"CREATE DATABASE IF NOT EXISTS {R} ENGINE = Atomic", *CREATE_ROLLUPS_V11,
]))
# version 10's outputs were per-work counts added up (an output crediting two works of a
# holder counted twice); rollups are derived data: drop and rebuild
MIGRATIONS.append((11, "rollups count each output once per group (uniqExact states)",
                   [*DROP_ROLLUPS, *CREATE_ROLLUPS_V11]))
MIGRATIONS.append((12, "accrual_lines: the ledger joined with the priced events in one view, read by the others", [
    ACCRUAL_LINES,
    """CREATE OR REPLACE VIEW holder_earnings_daily AS
       SELECT day, holder_id, work_id, provider, model_name, currency, sum(signed_micros) AS earned_micros,
              count() AS entries
       FROM accrual_lines WHERE holder_id NOT LIKE 'escrow:%'
       GROUP BY day, holder_id, work_id, provider, model_name, currency""",
    """CREATE OR REPLACE VIEW unattributed_escrow AS
       SELECT day, provider, model_name, currency, sum(signed_micros) AS escrow_micros, uniqExact(event_id) AS events
       FROM accrual_lines WHERE holder_id = 'escrow:unattributed' GROUP BY day, provider, model_name, currency""",
    *DROP_ROLLUPS, *CREATE_ROLLUPS,  # derived data: rebuilt on the view
]))

LATEST = MIGRATIONS[-1][0]


# the rollups' database, named after the tables' own: the one rule, as SQL (the sink's
# freshness query, the data dictionary) and as a name (rollups_database, migrate)
ROLLUPS_DB_SQL = "concat(currentDatabase(), '_rollups')"


def quoted(name: str) -> str:
    """A database name quoted for SQL text (an identifier the engine gave, never user input)."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def rollups_database(client: Any) -> str:
    return str(client.query(f"SELECT {ROLLUPS_DB_SQL}").result_rows[0][0])


def refresh_rollups(client: Any) -> None:
    """Recompute every rollup now and wait for it (tests, benchmarks; the views also refresh
    by themselves every REFRESH_S seconds)."""
    db = rollups_database(client)
    for name in ROLLUPS:  # the base first: the others depend on it
        client.command(f"SYSTEM REFRESH VIEW {db}.{name}_refresh")
        client.command(f"SYSTEM WAIT VIEW {db}.{name}_refresh")


def migrate(client: Any) -> list[int]:
    """Apply every migration newer than the recorded version; returns those applied. Then
    make sure the rollups exist (derived data: a rollups database dropped by hand, or lost
    with its disk, is created again, empty until its first refresh)."""
    client.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, description String, "
        "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = MergeTree ORDER BY version"
    )
    current = int(client.query("SELECT max(version) FROM schema_migrations").result_rows[0][0] or 0)
    source, rollups = client.query(f"SELECT currentDatabase(), {ROLLUPS_DB_SQL}").result_rows[0]

    def named(statement: str) -> str:
        return statement.replace(R, quoted(str(rollups))).replace(S, quoted(str(source)))

    applied = []
    for version, description, statements in MIGRATIONS:
        if version <= current:
            continue
        for statement in statements:
            client.command(named(statement))
        client.insert("schema_migrations", [[version, description]], column_names=["version", "description"])
        applied.append(version)
    if max([current, *applied]) == LATEST:  # the rollups as the latest version defines them
        for statement in (f"CREATE DATABASE IF NOT EXISTS {R} ENGINE = Atomic", *CREATE_ROLLUPS):
            client.command(named(statement))  # each IF NOT EXISTS: nothing happens when there
    return applied
