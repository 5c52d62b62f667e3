"""The rollups stay exact under retried and replayed inserts, on the real ClickHouse engine
(chdb): records go through the sink's own path (Kafka JSON -> rows -> write_batch), some
batches are written twice (a retry after a lost answer), some ranges again cut differently
(a replay after a crash before the commit), events arrive after their ledger entries;
after a refresh every rollup equals a recomputation from the journal, deduplicated by
id in Python."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from sinks.clickhouse.rows import Rows, to_rows
from sinks.clickhouse.schema import migrate, refresh_rollups, rollups_database
from sinks.clickhouse.store import ClickHouseStore
from tributary.topics import Topic

pytestmark = pytest.mark.clickhouse

START = datetime(2026, 11, 1, tzinfo=UTC)
MODELS = ["acme-chat-large", "acme-chat-small", "nimbus-writer"]


def journal(seed: int, events: int = 400) -> tuple[list[dict], list[dict]]:
    """(priced events, ledger entries): accruals to holders and escrow, some refunded,
    some review moves, and payout entries the rollups must leave out."""
    rnd = random.Random(seed)
    priced, entries = [], []
    for n in range(events):
        currency = rnd.choice(["USD", "EUR"])
        when = START + timedelta(days=rnd.randrange(20), seconds=rnd.randrange(86_400))
        event = {"event_id": f"evt-{seed}-{n}", "occurred_at": when.isoformat(), "provider": rnd.choice(["acme", "nimbus"]),
                 "model": {"name": rnd.choice(MODELS), "revision": "r1"},
                 "contract": {"contract_id": "c", "version": 1, "currency": currency},
                 "revenue_micros": 10_000, "pool_micros": 2_000, "source": {"partition": 0, "offset": n}}
        priced.append(event)
        parts = [(f"h-{rnd.randrange(6)}", f"w-{rnd.randrange(12)}", rnd.randrange(1, 900)) for _ in range(rnd.randrange(1, 4))]
        parts.append(("escrow:unattributed", None, rnd.randrange(1, 500)))
        refunded = rnd.random() < 0.1
        for i, (holder, work, amount) in enumerate(parts):
            base = {"schema_version": 1, "currency": currency, "holder_id": holder, "work_id": work,
                    "event_id": event["event_id"], "contract_id": "c", "contract_version": 1,
                    "attribution_id": f"at-{seed}-{n}", "payout_id": None, "transfer_id": None,
                    "debit_account": "provider:acme:royalty_liability",
                    "credit_account": holder if holder.startswith("escrow:") else f"holder:{holder}:payable",
                    "created_at": (when + timedelta(minutes=1)).isoformat()}
            entries.append({**base, "entry_id": f"le-{seed}-{n}-{i}", "entry_type": "accrual", "amount_micros": amount,
                            "source_id": f"at-{seed}-{n}"})
            if refunded:
                entries.append({**base, "entry_id": f"le-{seed}-{n}-{i}-r", "entry_type": "accrual_reversal",
                                "amount_micros": amount, "source_id": f"cor-{n}",
                                "debit_account": base["credit_account"], "credit_account": base["debit_account"]})
    for h in range(3):  # payouts: not earnings
        entries.append({"schema_version": 1, "entry_id": f"le-{seed}-po-{h}", "entry_type": "payout", "currency": "USD",
                        "holder_id": f"h-{h}", "work_id": None, "event_id": None, "source_id": f"po_{h}",
                        "debit_account": f"holder:h-{h}:reserved", "credit_account": f"holder:h-{h}:paid",
                        "amount_micros": 100, "contract_id": None, "contract_version": None, "attribution_id": None,
                        "payout_id": f"po_{h}", "transfer_id": "tr_1", "created_at": START.isoformat()})
    return priced, entries


WRITTEN: dict[str, int] = defaultdict(int)  # rows handed to ClickHouse, duplicates included


def write(store: ClickHouseStore, topic: Topic, records: list[dict]) -> None:
    rows: dict[str, list[Rows]] = defaultdict(list)
    for offset, record in enumerate(records):
        converted = to_rows(topic, 0, offset, json.dumps(record).encode())
        if converted is not None:
            rows[converted.table].append(converted)
    store.write_batch(rows)
    for table, written in rows.items():
        WRITTEN[table] += sum(part.count for part in written)


def expected(priced: list[dict], entries: list[dict]) -> dict[str, dict[tuple, tuple]]:
    events = {e["event_id"]: e for e in priced}
    base: dict[tuple, list] = defaultdict(lambda: [0, set()])
    for e in {e["entry_id"]: e for e in entries}.values():
        if e["entry_type"] not in ("accrual", "accrual_reversal"):
            continue
        ev = events[e["event_id"]]
        day = datetime.fromisoformat(ev["occurred_at"]).date()
        key = (day, e["holder_id"], e["work_id"] or "", ev["provider"], ev["model"]["name"], e["currency"])
        base[key][0] += -e["amount_micros"] if e["entry_type"] == "accrual_reversal" else e["amount_micros"]
        if e["entry_type"] == "accrual":
            base[key][1].add(e["event_id"])

    def roll(pick, keep) -> dict[tuple, tuple]:
        out: dict[tuple, list] = defaultdict(lambda: [0, set()])
        for key, (earned, outputs) in base.items():
            if keep(key):
                out[pick(key)][0] += earned
                out[pick(key)][1] |= outputs  # an output crediting two works of a holder counts once
        return {k: (v[0], len(v[1])) for k, v in out.items()}

    holders = lambda k: not k[1].startswith("escrow:")  # noqa: E731
    return {
        "holder_day": roll(lambda k: (k[0], k[1], k[5]), holders),
        "holder_model_day": roll(lambda k: (k[0], k[1], k[4], k[5]), holders),
        "work_day": roll(lambda k: (k[0], k[2], k[1], k[5]), holders),
        "escrow_day": roll(lambda k: (k[0], k[3], k[4], k[5]), lambda k: k[1] == "escrow:unattributed"),
    }


QUERIES = {
    "holder_day": "SELECT day, holder_id, currency, earned_micros, uniqExactMerge(outputs) FROM {db}.holder_day "
                  "GROUP BY day, holder_id, currency, earned_micros",
    "holder_model_day": "SELECT day, holder_id, model_name, currency, earned_micros, uniqExactMerge(outputs) "
                        "FROM {db}.holder_model_day GROUP BY day, holder_id, model_name, currency, earned_micros",
    "work_day": "SELECT day, work_id, holder_id, currency, earned_micros, uniqExactMerge(outputs) FROM {db}.work_day "
                "GROUP BY day, work_id, holder_id, currency, earned_micros",
    "escrow_day": "SELECT day, provider, model_name, currency, escrow_micros, uniqExactMerge(events) "
                  "FROM {db}.escrow_day GROUP BY day, provider, model_name, currency, escrow_micros",
}


@pytest.mark.parametrize("seed", [1, 2])
def test_rollups_equal_the_journal_after_retries_and_replays(tmp_path, seed):
    store = ClickHouseStore(f"chdb://{tmp_path}/clickhouse")
    WRITTEN.clear()
    try:
        migrate(store.client)
        # no background merge may remove a duplicate before the rollup sees it: FINAL must
        for table in ("ledger_entries", "priced_events"):
            store.client.command(f"SYSTEM STOP MERGES {table}")
        priced, entries = journal(seed)
        rnd = random.Random(seed * 7)
        rnd.shuffle(entries)
        late = set(rnd.sample(range(len(priced)), len(priced) // 5))  # these events arrive after their entries
        write(store, Topic.ATTRIBUTION_REQUESTS, [e for i, e in enumerate(priced) if i not in late])
        at = 0
        while at < len(entries):
            size = rnd.randrange(1, 60)
            batch = entries[at:at + size]
            write(store, Topic.ROYALTY_LEDGER, batch)
            if rnd.random() < 0.3:  # a retry: the same batch again
                write(store, Topic.ROYALTY_LEDGER, batch)
            if rnd.random() < 0.2:  # a replay from an earlier committed offset, cut differently
                back = rnd.randrange(0, at + 1)
                write(store, Topic.ROYALTY_LEDGER, entries[back:at + size])
            at += size
        write(store, Topic.ATTRIBUTION_REQUESTS, [priced[i] for i in sorted(late)])
        write(store, Topic.ATTRIBUTION_REQUESTS, priced[:50])  # and a replay of the events too
        refresh_rollups(store.client)
        db = rollups_database(store.client)
        assert WRITTEN["ledger_entries"] > len(entries) * 1.2  # many rows really went in twice or more
        assert store.client.query("SELECT count() FROM ledger_entries").result_rows[0][0] == WRITTEN["ledger_entries"]
        want = expected(priced, entries)
        for name, sql in QUERIES.items():
            got = {tuple(r[:-2]): (int(r[-2]), int(r[-1])) for r in store.client.query(sql.format(db=db)).result_rows}
            assert got == want[name], name
        # the holder view the CLI reads (FINAL, live) agrees with the rollup
        view = dict(((str(d), h, c), int(m)) for d, h, c, m in store.client.query(
            "SELECT day, holder_id, currency, sum(earned_micros) FROM holder_earnings_daily "
            "GROUP BY day, holder_id, currency").result_rows)
        assert view == {(str(k[0]), k[1], k[2]): v[0] for k, v in want["holder_day"].items()}
        # the earnings report: from the rollups by default, from the journal with live, the same rows
        from tributary import reports

        def run(sql, params):
            result = store.client.query(sql, parameters=params)
            return list(result.column_names), [list(r) for r in result.result_rows]

        for by in (["holder"], ["holder", "day"], ["model", "day"], ["work"], ["holder", "provider"], ["day"]):
            assert reports.earnings(run, by) == reports.earnings(run, by, live=True), by
    finally:
        store.close()


def test_a_refresh_replaces_the_rollup_whole(tmp_path):
    """New entries after a refresh show at the next one; nothing is added twice across refreshes."""
    store = ClickHouseStore(f"chdb://{tmp_path}/clickhouse")
    try:
        migrate(store.client)
        priced, entries = journal(3, events=60)
        write(store, Topic.ATTRIBUTION_REQUESTS, priced)
        write(store, Topic.ROYALTY_LEDGER, entries[:100])
        refresh_rollups(store.client)
        db = rollups_database(store.client)
        first = store.client.query(f"SELECT sum(earned_micros) FROM {db}.holder_day").result_rows[0][0]
        refresh_rollups(store.client)  # nothing new: the same total, not twice it
        assert store.client.query(f"SELECT sum(earned_micros) FROM {db}.holder_day").result_rows[0][0] == first
        write(store, Topic.ROYALTY_LEDGER, entries)
        refresh_rollups(store.client)
        total = sum(v[0] for v in expected(priced, entries)["holder_day"].values())
        assert store.client.query(f"SELECT sum(earned_micros) FROM {db}.holder_day").result_rows[0][0] == total
        # what operators see of it: each rollup's age since its last refresh, as the sink exports it
        from prometheus_client import REGISTRY

        from sinks.clickhouse.service import record_rollup_ages

        ages = record_rollup_ages(store)
        assert set(ages) == {"earnings_day", "holder_day", "holder_model_day", "work_day", "escrow_day"}
        assert all(0 <= age < 60 for age in ages.values()), ages
        assert REGISTRY.get_sample_value("tributary_rollup_age_seconds", {"rollup": "holder_day"}) == ages["holder_day"]
        assert REGISTRY.get_sample_value("tributary_rollup_refresh_failing", {"rollup": "holder_day"}) == 0
    finally:
        store.close()


def test_a_lost_rollups_database_is_built_again_at_start(tmp_path):
    """Rollups are derived data: if their database is dropped (by hand, or lost with its
    disk), the sink's start-up creates it again and the next refresh fills it exactly."""
    store = ClickHouseStore(f"chdb://{tmp_path}/clickhouse")
    try:
        migrate(store.client)
        priced, entries = journal(5, events=40)
        write(store, Topic.ATTRIBUTION_REQUESTS, priced)
        write(store, Topic.ROYALTY_LEDGER, entries)
        db = rollups_database(store.client)
        store.client.command(f"DROP DATABASE {db}")
        assert migrate(store.client) == []  # no migration is due; the rollups are made anyway
        refresh_rollups(store.client)
        total = sum(v[0] for v in expected(priced, entries)["holder_day"].values())
        assert store.client.query(f"SELECT sum(earned_micros) FROM {db}.holder_day").result_rows[0][0] == total
    finally:
        store.close()
