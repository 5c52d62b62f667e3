"""``tributary run sink-stripe``: payout-requests -> Connect transfers.

Per batch: execute each payout (see :mod:`sinks.stripe.payouts`), produce its
result to ``payout-results`` and its ledger entry (payout, or reversal on a
permanent failure) to ``royalty-ledger``, flush, then commit the request offsets.
A crash before the commit re-delivers the requests; results read back at start-up
and Stripe's own record of transfers stop a second transfer.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from confluent_kafka import Message
from prometheus_client import Counter

from sinks.stripe.payouts import (
    RetryableStripeError,
    TransferApi,
    execute,
    result_record,
)
from streams.accrual import payout_entry
from tributary import kafka
from tributary.health import Health
from tributary.kafka import TopicReader
from tributary.topics import Topic

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


def run(bootstrap: str, api: TransferApi, stop: threading.Event, health: Health | None = None) -> None:
    health = health or Health()
    holders = HolderDirectory(bootstrap)
    done = completed_payouts(bootstrap)
    log.info("stripe sink ready holders=%d completed_payouts=%d", len(holders.accounts), len(done))
    consumer = kafka.consumer(bootstrap, GROUP_ID)
    producer = kafka.producer(bootstrap)
    consumer.subscribe([Topic.PAYOUT_REQUESTS.value])
    health.mark_ready(holders=len(holders.accounts))
    try:
        while not stop.is_set():
            health.beat()
            messages = kafka.good_messages(consumer.consume(num_messages=50, timeout=0.5))
            if not messages:
                continue
            for msg in messages:
                payout = json.loads(kafka.payload(msg))
                if payout["payout_id"] in done:
                    log.info("payout already completed, skipping payout_id=%s", payout["payout_id"])
                    continue
                delay = 0.5
                while True:
                    try:
                        outcome = execute(payout, holders.account(payout["holder_id"]), api)
                        break
                    except RetryableStripeError as exc:
                        # still failing after the client's own retries (Stripe down, rate limited):
                        # hold this payout, nothing committed, and try it again
                        RETRIES.inc()
                        log.warning("stripe unavailable, holding payout payout_id=%s retry_in=%.1fs error=%s",
                                    payout["payout_id"], delay, exc)
                        health.beat()  # waiting on Stripe is progress, not a stall
                        if stop.wait(delay):
                            return  # nothing committed for this batch: re-read on restart
                        delay = min(delay * 2, 60)
                result = result_record(payout, outcome)
                entry = payout_entry(result, payout["currency"], result["completed_at"])
                key = payout["holder_id"].encode()
                producer.produce(Topic.PAYOUT_RESULTS.value, key=key, value=kafka.dumps(result))
                producer.produce(Topic.ROYALTY_LEDGER.value, key=key, value=kafka.dumps(entry))
                done[payout["payout_id"]] = result
                PAYOUTS.labels(outcome.status).inc()
                log.info("payout %s payout_id=%s holder=%s amount_micros=%d transfer=%s error=%s",
                         outcome.status, payout["payout_id"], payout["holder_id"],
                         payout["amount_micros"], outcome.transfer_id, outcome.error)
            kafka.flush_then_commit(producer, consumer, messages, "payout results")
    finally:
        producer.flush(10)
        consumer.close()

