"""The money stages, each a transactional loop (:mod:`tributary.txloop`):

    attributions + corrections      -> accrue   -> royalty-ledger   (key holder_id)
    royalty-ledger + holder-policies -> balances -> payout-requests (key holder_id)
                                                  + reservations on royalty-ledger

Faust keeps ingest (validate, dedupe, price, fan out); these two moved out of it
because faust-streaming's exactly-once writes agent outputs outside the transaction.
Here a batch's outputs, its state changes and its input offsets commit together.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import Message
from prometheus_client import Counter

from schemas import first_problem
from schemas.batches import BATCH_MAX_ENTRIES, items
from streams.accrual import AccrualBook
from streams.balances import BalanceBook, PayoutPolicy
from tributary import kafka, ledger
from tributary.ledger import InvalidEntry, LedgerEntry
from tributary.state import Expiry, PartitionState
from tributary.topics import Topic
from tributary.topology import stages
from tributary.txloop import Output

log = logging.getLogger("tributary.money")

ATTRIBUTIONS, HOLDER_POLICIES = Topic.ATTRIBUTIONS.value, Topic.HOLDER_POLICIES.value
LEDGER, PAYOUT_REQUESTS = Topic.ROYALTY_LEDGER.value, Topic.PAYOUT_REQUESTS.value
ESCROW_KEY = b"escrow:"  # ledger records are keyed by holder_id
# how a ledger-batch.v1 record starts as accrue writes it (kafka.dumps sorts keys: a single
# entry starts with "amount_micros"): an escrow batch is decoded only to count its entries
BATCH_PREFIX = b'{"entries":'

ACCOUNT_KEY_SUFFIX = b"#account"  # a holder's Connect account readiness on holder-policies

REJECTED = Counter("tributary_stage_rejected_total", "Input records that could not be handled (logged, skipped)",
                   ["stage", "reason"])
ENTRIES_OUT = Counter("tributary_ledger_entries_total", "Ledger entries produced by accrue")
ENTRIES_IN = Counter("tributary_balances_ledger_entries_total",
                     "Ledger entries balances read (a batch record counts its entries)")
PAYOUTS_REQUESTED = Counter("tributary_payout_requests_total", "Payout requests issued by balances")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _decode(stage: str, msg: Message, schema: str | None = None) -> dict[str, Any] | None:
    """The record's JSON object, or None (logged with its position and the reason)."""
    try:
        value = orjson.loads(msg.value() or b"")
    except orjson.JSONDecodeError as exc:
        problem: object = f"not JSON: {exc}"
    else:
        problem = first_problem(schema, value) if schema else None
        if problem is None and isinstance(value, dict):
            return value
        problem = problem or "not a JSON object"
    REJECTED.labels(stage, "invalid").inc()
    topic, partition, offset = kafka.position(msg)
    log.error("stage=%s skipped invalid record %s/%d@%d: %s", stage, topic, partition, offset, problem)
    return None


class AccrueStage:
    """Attributions and corrections (both keyed by event_id) -> ledger entries."""

    name = "accrue"
    inputs = [t.value for t in stages()["accrue"].inputs]
    state_topic = Topic.ACCRUE_STATE.value

    def __init__(self, refund_window_s: float):
        self.book = AccrualBook(refund_window_s)
        self.expiry = Expiry(refund_window_s)
        self._posted: dict[str, list[LedgerEntry]] = {}  # holder_id -> this transaction's entries

    def handle(self, msg: Message, state: PartitionState) -> list[Output]:
        try:
            if msg.topic() == ATTRIBUTIONS:
                attribution = _decode(self.name, msg)
                entries = self.book.on_attribution(state, attribution, _now()) if attribution else []
            else:
                correction = _decode(self.name, msg, "correction.v1")
                entries = self.book.on_correction(state, correction, _now()) if correction else []
        except (InvalidEntry, KeyError, TypeError, ValueError) as exc:
            # a record the ledger cannot post (e.g. an account name outside the chart): skipped
            # and said so, instead of failing the batch on it again and again
            REJECTED.labels(self.name, "unpostable").inc()
            topic, partition, offset = kafka.position(msg)
            log.error("stage=%s skipped unpostable record %s/%d@%d: %s: %s", self.name, topic, partition, offset,
                      type(exc).__name__, exc)
            return []
        ENTRIES_OUT.inc(len(entries))
        for e in entries:
            self._posted.setdefault(e["holder_id"], []).append(e)
        return []

    def end_batch(self, state: PartitionState) -> list[Output]:
        self.expiry.track(state, [(k, t) for k, t in self.book.taken(state) if k in state])
        return self._ledger_records()

    def _ledger_records(self) -> list[Output]:
        """The transaction's entries, one record per holder (a ledger-batch.v1 of their
        entries in posting order, or the entry itself when alone): a thousand events make
        a few records per holder, not thousands, for accrue to produce and balances to read.
        (end_batch runs once per partition of the batch; the first call posts them all.)"""
        out = []
        for holder_id, entries in self._posted.items():
            key = holder_id.encode()
            if len(entries) == 1:
                out.append(Output(LEDGER, key, kafka.dumps(entries[0])))
                continue
            for i in range(0, len(entries), BATCH_MAX_ENTRIES):
                out.append(Output(LEDGER, key, kafka.dumps(
                    {"schema_version": 1, "kind": "batch", "entries": entries[i:i + BATCH_MAX_ENTRIES]})))
        self._posted.clear()
        return out


class BalancesStage:
    """Ledger entries and payout policies (both keyed by holder_id) -> payout requests."""

    name = "balances"
    inputs = [t.value for t in stages()["balances"].inputs]
    state_topic = Topic.BALANCES_STATE.value

    def __init__(self, default_policy: PayoutPolicy):
        self.book = BalanceBook(default_policy)

    def handle(self, msg: Message, state: PartitionState) -> list[Output]:
        if msg.topic() == HOLDER_POLICIES:
            if (msg.key() or b"").endswith(ACCOUNT_KEY_SUFFIX):
                account = _decode(self.name, msg, "holder-account.v1")
                if account is None:
                    return []
                self.book.flush()
                requests = self.book.set_readiness(state, account)
                log.info("connect account holder_id=%s transfers_ready=%s reason=%s", account["holder_id"],
                         account["transfers_ready"], account["reason"] or "-")
                return self._issue(requests)
            raw = _decode(self.name, msg, "holder-policy.v1")
            if raw is not None:
                self.book.flush()
                log.info("payout policy holder_id=%s %s", raw["holder_id"], self.book.set_policy(state, raw))
            return []
        value = msg.value() or b""
        if (msg.key() or b"").startswith(ESCROW_KEY) and not value.startswith(BATCH_PREFIX):
            ENTRIES_IN.inc()  # escrow is never paid out: a single escrow entry is not even decoded
            return []
        record = _decode(self.name, msg)
        if record is None:
            return []
        entries = items(record, "entries")  # a holder's entries of one accrue transaction, in order
        entries = [record] if entries is None else entries
        ENTRIES_IN.inc(len(entries))
        requests = []
        for entry in entries:
            if not entry["holder_id"].startswith("escrow:"):
                requests += self.book.apply(state, entry)
        return self._issue(requests)

    def _issue(self, requests: list[dict[str, Any]]) -> list[Output]:
        out = []
        for request in requests:
            PAYOUTS_REQUESTED.inc()
            log.info("payout requested payout_id=%s holder_id=%s amount_micros=%d", request["payout_id"],
                     request["holder_id"], request["amount_micros"])
            key = request["holder_id"].encode()
            out.append(Output(PAYOUT_REQUESTS, key, kafka.dumps(request)))
            # the reservation, in the same transaction: payable -> reserved until the outcome
            out.append(Output(LEDGER, key, kafka.dumps(ledger.reservation(request))))
        return out

    def end_batch(self, state: PartitionState) -> list[Output]:
        self.book.flush()
        return []
