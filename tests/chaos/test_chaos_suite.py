"""The chaos suite: with traffic flowing, kill -9 each pipeline process in turn
(streams worker, attribution worker, accrue, balances, ClickHouse sink, Stripe sink),
then restart the Kafka broker. Payouts go to the stateful Connect double (tests/stripe_double.py),
which also injects a rate limit, a 5xx and a lost response. Afterwards, read back
from ClickHouse and from the double: every event accounted exactly once, totals exact
to the micro, no duplicate ledger row visible to queries, no duplicate transfer, and
`tributary reconcile` finds the books in agreement."""

from __future__ import annotations

import threading
import time

import pytest

from producers.sdk import EventProducer
from sinks.stripe.payouts import FoundTransfer
from sinks.stripe.reconcile import LEDGER_SQL, ledger_payouts, reconcile
from tests.conftest import reset_platform
from tests.integration.checks import cli_args, events_not_split_exactly, read_topic
from tests.stripe_double import ConnectDouble
from tributary import demo
from tributary.cli import main
from tributary.config import load_pipeline
from tributary.money import from_stripe_amount
from tributary.platform import kafka, local
from tributary.query import query, scalar
from tributary.sample import plan_events
from tributary.topics import Topic

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.stripe, pytest.mark.model,
              pytest.mark.e2e, pytest.mark.chaos]

EVENTS = 500
THRESHOLD = 150_000
# what is broken, and after how many published events
STEPS = [("streams", 50), ("attribution", 110), ("accrue", 170), ("balances", 230), ("sink-clickhouse", 290),
         ("sink-stripe", 350), ("kafka", 420)]


@pytest.fixture(scope="module")
def after_chaos(platform_cfg):
    cfg = platform_cfg
    reset_platform(cfg)
    double = ConnectDouble().start()
    double.inject("rate_limit", "drop_after_create", "server_error")  # the first transfers meet trouble
    env = {"TRIBUTARY_STRIPE_API_BASE": double.url, "TRIBUTARY_PAYOUT_THRESHOLD_MICROS": str(THRESHOLD),
           "TRIBUTARY_PAYOUT_FEE_FIXED_MICROS": "5000"}
    demo.start_stages(cfg, log=lambda m: None, env=env)
    broken: list[tuple[str, int]] = []
    try:
        sample = demo.register_and_index(cfg, load_pipeline(), 600, log=lambda m: None)
        planned = plan_events(sample, EVENTS, seed=31)
        published = [0]

        def publish() -> None:
            with EventProducer(cfg.bootstrap_servers) as producer:
                for item in planned:
                    producer.emit(item.event)
                    published[0] += 1
                    time.sleep(0.08)  # ~12 events/s: every step lands mid-stream
                assert producer.flush(300) == 0

        publisher = threading.Thread(target=publish)
        publisher.start()
        for target, after in STEPS:
            while published[0] < after:
                time.sleep(0.05)
            broken.append((target, published[0]))
            if target == "kafka":
                kafka.stop(cfg)  # the whole broker goes away, then comes back on the same data
                kafka.start(cfg, log=lambda m: None)
            else:
                local.stage_process(cfg, target).kill()  # kill -9: no shutdown, no final commit
                time.sleep(1)
                demo.start_stage(cfg, target, env)
        publisher.join()
        counts = demo.wait_for(cfg, "pipeline", demo.settle_probe(cfg, EVENTS, 0), timeout=900, log=print)
        yield cfg, double, counts, broken
    finally:
        for stage in local.STAGES:
            local.stage_process(cfg, stage).stop(timeout=20)
        double.stop()


def test_every_process_and_the_broker_were_broken_mid_stream(after_chaos):
    broken = after_chaos[3]
    assert [t for t, _ in broken] == [t for t, _ in STEPS]
    assert all(0 < n < EVENTS for _, n in broken)


def test_every_event_is_accounted_exactly_once_to_the_micro(after_chaos):
    cfg, _, counts, _ = after_chaos
    assert counts["priced"] == counts["attributed"] == counts["accrued"] == EVENTS
    assert events_not_split_exactly(cfg) == 0
    assert scalar(cfg, "SELECT count() FROM dead_letters FINAL") == 0  # replays are not duplicates
    total, distinct = query(cfg, "SELECT count(), uniqExact(entry_id) FROM ledger_entries FINAL")[1][0]
    assert total == distinct
    pool = scalar(cfg, "SELECT sum(pool_micros) FROM priced_events FINAL")
    credited = scalar(cfg, "SELECT sum(amount_micros) FROM ledger_entries FINAL WHERE entry_type = 'accrual'")
    assert pool == credited > 0


def test_the_money_stages_wrote_every_entry_and_request_once_to_kafka(after_chaos):
    """Not only deduplicated by ClickHouse's FINAL: in the topics themselves, accrue posted
    each entry once and balances issued each payout request once, through every kill."""
    cfg = after_chaos[0]
    entries, requests = read_topic(cfg, Topic.ROYALTY_LEDGER), read_topic(cfg, Topic.PAYOUT_REQUESTS)
    accruals = [e["entry_id"] for e in entries if e["entry_type"] in ("accrual", "accrual_reversal")]
    assert len(accruals) == len(set(accruals)) > 0
    assert len(requests) == len({r["payout_id"] for r in requests}) > 0


def test_no_transfer_is_doubled_and_stripe_agrees_with_the_ledger(after_chaos):
    cfg, double, counts, _ = after_chaos
    assert double.create_attempts > len(double.transfers)  # the injected failures were retried
    groups = double.by_group()
    assert all(len(ts) == 1 for ts in groups.values())  # one transfer per payout id, ever
    _, ledger = query(cfg, "SELECT payout_id, amount_micros, transfer_id, currency FROM ledger_entries FINAL "
                           "WHERE entry_type = 'payout'")
    assert counts["payouts_done"] == len(ledger) == len(double.transfers) >= 5
    for payout_id, amount, transfer_id, currency in ledger:
        [transfer] = groups[payout_id]
        assert (transfer.id, transfer.currency, from_stripe_amount(transfer.amount, currency)) == (
            transfer_id, currency.lower(), amount)
    found = [FoundTransfer(t.id, t.amount, t.destination, t.transfer_group, t.metadata.get("payout_id"), t.created,
                           t.currency) for t in double.transfers]
    assert [f for f in reconcile(ledger_payouts(query(cfg, LEDGER_SQL)[1]), found) if f.is_mismatch] == []
    _, balances = query(cfg, "SELECT holder_id, accrued_micros, paid_micros, unpaid_micros, reserved_micros "
                             "FROM holder_balances")
    for holder, accrued, paid, unpaid, reserved in balances:
        assert 0 <= paid <= accrued and unpaid == accrued - paid and reserved == 0, holder


def test_the_trial_balance_closes_per_account_and_currency(after_chaos, capsys):
    """Through every kill: debits equal credits, every account on its normal side, every
    payout's reservation settled (nothing pending), and the CLI says the same."""
    from tributary import ledger, reports

    cfg = after_chaos[0]
    balances, pending = reports.trial_balance(reports.runner(cfg))
    assert pending == {} and ledger.problems(balances, pending) == []
    kinds = {ledger.account_kind(a)[0] for a, _ in balances}
    assert {ledger.Kind.HOLDER_RESERVED, ledger.Kind.HOLDER_PAID, ledger.Kind.ESCROW_UNATTRIBUTED} <= kinds
    assert all(b == 0 for (a, _), b in balances.items() if a.endswith(":reserved"))
    _, types = query(cfg, "SELECT entry_type, count() FROM ledger_entries FINAL GROUP BY entry_type")
    counts = dict(types)
    assert counts["reservation"] == counts["payout"] + counts.get("payout_reversal", 0)
    assert main([*cli_args(cfg), "trial-balance"]) == 0
    assert "the books close" in capsys.readouterr().out


def test_reconcile_cli_agrees_then_reports_a_stray_transfer(after_chaos, monkeypatch, capsys):
    cfg, double, _, _ = after_chaos
    monkeypatch.setenv("TRIBUTARY_STRIPE_API_BASE", double.url)
    argv = cli_args(cfg)
    assert main([*argv, "reconcile"]) == 0
    assert "books agree" in capsys.readouterr().out
    double.create_transfer({"amount": "777", "currency": "usd", "destination": "acct_x",
                            "transfer_group": "po_not_ours"}, "stray-key")
    assert main([*argv, "reconcile"]) == 1
    out = capsys.readouterr().out
    assert "transfer_without_payout" in out and "po_not_ours" in out and "1 MISMATCH" in out
