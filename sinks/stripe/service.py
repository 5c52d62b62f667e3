"""``tributary run sink-stripe``: payout-requests -> Connect transfers.

Per request: execute the payout (see :mod:`sinks.stripe.payouts`), then produce its
result to ``payout-results`` and its ledger entry (reserved -> paid, or reserved ->
payable on a permanent failure) to ``royalty-ledger`` in one Kafka transaction with the
request offsets (:mod:`tributary.txloop`, stable ``transactional.id`` per worker id). A
crash before the commit leaves no result and no entry and re-delivers the request;
Stripe's own record of the transfer (looked up before any create) turns the retry into
the same outcome, so the transfer is made once and its entry posted once. A failed
delivery aborts the transaction: nothing is committed over it.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import stripe
from confluent_kafka import Message
from prometheus_client import Counter

from sinks.stripe.accounts import ConnectAccounts, Readiness, readiness_key
from sinks.stripe.payouts import (
    Outcome,
    RetryableStripeError,
    TransferApi,
    execute,
    result_record,
)
from tributary import kafka, ledger
from tributary.health import Health
from tributary.kafka import TopicReader
from tributary.state import PartitionState
from tributary.topics import Topic
from tributary.topology import stages
from tributary.txloop import Interrupted, LoopConfig, Output, TransactionalLoop

log = logging.getLogger("tributary.sink.stripe")
GROUP_ID = "tributary-sink-stripe"

PAYOUTS = Counter("tributary_payouts_total", "Payouts by outcome", ["status"])
for _status in ("paid", "failed"):  # series from 0, so the first failure is an increase an alert can see
    PAYOUTS.labels(_status)
RETRIES = Counter("tributary_payout_retries_total",
                  "Payouts held because Stripe still failed after the client's own retries")


class HolderDirectory:
    """holder_id -> Connect account, from the holder records on ``catalog-updates``."""

    def __init__(self, bootstrap: str):
        self.accounts: dict[str, str] = {}
        self._reader = TopicReader(bootstrap, Topic.CATALOG_UPDATES.value)
        self.refresh()

    def _apply(self, msg: Message) -> None:
        value = msg.value()
        if value is None:
            return
        update = json.loads(value)
        if update.get("kind") == "holder" and update.get("stripe_account"):
            self.accounts[update["holder_id"]] = update["stripe_account"]

    def refresh(self) -> None:
        self._reader.read_to_end(self._apply)

    def account(self, holder_id: str) -> str | None:
        if holder_id not in self.accounts:
            self.refresh()
        return self.accounts.get(holder_id)


def completed_payouts(bootstrap: str) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    reader = TopicReader(bootstrap, Topic.PAYOUT_RESULTS.value)

    def keep(msg: Message) -> None:
        value = msg.value()
        if value is not None:
            result = json.loads(value)
            done[result["payout_id"]] = result

    reader.read_to_end(keep)
    reader.close()
    return done


class AccountCheck:
    """Asks Stripe whether a Connect account can receive transfers, after a payout to it
    failed (never cached: a stale "not ready" would fail the payout the watcher just freed)."""

    def __init__(self, accounts: ConnectAccounts):
        self.accounts = accounts

    def check(self, account: str) -> Readiness | None:
        """The account's readiness; None when Stripe could not say."""
        try:
            return self.accounts.readiness(account)
        except stripe.StripeError as exc:
            log.warning("could not read Connect account %s: %s", account, exc)
            return None


class AccountWatcher:
    """Holders whose Connect account could not receive transfers (their latest readiness
    record on ``holder-policies``) are asked about again every ``every_s``; once Stripe
    says the account can, a ready record tells balances, which requests what is due.
    (With Stripe webhooks, ``account.updated`` would tell sooner; this needs none.)"""

    def __init__(self, bootstrap: str, accounts: ConnectAccounts, every_s: float):
        self.accounts, self.every_s = AccountCheck(accounts), every_s
        self.latest: dict[str, dict[str, Any]] = {}
        self._reader = TopicReader(bootstrap, Topic.HOLDER_POLICIES.value)
        self._producer = kafka.producer(bootstrap)

    def _apply(self, msg: Message) -> None:
        if (msg.key() or b"").endswith(b"#account") and msg.value():
            record = json.loads(kafka.payload(msg))
            self.latest[record["holder_id"]] = record

    def recheck(self) -> list[str]:
        """Ask Stripe about every holder not ready; the holders now ready (told to balances)."""
        self._reader.read_to_end(self._apply)
        now_ready = []
        for holder, record in sorted(self.latest.items()):
            if record["transfers_ready"]:
                continue
            readiness = self.accounts.check(record["stripe_account"])
            if readiness is not None and readiness.ready:
                key, partition = readiness_key(holder)
                self._producer.produce(Topic.HOLDER_POLICIES.value, key=key, partition=partition,
                                       value=kafka.dumps(readiness.record(holder)))
                now_ready.append(holder)
                log.info("connect account ready holder_id=%s account=%s: its payouts resume", holder, readiness.account)
        if self._producer.flush(30):
            log.warning("account readiness records not acknowledged by Kafka; asking again next time")
        return now_ready

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.every_s):
            try:
                self.recheck()
            except Exception:  # a watcher failing must not stop payouts
                log.exception("account readiness check failed; trying again in %.0fs", self.every_s)


class PayoutStage:
    """Payout requests (keyed by holder_id) -> transfer, result and ledger entry."""

    name = "sink-stripe"
    inputs = [t.value for t in stages()["sink-stripe"].inputs]
    state_topic = None  # payout ids handled since start, in memory: the results topic is the record

    def __init__(self, api: TransferApi, holders: HolderDirectory, done: dict[str, dict[str, Any]],
                 stop: threading.Event, health: Health, accounts: AccountCheck | None = None):
        self.api, self.holders, self.done, self.stop, self.health = api, holders, done, stop, health
        self.accounts = accounts

    def handle(self, msg: Message, state: PartitionState) -> list[Output]:
        payout = json.loads(kafka.payload(msg))
        payout_id = payout["payout_id"]
        if payout_id in self.done or payout_id in state:
            log.info("payout already completed, skipping payout_id=%s", payout_id)
            return []
        out: list[Output] = []
        outcome = self._execute(payout)  # looks for the transfer at Stripe before it makes one
        destination = outcome.destination
        readiness = self.accounts.check(destination) if outcome.status == "failed" and self.accounts and \
            destination else None
        if readiness is not None and not readiness.ready:
            # the account cannot receive transfers (not onboarded, or restricted since): the
            # amount returns to the balance, and balances holds this holder's payouts until the
            # account is ready again (the watcher tells it), instead of failing every one
            outcome = Outcome("failed", None, destination,
                              f"the Connect account cannot receive transfers: {readiness.reason} ({outcome.error})")
            key, partition = readiness_key(payout["holder_id"])
            out.append(Output(Topic.HOLDER_POLICIES.value, key, kafka.dumps(readiness.record(payout["holder_id"])),
                              partition))
        result = result_record(payout, outcome)
        entry = ledger.payout_outcome(result, payout["currency"], result["completed_at"])
        state[payout_id] = outcome.status  # committed with the result, forgotten if the batch aborts
        PAYOUTS.labels(outcome.status).inc()
        log.info("payout %s payout_id=%s holder_id=%s amount_micros=%d transfer=%s error=%s", outcome.status,
                 payout_id, payout["holder_id"], payout["amount_micros"], outcome.transfer_id, outcome.error)
        key = payout["holder_id"].encode()
        return [*out, Output(Topic.PAYOUT_RESULTS.value, key, kafka.dumps(result)),
                Output(Topic.ROYALTY_LEDGER.value, key, kafka.dumps(entry))]

    def _execute(self, payout: dict[str, Any]) -> Outcome:
        delay = 0.5
        while True:
            try:
                return execute(payout, self.holders.account(payout["holder_id"]), self.api)
            except RetryableStripeError as exc:
                # still failing after the client's own retries (Stripe down, rate limited):
                # hold this payout, nothing committed, and try it again
                RETRIES.inc()
                log.warning("stripe unavailable, holding payout payout_id=%s retry_in=%.1fs error=%s",
                            payout["payout_id"], delay, exc)
                self.health.beat()  # waiting on Stripe is progress, not a stall
                if self.stop.wait(delay):
                    raise Interrupted from exc  # nothing of this batch committed: re-read on restart
                delay = min(delay * 2, 60)

    def end_batch(self, state: PartitionState) -> list[Output]:
        return []


def run(bootstrap: str, api: TransferApi, stop: threading.Event, health: Health | None = None,
        worker_id: str = "0", accounts: ConnectAccounts | None = None, account_recheck_s: float = 300) -> None:
    health = health or Health()
    holders = HolderDirectory(bootstrap)
    done = completed_payouts(bootstrap)
    log.info("stripe sink ready holders=%d completed_payouts=%d", len(holders.accounts), len(done))
    stage = PayoutStage(api, holders, done, stop, health, AccountCheck(accounts) if accounts else None)
    if accounts is not None and account_recheck_s > 0:
        watcher = AccountWatcher(bootstrap, accounts, account_recheck_s)
        threading.Thread(target=watcher.run, args=(stop,), name="account-watcher", daemon=True).start()
    # one payout per transaction at most a few: each waits on Stripe before the commit
    TransactionalLoop(stage, LoopConfig(bootstrap, instance_id=worker_id, batch_max=50, batch_wait_s=0.5)).run(
        stop, health)
