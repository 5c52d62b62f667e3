"""The data dictionary (docs/tables.md) covers every table, view and column the sink's
migrations create, on the real ClickHouse engine (chdb), and is up to date."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sinks.clickhouse.dictionary import TABLES, describe, migrated_columns, render

pytestmark = pytest.mark.clickhouse

DOC = Path(__file__).resolve().parents[2] / "docs" / "tables.md"


@pytest.fixture(scope="module")
def columns():
    return migrated_columns()


def test_every_table_and_view_is_described_and_nothing_else(columns):
    assert set(columns) == set(TABLES)


def test_every_column_has_a_meaning(columns):
    missing = [f"{t}.{c}" for t, cols in columns.items() for c, _ in cols if not describe(t, c)]
    assert not missing, f"describe these in sinks/clickhouse/dictionary.py: {missing}"
    unused = [f"{t}.{c}" for t, spec in TABLES.items() for c in spec.columns
              if c not in {name for name, _ in columns[t]}]
    assert not unused, f"described but not in the engine: {unused}"


def test_docs_tables_md_is_generated_from_the_engine(columns):
    assert DOC.read_text() == render(columns), \
        "docs/tables.md is stale: .venv/bin/python -m sinks.clickhouse.dictionary > docs/tables.md"


def test_every_field_the_sink_writes_is_a_column(columns):
    """The sink's JSON lines are inserted with unknown fields skipped (a ledger entry's
    schema_version has no column): so a row field the sink names wrongly would vanish
    silently. Every field of every row made from every valid example is a column."""
    from schemas import examples, topic_manifests
    from sinks.clickhouse.rows import INT_COLUMNS, to_rows

    skipped = {"schema_version"}
    seen = set()
    for topic in topic_manifests():
        for offset, (name, raw) in enumerate(examples(topic)):
            if not name.startswith("valid-"):
                continue
            rows = to_rows(topic, 0, offset, raw)
            if rows is None:
                continue
            names = {name for name, _ in columns[rows.table]}
            for row in rows.dicts():
                assert set(row) - skipped <= names, f"{topic} -> {rows.table}: not columns {set(row) - skipped - names}"
                for name, kind in columns[rows.table]:  # each integer column's range is checked as the engine's
                    if name in row and rows.table != "ledger_entries" and re.fullmatch(r"U?Int\d+", kind):
                        assert INT_COLUMNS.get(name) == int_range(kind), f"{rows.table}.{name} {kind}"
            seen.add(rows.table)
    assert {"ledger_entries", "priced_events", "attributions", "payout_results"} <= seen


def int_range(kind: str) -> tuple[int, int]:
    bits = int(kind.lstrip("UInt"))
    return (0, 2**bits - 1) if kind.startswith("U") else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
