"""The Stripe sink as a transactional loop on the real broker, paying through the
stateful Connect double with the real Stripe client: a sink that dies after Stripe made
the transfers but before its transaction committed leaves no result and no ledger entry
behind (read_committed); its successor, same worker id, fences it, finds the transfers
at Stripe and posts each payout's result and ledger entry once, with no second transfer."""

from __future__ import annotations

import threading
import time

import orjson
import pytest

from sinks.stripe.payouts import StripeTransfers
from sinks.stripe.service import PayoutStage, completed_payouts
from tests.conftest import reset_platform
from tests.integration.checks import read_topic
from tests.stripe_double import ConnectDouble
from tributary import ledger
from tributary.health import Health
from tributary.kafka import producer
from tributary.topics import Topic
from tributary.txloop import LoopConfig, TransactionalLoop

pytestmark = [pytest.mark.kafka, pytest.mark.stripe]

HOLDERS = ["h-1", "h-2", "h-3"]


class Died(Exception):
    """The process went away with its transaction open (as kill -9 would leave it)."""


class DiesAtCommit:
    """The loop's producer, up to the commit."""

    def __init__(self, real):
        self.real = real

    def __getattr__(self, name):
        return getattr(self.real, name)

    def commit_transaction(self, *_args):
        raise Died


def request(holder: str) -> dict:
    return {"schema_version": 1, "payout_id": f"po_{holder}", "holder_id": holder, "amount_micros": 2_500_000,
            "currency": "USD", "sequence": 0, "balance_after_micros": 0,
            "requested_at": "2026-11-20T00:00:00+00:00", "estimated_fee_micros": 0}


def sink(cfg, double: ConnectDouble, stop: threading.Event) -> TransactionalLoop:
    from sinks.stripe.service import HolderDirectory

    api = StripeTransfers("sk_test_123", double.url, max_network_retries=0)
    stage = PayoutStage(api, HolderDirectory(cfg.bootstrap_servers), completed_payouts(cfg.bootstrap_servers),
                        stop, Health())
    return TransactionalLoop(stage, LoopConfig(cfg.bootstrap_servers, instance_id="t", batch_max=50))


@pytest.fixture(scope="module")
def crashed_then_resumed(platform_cfg):
    cfg = platform_cfg
    reset_platform(cfg)
    double = ConnectDouble().start()
    out = producer(cfg.bootstrap_servers)
    for holder in HOLDERS:
        out.produce(Topic.CATALOG_UPDATES.value, key=holder.encode(), value=orjson.dumps(
            {"schema_version": 1, "kind": "holder", "holder_id": holder, "name": holder,
             "stripe_account": f"acct_{holder}"}))
        out.produce(Topic.PAYOUT_REQUESTS.value, key=holder.encode(), value=orjson.dumps(request(holder)))
    assert out.flush(30) == 0
    try:
        # the first sink pays, produces the results and entries, and dies before its commit
        stop = threading.Event()
        first = sink(cfg, double, stop)

        first.producer = DiesAtCommit(first.producer)  # type: ignore[assignment]
        with pytest.raises(Died):
            first.run(stop)
        after_crash = (len(double.transfers), read_topic(cfg, Topic.PAYOUT_RESULTS),
                       read_topic(cfg, Topic.ROYALTY_LEDGER))
        # its successor, same transactional id
        second = sink(cfg, double, stop)
        runner = threading.Thread(target=second.run, args=(stop,))
        runner.start()
        deadline = time.monotonic() + 60
        while len(read_topic(cfg, Topic.PAYOUT_RESULTS)) < len(HOLDERS) and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)  # anything more it would (wrongly) post
        stop.set()
        runner.join(30)
        yield cfg, double, after_crash
    finally:
        double.stop()


def test_nothing_of_the_dead_sinks_transaction_is_visible(crashed_then_resumed):
    _, _, (transfers, results, entries) = crashed_then_resumed
    assert transfers == len(HOLDERS)  # Stripe did pay: the crash came after the transfers
    assert results == [] and entries == []


def test_the_successor_posts_each_payout_once_with_stripes_transfer(crashed_then_resumed):
    cfg, double, _ = crashed_then_resumed
    assert len(double.transfers) == len(HOLDERS)  # found at Stripe, not made again
    results = read_topic(cfg, Topic.PAYOUT_RESULTS)
    entries = read_topic(cfg, Topic.ROYALTY_LEDGER)
    by_group = {t.transfer_group: t.id for t in double.transfers}
    assert sorted(r["payout_id"] for r in results) == sorted(f"po_{h}" for h in HOLDERS)
    assert all(r["status"] == "paid" and r["transfer_id"] == by_group[r["payout_id"]] for r in results)
    assert sorted(e["payout_id"] for e in entries) == sorted(f"po_{h}" for h in HOLDERS)
    for e in entries:
        assert ledger.check(e)["entry_type"] == "payout"
        assert (e["debit_account"], e["credit_account"]) == (ledger.holder_reserved(e["holder_id"]),
                                                             ledger.holder_paid(e["holder_id"]))
        assert e["transfer_id"] == by_group[e["payout_id"]]
