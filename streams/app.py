"""The Faust app: ingest, one thin agent over the pure functions of :mod:`streams.ingest`.

    inference-events -> ingest -> attribution-requests   (invalid -> inference-events.dlq)

Delivery is at-least-once. Every send is made with ``force=True``: it goes to the
producer at once instead of being "attached" to the event and published at commit
time (we saw attached sends lost around rebalances), and Faust flushes the producer
before every offset commit, so an acknowledged event's outputs are durable; every
record derived here has a deterministic id and the dedupe marks make a replay decide
the same, so a crash never double-prices an event. The money stages (accrue,
balances) are transactional loops outside Faust: :mod:`streams.money`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import time
import weakref
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiokafka
import faust
import faust.streams as faust_streams
import orjson
from faust.exceptions import ConsumerNotStarted
from faust.types import TP
from prometheus_client import Counter

from schemas import topic_manifests
from schemas.batches import BATCH_MAX_EVENTS
from streams.contracts import ContractBook, ContractFeed
from streams.dlq_limit import INGEST_TABLE, DeadLetterLimit
from streams.ingest import (
    IngestBook,
    Rejection,
    Source,
    dead_letter,
    dead_letter_headers,
)
from streams.marks import MarkStore, ensure_marks_topic, marks_topic
from streams.offsets import OffsetGuard, records_between
from streams.stall import StallDetector
from tributary.config import load_pipeline, load_platform, streams_app_id
from tributary.health import Health
from tributary.lag import probe_partitions
from tributary.topics import Topic

log = logging.getLogger("tributary.streams")

platform = load_platform()
pipeline = load_pipeline()
contracts = ContractBook.load()

EVENTS_IN = Counter("tributary_ingest_events_total", "Inference events and refunds read by ingest")
DEAD_LETTERED = Counter("tributary_ingest_dead_lettered_total", "Inputs sent to the dead-letter topic")
REROUTED = Counter("tributary_ingest_rerouted_total",
                   "Events forwarded to their event_id's home partition (producer did not key by event_id)")
REQUEST_RECORDS = Counter("tributary_ingest_request_records_total",
                          "attribution-requests records sent (a batch record carries many requests)")
REWINDS = Counter("tributary_streams_rewinds_total", "Offsets committed back to records skipped by Faust")


# the watchdog (streams.stall): a worker whose own partitions have had records waiting
# for this long with no progress exits with STALLED_EXIT_CODE, and `tributary run
# streams` (or Kubernetes) restarts it
STALL_AFTER_S = float(os.environ.get("TRIBUTARY_STREAMS_STALL_S", "60"))
WATCHDOG_INTERVAL_S = float(os.environ.get("TRIBUTARY_STREAMS_WATCHDOG_S", "5"))
STALLED_EXIT_CODE = 75
# records per Faust take (each may be a batch of events from the SDK)
INGEST_TAKE = int(os.environ.get("TRIBUTARY_INGEST_TAKE", "200"))
REQUEST_RECORD_BYTES = 800_000  # an attribution-requests record stays under Kafka's 1 MB
HALTED_EXIT_CODE = 3  # stopped by the DLQ rate limit: not to be restarted blindly
HALT_FILE = platform.streams_halt_file  # read by `tributary status`
stalls = StallDetector(STALL_AFTER_S)
# the same /healthz, /readyz and /metrics as every other stage (tributary.health), served by
# Faust's web server: alive while the event loop runs its heartbeat timer (and the agent
# its takes); ready after the first partition assignment
HEALTH = Health(stall_after_s=STALL_AFTER_S + 3 * WATCHDOG_INTERVAL_S)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


class _Table(faust.Table):  # type: ignore[misc]
    """faust.Table, except that a changelog whose partitions the consumer's metadata
    does not list yet (a topic created at start-up reads as 0 partitions until the next
    metadata refresh, minutes later) is not a mismatch: Faust raised PartitionsMismatch on
    every table write until then and the balances agent crash-looped. The check still
    runs (and is cached) once the count is known."""

    def _verify_source_topic_partitions(self, source_topic: str) -> None:
        if not self.app.consumer.topic_partitions(self.changelog_topic_name):
            return
        super()._verify_source_topic_partitions(source_topic)


# the input's partitions: the table's changelog has as many (co-partitioned by key)
PARTITIONS = topic_manifests()[Topic.INFERENCE_EVENTS].partitions

# Faust builds its aiokafka consumer with fetch_max_wait_ms=1500, fixed. aiokafka keeps one
# fetch in flight per broker, leaving out partitions whose records are still being
# consumed; when the fetch in flight holds only partitions with nothing new, it waits the
# whole 1.5 s while the others fill. With 12 partitions that was most of emit -> ingest:
# p50 1.1-1.4 s at 1,000 and 2,000 events/s (benchmarks/streams_bench.py, per hop), 56-107
# ms with 50 ms. An idle worker then sends ~20 small fetches a second.
FETCH_MAX_WAIT_MS = int(os.environ.get("TRIBUTARY_INGEST_FETCH_WAIT_MS", "50"))
_faust_consumer_init = aiokafka.AIOKafkaConsumer.__init__


def _consumer_init(self: aiokafka.AIOKafkaConsumer, *args: Any, **kwargs: Any) -> None:
    if kwargs.get("group_id") == streams_app_id():  # Faust's worker consumer, not its client ones
        kwargs["fetch_max_wait_ms"] = FETCH_MAX_WAIT_MS
    _faust_consumer_init(self, *args, **kwargs)


aiokafka.AIOKafkaConsumer.__init__ = _consumer_init  # type: ignore[method-assign]

# Faust's RocksDB tables, one folder per app id (a replay under another id starts empty)
STREAMS_DIR = platform.data_dir / "streams" / streams_app_id()
STREAMS_DIR.mkdir(parents=True, exist_ok=True)

app = faust.App(
    streams_app_id(),
    broker=f"kafka://{platform.bootstrap_servers}",
    # the dedupe marks of the whole window live on disk (RocksDB through rocksdict), not in
    # memory: a 7-day window at fleet rates is billions of keys. memory:// for unit tests.
    store=os.environ.get("TRIBUTARY_STREAMS_STORE", "rocksdb://"),
    topic_partitions=PARTITIONS,
    topic_replication_factor=1,
    value_serializer="json",
    key_serializer="json",
    consumer_auto_offset_reset="earliest",
    broker_commit_interval=0.5,
    producer_linger=0.005,  # batch sends for 5 ms: far fewer produce requests under load
    # a killed worker's partitions move after 10 s, not the default minute
    broker_session_timeout=10.0,
    broker_heartbeat_interval=3.0,
    web_enabled=True,
    web_host=os.environ.get("TRIBUTARY_HTTP_HOST", "127.0.0.1"),  # 0.0.0.0 in a pod
    web_port=int(os.environ.get("TRIBUTARY_STREAMS_WEB_PORT", "6066")),
    datadir=str(STREAMS_DIR),
    Table=_Table,
)


def _topic(name: Topic) -> faust.TopicT:
    return app.topic(
        name.value, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )


inference_events = _topic(Topic.INFERENCE_EVENTS)
dlq = _topic(Topic.INFERENCE_EVENTS_DLQ)
attribution_requests = _topic(Topic.ATTRIBUTION_REQUESTS)
corrections = _topic(Topic.CORRECTIONS)

# dedupe and refund marks: see streams.ingest.IngestBook
seen_events = app.Table(INGEST_TABLE, default=None, partitions=PARTITIONS)
ingest_book = IngestBook(seen_events, contracts, window_s=pipeline.dedupe_window_s, autotrack=False)
# the dedupe marks themselves: on disk, one record per partition per take (streams.marks)
mark_store = MarkStore(platform.bootstrap_servers, streams_app_id(), STREAMS_DIR / "marks")
ingest_marks = app.topic(marks_topic(streams_app_id()), key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw")
# the dead-letter rate limit's per-partition history lives in the same table
dlq_limit = DeadLetterLimit(seen_events, pipeline.dlq_window, pipeline.dlq_max_fraction, pipeline.dlq_min_events,
                            partitions=PARTITIONS)


ingest_offsets = OffsetGuard(seen_events, Topic.INFERENCE_EVENTS.value)


async def _after_recovery(event: faust.EventT) -> None:
    """Hold an event handed over while the tables are still being restored.

    During recovery Faust resumes its flow to read the changelogs, and a record
    prefetched before the rebalance can reach an agent then (faust-streaming #221):
    processed against half-restored tables it would miss its dedupe mark or rebuild
    the in-memory balances from old values (a payout id issued twice). So the agent
    waits until the tables are complete. If another rebalance starts meanwhile (whose
    revocation would wait for this unacknowledged event) or recovery takes longer than
    the stall limit, the worker exits unacknowledged and restarts from its committed
    offsets."""
    if not app.in_recovery:
        return
    generation = app.rebalancing_count
    deadline = time.monotonic() + STALL_AFTER_S
    log.warning("event %s/%d@%d arrived while tables are being restored; holding it until recovery ends",
                event.message.topic, event.message.partition, event.message.offset)
    while app.in_recovery:
        if app.rebalancing_count != generation or time.monotonic() > deadline:
            log.critical("recovery did not finish while holding %s/%d@%d; exiting unacknowledged to restart "
                         "from the committed offsets", event.message.topic, event.message.partition,
                         event.message.offset)
            logging.shutdown()
            os._exit(STALLED_EXIT_CODE)
        await asyncio.sleep(0.05)


async def _guard(guard: OffsetGuard, event: faust.EventT) -> None:
    """Returns if ``event`` is next in line. If records before it were never processed,
    the worker commits the offset of the first of them for this partition (lower than
    what Faust committed) and exits before acknowledging ``event``: the supervisor
    restarts it and it handles them in order from there. (Seeking within the running
    worker is not reliable: Faust's fetch loop can drop the re-fetched records.)"""
    partition, offset = event.message.partition, event.message.offset
    gap = guard.gap(partition, offset)
    if gap is not None:
        await _rewind_if_skipped(guard, partition, gap, f"before record {offset}")


async def _rewind_if_skipped(guard: OffsetGuard, partition: int, gap: tuple[int, int], where: str) -> None:
    """If real records lie in ``gap`` (offsets never processed), commit the offset of the
    first and exit, to restart there; transaction markers or retention-deleted records
    in between are no gap."""
    first = await asyncio.get_running_loop().run_in_executor(
        None, records_between, platform.bootstrap_servers, guard.topic, partition, *gap)
    if first is None:
        return
    log.critical("records %d..%d of %s/%d were never processed (%s; a rebalance race committed past them); "
                 "committing offset %d and restarting to handle them in order", first, gap[1] - 1, guard.topic,
                 partition, where, first)
    REWINDS.inc()
    # below what Faust committed: its own commit() refuses to move an offset back
    await app.consumer._commit({TP(guard.topic, partition): first})  # type: ignore[attr-defined]
    logging.shutdown()
    os._exit(STALLED_EXIT_CODE)


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
        force=True,
    )


def _halt(reason: str) -> None:
    """Stop the worker without acknowledging the event in hand. Not restarted by the
    supervisor; a restart (Kubernetes) finds the same history and halts again, until an
    operator runs `tributary resume ingest`."""
    log.critical("halting ingest: %s", reason)
    try:
        HALT_FILE.parent.mkdir(parents=True, exist_ok=True)
        HALT_FILE.write_text(reason + "\n")
    except OSError as exc:
        log.error("could not record the halt in %s: %s", HALT_FILE, exc)
    logging.shutdown()
    os._exit(HALTED_EXIT_CODE)


def _assigned_partitions(topic: Topic) -> tuple[int, list[int]] | None:
    """(the topic's partition count, the partitions of it this worker owns); None under
    ``agent.test_context()``, where no consumer runs."""
    try:
        assignment = app.consumer.assignment()
    except ConsumerNotStarted:
        return None
    count = app.consumer.topic_partitions(topic.value) or topic_manifests()[topic.value].partitions
    return count, sorted(tp.partition for tp in assignment if tp.topic == topic.value)


FORWARDED_FROM = "tributary-forwarded-from"


def _forwarded_from(msg: Any) -> str | None:
    """The producer's message a forwarded record stands for (its header), if any."""
    headers = msg.headers or []
    pairs = headers.items() if isinstance(headers, dict) else headers
    for name, value in pairs:
        if name == FORWARDED_FROM and value:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def _received_at(event: faust.EventT) -> datetime:
    timestamp = event.message.timestamp  # seconds; set by the producer or the broker
    return datetime.fromtimestamp(timestamp, UTC) if timestamp else datetime.now(UTC)


async def _handled(event: faust.EventT, handle: Callable[[faust.EventT], Awaitable[None]]) -> None:
    """Handle one record. An exception (a bug, or Faust failing a table write) exits the
    worker before the record is acknowledged: the supervisor restarts it, the tables are
    recovered from their changelogs and the record is handled again from the committed
    offset. Faust would instead restart the agent in this process, with its in-memory
    state possibly half-updated by the failed record."""
    stalls.progressed(event.message.topic, event.message.partition)
    # table writes go to the changelog partition of the "current event": in a take,
    # Faust leaves that unset (faust.streams.current_event), so say which it is
    faust_streams._current_event.set(weakref.ref(event))
    await _after_recovery(event)
    tp = (event.message.topic, event.message.partition)
    if tp not in _resumed:  # where each partition picks up after a (re)assignment
        _resumed.add(tp)
        log.info("resuming %s/%d at offset %d", tp[0], tp[1], event.message.offset)
    try:
        await handle(event)
    except Exception:
        log.exception("failed handling %s/%d@%d; exiting unacknowledged, to restart from the committed "
                      "offsets with state rebuilt from the tables", event.message.topic,
                      event.message.partition, event.message.offset)
        logging.shutdown()
        os._exit(STALLED_EXIT_CODE)


_ingest_owned: list[int] = []  # the inference-events partitions this worker owns


def _item_bytes(item: Any) -> bytes:
    """One event of a batch record as a record of its own (to dead-letter or forward)."""
    try:
        return orjson.dumps(item)
    except TypeError:  # a lone surrogate: orjson refuses it, json escapes it
        return json.dumps(item).encode()


def _limit_exceeded() -> str | None:
    """The dead-letter limit over every partition this worker owns, judged together. With
    a current event set, Faust's RocksDB table looks a key up only in that event's
    partition (each partition is its own database), which judged one partition alone; with
    none, it finds each partition's history where it lives."""
    current = faust_streams._current_event.get(None)
    faust_streams._current_event.set(None)
    try:
        return dlq_limit.exceeded(_ingest_owned)
    finally:
        faust_streams._current_event.set(current)


async def _ingest(event: faust.EventT, requests: dict[int, list[dict[str, Any]]],
                  counts: dict[int, list[tuple[int, int, int]]]) -> None:
    """One record of inference-events (one event or a batch of them); the attribution
    requests it yields are added to ``requests`` (by partition), sent after the take, and
    its (offset, events, dead-lettered) to ``counts``, for the rate limit after the take."""
    await _guard(ingest_offsets, event)
    if ingest_book.needs_rebuild:  # after every (re)assignment
        ingest_book.rebuild()
        assigned = _assigned_partitions(Topic.INFERENCE_EVENTS)
        # every copy of an event is decided on its event_id's home partition (IngestBook);
        # under agent.test_context() there is no partitioning and every partition is ours
        ingest_book.partitions = assigned[0] if assigned else None
        _ingest_owned[:] = assigned[1] if assigned else range(topic_manifests()[Topic.INFERENCE_EVENTS].partitions)
        if assigned:  # the marks of the partitions now ours, caught up from their topic (in the table under tests)
            await asyncio.get_running_loop().run_in_executor(None, mark_store.restore, list(_ingest_owned))
            ingest_book.views = mark_store.view
        halt = _limit_exceeded()
        if halt:  # the restored history already exceeds the limit: handle nothing
            _halt(halt)
    msg = event.message
    raw: bytes = event.value or b""
    source = Source(msg.topic, msg.partition, msg.offset, _forwarded_from(msg))
    counted = rejected = 0
    for where, decision, item in ingest_book.handle_record(raw, source, _received_at(event)):
        own = raw if item is None else _item_bytes(item)
        if decision.reroute is not None:
            assert decision.event_id is not None
            REROUTED.inc()
            log.info("forwarding event_id=%s from %s to its home partition %d", decision.event_id, where.identity,
                     decision.reroute)
            await inference_events.send(key=decision.event_id.encode(), value=own, partition=decision.reroute,
                                        headers=[(FORWARDED_FROM, where.identity.encode())], force=True)
            continue
        counted += 1
        if decision.rejection is not None:
            rejected += 1
            await _reject(own, decision.rejection, where)
        if decision.request is not None:
            requests.setdefault(msg.partition, []).append(decision.request)
        if decision.correction is not None:
            await corrections.send(key=decision.correction["event_id"].encode(),
                                   value=_dumps(decision.correction), force=True)
    EVENTS_IN.inc(counted)
    DEAD_LETTERED.inc(rejected)
    ingest_offsets.advance(msg.partition, msg.offset)  # in memory; in the table at the end of the take
    if counted:
        counts.setdefault(msg.partition, []).append((msg.offset, counted, rejected))


async def _send_marks(partition: int, offset: int) -> None:
    """What the take changed in the partition's marks, as one record (streams.marks)."""
    if ingest_book.views is None:
        return
    record = mark_store.pending(partition)
    if record is not None:
        await ingest_marks.send(key=f"{partition}:{offset}".encode(), value=record, partition=partition, force=True)
        mark_store.committed(partition)


async def _send_requests(requests: dict[int, list[dict[str, Any]]]) -> None:
    """One attribution-requests record per input partition and take: a batch record
    (attribution-request-batch.v1) of up to BATCH_MAX_EVENTS requests and
    REQUEST_RECORD_BYTES, or a single request. Keyed by the first event_id: every request
    of a group has the same home partition."""
    for partition in sorted(requests):
        group: list[bytes] = []
        size = 0
        for request in requests[partition]:
            encoded = _dumps(request)
            if group and (len(group) >= BATCH_MAX_EVENTS or size + len(encoded) > REQUEST_RECORD_BYTES):
                await _send_group(group)
                group, size = [], 0
            group.append(encoded)
            size += len(encoded) + 1
        if group:
            await _send_group(group)
    requests.clear()


async def _send_group(group: list[bytes]) -> None:
    first = orjson.loads(group[0])["event_id"].encode()
    value = group[0] if len(group) == 1 else b'{"kind":"batch","requests":[' + b",".join(group) + b'],"schema_version":1}'
    REQUEST_RECORDS.inc()
    await attribution_requests.send(key=first, value=value, force=True)


@app.agent(inference_events)
async def ingest(stream: faust.StreamT) -> None:
    """Records are taken up to INGEST_TAKE at a time (or what arrived within 5 ms): the
    requests of a take go out as one record per partition, and Faust acknowledges the
    take's records once all of it is sent."""
    async for events in stream.take_events(INGEST_TAKE, within=0.005):  # type: ignore[attr-defined]
        HEALTH.beat()
        requests: dict[int, list[dict[str, Any]]] = {}
        counts: dict[int, list[tuple[int, int, int]]] = {}
        last: dict[int, faust.EventT] = {}
        for event in events:
            await _handled(event, functools.partial(_ingest, requests=requests, counts=counts))
            last[event.message.partition] = event
        try:
            for partition, event in sorted(last.items()):
                # the table writes of the take go to this partition's changelog partition
                faust_streams._current_event.set(weakref.ref(event))
                ingest_book.track(partition)  # the take's new marks are listed for expiry
                await _send_marks(partition, event.message.offset)
                ingest_offsets.flush(partition)
                dlq_limit.record_many(partition, counts.get(partition, []))
            halt = _limit_exceeded()
            await _send_requests(requests)
        except Exception:
            log.exception("failed finishing a take (expiry lists, attribution requests); exiting "
                          "unacknowledged, to restart from the committed offsets")
            logging.shutdown()
            os._exit(STALLED_EXIT_CODE)
        if halt:  # judged once per take: the take is sent, and read again after `tributary resume ingest`
            partition, event = max(last.items())
            faust_streams._current_event.set(weakref.ref(event))
            dlq_limit.halt(partition, halt)
            await app.producer.flush()  # the halt (a table write) reaches the changelog before we exit
            _halt(halt)


_resumed: set[tuple[str, int]] = set()


@app.on_partitions_assigned.connect  # type: ignore[misc,arg-type]
async def _assigned(app: faust.App, assigned: Any, **kwargs: Any) -> None:
    log.info("assigned %s", sorted(f"{tp.topic}/{tp.partition}" for tp in assigned if tp.topic in SOURCES))
    HEALTH.mark_ready(partitions=sorted(tp.partition for tp in assigned if tp.topic in SOURCES))
    _resumed.clear()
    # in-memory indexes are rebuilt from the tables, which are recovered before agents resume
    ingest_book.needs_rebuild = True
    ingest_offsets.reset()  # another worker may have moved our new partitions on


SOURCES = (Topic.INFERENCE_EVENTS.value,)


CONTRACTS_REFRESH_S = 10.0
contract_feed: list[ContractFeed] = []  # set by main() before the worker starts (not in unit tests)


def follow_contracts() -> None:
    """Contract versions published on the contracts topic join the built-in ones: read
    before the worker starts (the first read opens a reader and may take a while: not in
    the event loop), then every CONTRACTS_REFRESH_S, and before an event is refused for an
    unknown contract or version (``ContractFeed.missed``: at most every 2 s per contract id)."""
    feed = ContractFeed(platform.bootstrap_servers, contracts)
    feed.refresh()
    contract_feed.append(feed)
    contracts.on_miss = feed.missed
    log.info("contracts: %d versions known", len(contracts.versions()))


@app.timer(interval=CONTRACTS_REFRESH_S)
async def refresh_contracts() -> None:
    for feed in contract_feed:
        feed.refresh()


@app.timer(interval=WATCHDOG_INTERVAL_S)
async def heartbeat() -> None:
    """Liveness: the event loop runs timers (a blocked loop stops this, and /healthz says
    so). Its own timer: the watchdog's Kafka probes may wait on a slow broker."""
    HEALTH.beat()


@app.timer(interval=WATCHDOG_INTERVAL_S)
async def watchdog() -> None:
    """Exits a worker stuck on its own partitions (records waiting, no progress), and
    rewinds one whose group committed past records its agent never processed (the last
    records of a partition, which no later record reveals to the offset guard)."""
    if app.rebalancing or app.in_recovery:
        stalls.reset()
        return
    mine = [(tp.topic, tp.partition) for tp in app.consumer.assignment() if tp.topic in SOURCES]
    quiet = stalls.quiet(mine)
    if not quiet:
        return
    committed, waiting = await asyncio.get_running_loop().run_in_executor(
        None, probe_partitions, platform.bootstrap_servers, app.conf.id, quiet)
    for (topic, partition), offset in sorted(committed.items()):
        gap = ingest_offsets.committed_past(partition, offset) if topic == ingest_offsets.topic else None
        if gap is not None and not app.rebalancing:
            await _rewind_if_skipped(ingest_offsets, partition, gap, f"committed offset {offset}")
    stuck = stalls.stalled(waiting, quiet)
    if stuck:
        log.critical("stalled: records waiting on %s with no progress for %.0fs; exiting to be restarted",
                     [p for p, _ in stuck], max(s for _, s in stuck))
        logging.shutdown()
        os._exit(STALLED_EXIT_CODE)


def _health_page(path: str) -> Callable[[Any, Any], Awaitable[Any]]:
    async def page(web: Any, request: Any) -> Any:
        HEALTH.detail["rebalancing"] = bool(app.rebalancing)
        answer = HEALTH.response(path)
        assert answer is not None
        status, body, content_type = answer
        return web.bytes(body, content_type=content_type.split(";")[0], status=status)
    return page


# Prometheus metrics: Faust's own per-message Prometheus sensor cost ~20% of throughput
# in the benchmark, so the agents keep cheap counters instead
for _path in ("/healthz", "/readyz", "/metrics"):
    app.page(_path, name=f"tributary-{_path.strip('/')}")(_health_page(_path))


def main() -> None:
    HALT_FILE.unlink(missing_ok=True)  # a worker that starts is no longer halted (it halts again if it must)
    ensure_marks_topic(platform.bootstrap_servers, streams_app_id(),
                       topic_manifests()[Topic.INFERENCE_EVENTS].partitions, pipeline.dedupe_window_s)
    follow_contracts()
    from tributary.logs import config

    # the same JSON lines as every other stage (mode's own coloured format otherwise)
    faust.Worker(app, loglevel="INFO", logging_config=config("streams")).execute_from_commandline()
