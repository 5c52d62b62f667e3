"""The Faust app: three thin agents over the pure functions of this package.

    inference-events -> ingest  -> attribution-requests   (invalid -> inference-events.dlq)
    attributions     -> accrue  -> royalty-ledger         (key holder_id)
    royalty-ledger   -> balances -> payout-requests       (key holder_id)

Delivery is at-least-once (Faust commits after the agent has processed an event and
its sends are flushed); every record derived here has a deterministic id and every
state update is idempotent, so a crash and replay never double-credits a holder.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from datetime import UTC, datetime
from typing import Any

import faust

from streams.accrual import accrue
from streams.balances import HolderBalance, apply_entry
from streams.contracts import ContractBook
from streams.ingest import (
    DeadLetterLimit,
    Rejection,
    Source,
    dead_letter,
    dead_letter_headers,
    parse_event,
    price_event,
)
from tributary.config import load_pipeline, load_platform
from tributary.topics import Topic

log = logging.getLogger("tributary.streams")

platform = load_platform()
pipeline = load_pipeline()
contracts = ContractBook.load()
dlq_limit = DeadLetterLimit(pipeline.dlq_window, pipeline.dlq_max_fraction)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


app = faust.App(
    os.environ.get("TRIBUTARY_STREAMS_APP_ID", "tributary-streams"),
    broker=f"kafka://{platform.bootstrap_servers}",
    store="memory://",
    topic_partitions=4,
    topic_replication_factor=1,
    value_serializer="json",
    key_serializer="json",
    consumer_auto_offset_reset="earliest",
    broker_commit_interval=0.5,
    web_enabled=True,
    web_host="127.0.0.1",
    web_port=int(os.environ.get("TRIBUTARY_STREAMS_WEB_PORT", "6066")),
    datadir=str(platform.data_dir / "streams"),
)


def _topic(name: Topic) -> faust.TopicT:
    return app.topic(
        name.value, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )


inference_events = _topic(Topic.INFERENCE_EVENTS)
dlq = _topic(Topic.INFERENCE_EVENTS_DLQ)
attribution_requests = _topic(Topic.ATTRIBUTION_REQUESTS)
attributions = _topic(Topic.ATTRIBUTIONS)
royalty_ledger = _topic(Topic.ROYALTY_LEDGER)
payout_requests = _topic(Topic.PAYOUT_REQUESTS)

# event_id -> {"partition", "offset"} of the first copy seen (dedupe)
seen_events = app.Table("ingest-seen-events", default=None, partitions=4)
# holder_id -> HolderBalance.to_json()
balances = app.Table("holder-balances", default=None, partitions=4)


async def _reject(raw: bytes, rejection: Rejection, source: Source) -> None:
    log.warning(
        "dead-lettered event_id=%s code=%s field=%s reason=%s source=%s/%d@%d",
        rejection.event_id, rejection.code, rejection.field, rejection.reason,
        source.topic, source.partition, source.offset,
    )
    await dlq.send(
        key=(rejection.event_id or "").encode() or None,
        value=_dumps(dead_letter(raw, rejection, source)),
        headers=dead_letter_headers(rejection, source),
    )


def _halt(reason: str) -> None:
    log.critical("halting ingest: %s", reason)
    os.kill(os.getpid(), signal.SIGTERM)


@app.agent(inference_events)
async def ingest(stream: faust.StreamT) -> None:
    async for event in stream.events():
        msg = event.message
        raw: bytes = event.value or b""
        source = Source(msg.topic, msg.partition, msg.offset)
        parsed = parse_event(raw, contracts)
        if isinstance(parsed, Rejection):
            await _reject(raw, parsed, source)
            dlq_limit.record(True)
        else:
            event_id = parsed["event_id"]
            first = seen_events.get(event_id)
            if first is not None and (first["partition"], first["offset"]) != (source.partition, source.offset):
                await _reject(
                    raw,
                    Rejection(
                        "duplicate_event_id", "event_id",
                        f"event_id {event_id!r} was already accepted at partition "
                        f"{first['partition']} offset {first['offset']}",
                        event_id,
                    ),
                    source,
                )
                dlq_limit.record(True)
            else:
                request = price_event(parsed, contracts, source)
                await attribution_requests.send(key=event_id.encode(), value=_dumps(request))
                if first is None:
                    seen_events[event_id] = {"partition": source.partition, "offset": source.offset}
                dlq_limit.record(False)
        if dlq_limit.exceeded():
            _halt(
                f"{dlq_limit.fraction:.0%} of the last {len(dlq_limit._outcomes)} events were "
                "dead-lettered; check the producers' deploy, then restart `tributary run streams`"
            )


@app.agent(attributions)
async def accrue_agent(stream: faust.StreamT) -> None:
    async for raw in stream:
        attribution = json.loads(raw)
        for entry in accrue(attribution, _now()):
            await royalty_ledger.send(key=entry["holder_id"].encode(), value=_dumps(entry))


@app.agent(royalty_ledger)
async def balances_agent(stream: faust.StreamT) -> None:
    async for raw in stream:
        entry = json.loads(raw)
        holder_id = entry["holder_id"]
        if holder_id.startswith("escrow:"):
            continue  # escrow is never paid out; ClickHouse reports it
        stored = balances.get(holder_id)
        state = HolderBalance.from_json(stored) if stored else HolderBalance(holder_id, entry["currency"])
        request = apply_entry(state, entry, pipeline.payout_threshold_micros, _now())
        balances[holder_id] = state.to_json()
        if request is not None:
            log.info("payout requested payout_id=%s holder=%s amount_micros=%d",
                     request["payout_id"], holder_id, request["amount_micros"])
            await payout_requests.send(key=holder_id.encode(), value=_dumps(request))


def main() -> None:
    try:
        from faust.sensors.prometheus import setup_prometheus_sensors

        setup_prometheus_sensors(app)  # /metrics on the Faust web port
    except Exception as exc:  # noqa: BLE001 - metrics are optional, processing is not
        log.warning("prometheus sensors unavailable: %s", exc)
    worker = faust.Worker(app, loglevel="INFO")
    worker.execute_from_commandline()
