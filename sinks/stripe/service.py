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

from confluent_kafka import Message
from prometheus_client import Counter

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


class PayoutStage:
    """Payout requests (keyed by holder_id) -> transfer, result and ledger entry."""

    name = "sink-stripe"
    inputs = [t.value for t in stages()["sink-stripe"].inputs]
    state_topic = None  # payout ids handled since start, in memory: the results topic is the record

    def __init__(self, api: TransferApi, holders: HolderDirectory, done: dict[str, dict[str, Any]],
                 stop: threading.Event, health: Health):
        self.api, self.holders, self.done, self.stop, self.health = api, holders, done, stop, health

    def handle(self, msg: Message, state: PartitionState) -> list[Output]:
        payout = json.loads(kafka.payload(msg))
        payout_id = payout["payout_id"]
        if payout_id in self.done or payout_id in state:
            log.info("payout already completed, skipping payout_id=%s", payout_id)
            return []
        outcome = self._execute(payout)
        result = result_record(payout, outcome)
        entry = ledger.payout_outcome(result, payout["currency"], result["completed_at"])
        state[payout_id] = outcome.status  # committed with the result, forgotten if the batch aborts
        PAYOUTS.labels(outcome.status).inc()
        log.info("payout %s payout_id=%s holder=%s amount_micros=%d transfer=%s error=%s", outcome.status,
                 payout_id, payout["holder_id"], payout["amount_micros"], outcome.transfer_id, outcome.error)
        key = payout["holder_id"].encode()
        return [Output(Topic.PAYOUT_RESULTS.value, key, kafka.dumps(result)),
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
        worker_id: str = "0") -> None:
    health = health or Health()
    holders = HolderDirectory(bootstrap)
    done = completed_payouts(bootstrap)
    log.info("stripe sink ready holders=%d completed_payouts=%d", len(holders.accounts), len(done))
    stage = PayoutStage(api, holders, done, stop, health)
    # one payout per transaction at most a few: each waits on Stripe before the commit
    TransactionalLoop(stage, LoopConfig(bootstrap, instance_id=worker_id, batch_max=50, batch_wait_s=0.5)).run(
        stop, health)
