"""A holder onboarded as a Stripe Express account, the way it goes in live mode, against
the stateful Connect double with the real balances stage and Stripe sink processes on
the real broker: `tributary holders add` prints the hosted onboarding link; while the
holder has not finished onboarding, their payouts wait (no request, no failed transfer)
and `tributary holders status` says why; once Stripe enables transfers, the sink's
account watcher notices, balances requests what is due and the sink pays it."""

from __future__ import annotations

import time

import orjson
import pytest

from tests.conftest import reset_platform
from tests.integration.checks import cli_args, read_topic
from tests.stripe_double import ConnectDouble
from tributary import demo, ledger
from tributary.cli import main
from tributary.kafka import producer
from tributary.lag import LagReader
from tributary.platform import local
from tributary.topics import Topic
from tributary.topology import stages

pytestmark = [pytest.mark.kafka, pytest.mark.stripe]

HOLDER = "h-onboard"
ACCRUALS = [1_000_000, 1_500_000, 1_000_000]  # 3.50: past the default threshold and fee share
CONTRACT = {"contract_id": "standard-2026", "version": 1, "currency": "USD"}


def accrual(n: int, amount: int) -> dict:
    attribution = {"attribution_id": f"at-onb-{n}", "event_id": f"ev-onb-{n}", "provider": "acme",
                   "contract": CONTRACT}
    return ledger.accrual(attribution, f"le-onb-{n}", f"at-onb-{n}", HOLDER, "w-1", amount,
                          "2026-11-20T00:00:00+00:00")


def wait_for(what, check, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def onboarding(platform_cfg, monkeypatch_module):
    cfg = platform_cfg
    reset_platform(cfg)
    double = ConnectDouble().start()
    monkeypatch_module.setenv("TRIBUTARY_STRIPE_API_BASE", double.url)
    env = {"TRIBUTARY_STRIPE_API_BASE": double.url, "TRIBUTARY_ACCOUNT_RECHECK_S": "2"}
    try:
        for stage in ("balances", "sink-stripe"):
            demo.start_stage(cfg, stage, env)
        yield cfg, double
    finally:
        for stage in ("balances", "sink-stripe"):
            local.stage_process(cfg, stage).stop(timeout=20)
        double.stop()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_payouts_wait_for_onboarding_then_are_paid(onboarding, capsys):
    cfg, double = onboarding
    argv = cli_args(cfg)
    assert main([*argv, "holders", "add", "--id", HOLDER, "--name", "Onboarding Press",
                 "--email", "press@example.invalid"]) == 0
    out = capsys.readouterr().out
    [account] = list(double.accounts)
    assert f"https://connect.double.invalid/setup/{account}" in out and "payouts wait" in out
    # balances reads the account's readiness and the ledger from two topics, in no fixed order
    # between them: in service, accruals come long after onboarding; here, they wait until
    # balances has read that the account cannot receive transfers yet
    lags = LagReader(cfg.bootstrap_servers)
    try:
        wait_for("balances to read the holder's readiness",
                 lambda: lags.backlog(stages()["balances"].group, [Topic.HOLDER_POLICIES]) == 0)
    finally:
        lags.close()
    # the holder earns past the threshold before finishing onboarding
    out_producer = producer(cfg.bootstrap_servers)
    for n, amount in enumerate(ACCRUALS):
        entry = accrual(n, amount)
        out_producer.produce(Topic.ROYALTY_LEDGER.value, key=HOLDER.encode(), value=orjson.dumps(entry))
    assert out_producer.flush(30) == 0
    time.sleep(8)  # time enough for balances to have requested a payout, were it allowed to
    assert [r for r in read_topic(cfg, Topic.PAYOUT_REQUESTS) if r["holder_id"] == HOLDER] == []
    assert double.create_attempts == 0  # waiting, not failing
    assert main([*argv, "holders", "status", "--id", HOLDER]) == 0
    status = capsys.readouterr().out
    assert "external_account" in status and "1 whose payouts wait" in status
    # the holder finishes Stripe's onboarding: the sink's watcher notices, balances pays what is due
    double.complete_onboarding(account)
    [result] = wait_for("the payout", lambda: [r for r in read_topic(cfg, Topic.PAYOUT_RESULTS)
                                               if r["holder_id"] == HOLDER])
    assert result["status"] == "paid" and result["amount_micros"] == sum(ACCRUALS)
    [transfer] = double.transfers
    assert (transfer.destination, transfer.amount, transfer.id) == (account, 350, result["transfer_id"])
    entries = [e for e in read_topic(cfg, Topic.ROYALTY_LEDGER) if e["entry_type"] in ("reservation", "payout")]
    assert [e["entry_type"] for e in entries] == ["reservation", "payout"]
    assert main([*argv, "holders", "login", "--id", HOLDER]) == 0
    assert f"https://connect.double.invalid/express/{account}" in capsys.readouterr().out
