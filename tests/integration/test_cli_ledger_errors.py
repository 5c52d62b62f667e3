"""The reporting commands on a real (chdb) ledger: a statement written into a missing
folder is one clear error line, not a traceback; ``explain`` names the event's own
currency once. The ledger is written and read by separate processes, as the sink and
the CLI do."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.clickhouse

SETUP = textwrap.dedent("""
    import sys
    from sinks.clickhouse.schema import migrate
    from sinks.clickhouse.store import ClickHouseStore

    store = ClickHouseStore("chdb://" + sys.argv[1])
    migrate(store.client)
    store.client.command("INSERT INTO holders (holder_id, name, stripe_account, catalog_offset) "
                         "VALUES ('h1', 'Holder One', 'acct_1', 0)")
    store.client.command(
        "INSERT INTO priced_events (event_id, occurred_at, provider, model_name, model_revision, contract_id, "
        "contract_version, currency, revenue_micros, pool_micros, source_partition, source_offset, metadata) "
        "VALUES ('evt-eur', '2026-11-20 10:00:00', 'acme', 'acme-chat', 'r1', 'standard-2026', 1, 'EUR', "
        "25000, 2500, 0, 0, '{}')")
    store.close()
""")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("ledger")
    subprocess.run([sys.executable, "-c", SETUP, str(data / "clickhouse")], check=True, timeout=300)
    return data


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tributary.cli", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=300)


def test_a_statement_into_a_missing_folder_is_one_clear_line(data_dir, tmp_path):
    missing = tmp_path / "reports" / "h1.txt"
    out = cli(data_dir, "statement", "h1", "--output", str(missing))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip() == (f"error: --output {missing}: the folder {missing.parent} does not exist; "
                                  f"create it first (mkdir -p {missing.parent}) or choose another path")
    written = tmp_path / "h1.txt"
    out = cli(data_dir, "statement", "h1", "--output", str(written))
    assert out.returncode == 0, out.stderr
    assert written.read_text().startswith("Statement for Holder One (h1)"), written.read_text()


def test_explain_names_the_events_currency_once(data_dir):
    out = cli(data_dir, "explain", "evt-eur")
    assert out.returncode == 0, out.stderr
    assert "revenue 0.025000 EUR x contract standard-2026 v1 -> royalty pool 0.002500 EUR" in out.stdout, out.stdout
    assert "USD" not in out.stdout
