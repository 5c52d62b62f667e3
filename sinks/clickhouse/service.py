"""``tributary run sink-clickhouse``: consume every pipeline topic, write, then commit.

Commit order per batch: (1) insert every table's rows, (2) flush the quarantined
records to ``sink-clickhouse.dlq``, (3) commit the consumed offsets synchronously. A
crash between them re-delivers the batch; the rows carry deterministic ids and every
read deduplicates (``FINAL``), so queries never see it twice.

No single record stops the sink. If ClickHouse refuses a batch, the same batch is
retried with backoff (``tries`` times); then it is split to find the records that
fail on their own. A record that fails alone while ClickHouse answers (a probe query
succeeds) is poison: it goes to ``sink-clickhouse.dlq`` with the error, its source
topic/partition/offset and its payload, and the rest is written. If ClickHouse does not
answer at all, nothing is quarantined: the sink keeps retrying (backpressure) and its
``/healthz`` turns unhealthy once no batch has been committed for ``stall_after_s``
while records wait, which ``tributary status`` reports.

chdb locks its data directory to one process, so this process owns it and serves
analysts' SQL to the CLI on 127.0.0.1 (``tributary sql``) on a read-only session of
its own (:class:`sinks.clickhouse.store.ReadOnlyQueries`), behind a bearer token, plus
``/healthz``, ``/readyz`` and Prometheus ``/metrics``.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
from confluent_kafka import KafkaException, Message, Producer
from prometheus_client import Counter, Gauge

from sinks.clickhouse.rows import SOURCE_TOPICS, Rows, to_rows
from sinks.clickhouse.schema import ROLLUPS_DB_SQL, migrate
from sinks.clickhouse.store import BackpressureError, ClickHouseStore, ReadOnlyQueries, RowsRefused
from tributary import kafka
from tributary.health import Health
from tributary.sqlguard import UnsafeQuery
from tributary.topics import Topic

log = logging.getLogger("tributary.sink.clickhouse")
GROUP_ID = "tributary-sink-clickhouse"

ROWS = Counter("tributary_clickhouse_rows_total", "Rows written", ["table"])
RETRIES = Counter("tributary_clickhouse_retries_total", "Batches retried after ClickHouse refused them")
QUARANTINED = Counter("tributary_clickhouse_quarantined_total",
                      "Records sent to sink-clickhouse.dlq (undecodable or refused by ClickHouse on their own)",
                      ["reason"])
ROLLUP_AGE = Gauge("tributary_rollup_age_seconds",
                   "Seconds since the rollup's last successful refresh (never refreshed: since the sink started)",
                   ["rollup"])
ROLLUP_FAILING = Gauge("tributary_rollup_refresh_failing", "1 while the rollup's last refresh failed", ["rollup"])
FRESHNESS_CHECK_S = 15.0
_AT_FIELD = re.compile(r"- at `\$\.?(.+)`$")
_MISSING_FIELD = re.compile(r"missing required field `([^`]+)`")
_BUILDER_FIELD = re.compile(r"field (\w+): ")
MAX_DLQ_PAYLOAD = 500_000  # bytes of UTF-8: the dead letter stays well under Kafka's 1 MB



def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def serve_queries(queries: ReadOnlyQueries, health: Health, port: int, token: str | None
                  ) -> ThreadingHTTPServer:
    """``POST /query``: one read-only statement, as the body (text) or as JSON
    ``{"sql": ..., "parameters": {...}}`` for ``{name:Type}`` placeholders. With a
    ``token``, requests must carry ``Authorization: Bearer <token>``."""

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, code: int, message: str) -> None:
            self._send(code, json.dumps({"error": message}).encode())

        def do_GET(self) -> None:  # noqa: N802
            answer = health.response(self.path)
            if answer is None:
                self._error(404, "try POST /query, GET /healthz, /readyz or /metrics")
            else:
                self._send(*answer)

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/query":
                self._error(404, "POST /query with the SQL as the body")
                return
            if token and not hmac.compare_digest(self.headers.get("Authorization", ""), f"Bearer {token}"):
                self._error(401, "missing or wrong bearer token (TRIBUTARY_QUERY_TOKEN)")
                return
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                sql, parameters = _request(body, self.headers.get("Content-Type", ""))
                columns, rows = queries.query(sql, parameters)
            except UnsafeQuery as exc:
                self._error(403, str(exc))
                return
            except Exception as exc:  # noqa: BLE001 - the analyst gets the engine's message
                self._error(400, str(exc).splitlines()[0][:2000] if str(exc) else type(exc).__name__)
                return
            self._send(200, json.dumps({"columns": columns, "rows": rows}, default=_json_default).encode())

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("query server: " + format, *args)

    host = os.environ.get("TRIBUTARY_HTTP_HOST", "127.0.0.1")  # 0.0.0.0 in a pod, behind the token
    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="query-server", daemon=True).start()
    return server


def _request(body: bytes, content_type: str) -> tuple[str, dict[str, Any] | None]:
    if content_type.startswith("application/json"):
        request = json.loads(body)
        if not isinstance(request, dict) or not isinstance(request.get("sql"), str):
            raise ValueError('expected {"sql": "...", "parameters": {...}}')
        parameters = request.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise ValueError("parameters must be an object")
        return request["sql"], parameters
    return body.decode(), None


@dataclass
class Pending:
    """One consumed record on its way to a table (``rows``: one, or one per item of a batch
    record) or, as a whole, to quarantine (``error``)."""

    msg: Message
    rows: Rows | None = None
    error: str | None = None
    bad_field: str | None = None  # the field the error is about, where the decoder names it

    @property
    def table(self) -> str | None:
        return None if self.rows is None else self.rows.table


def decode(messages: list[Message]) -> list[Pending]:
    out = []
    for msg in messages:
        topic, partition, offset = kafka.position(msg)
        try:
            converted = to_rows(topic, partition, offset, msg.value())
        except Exception as exc:  # noqa: BLE001 - whatever a record does to the decoder is the record's fault
            out.append(Pending(msg, error=f"cannot turn the record into a row: {exc!r}"[:2000], bad_field=error_field(exc)))
            continue
        if converted is not None and converted.count:
            out.append(Pending(msg, converted))
    return out


def error_field(exc: Exception) -> str | None:
    """The field a typed decoder's error names (msgspec: "... - at `$.entries[3].amount_micros`",
    "Object missing required field `source_id` - at `$.entries[1]`"), or a row builder's
    ("field pool_micros: ...")."""
    text = str(exc)
    if not isinstance(exc, msgspec.ValidationError):
        found = _BUILDER_FIELD.match(text) if isinstance(exc, ValueError) else None
        return found.group(1) if found else None
    at = _AT_FIELD.search(text)
    missing = _MISSING_FIELD.search(text)
    parts = [p for p in (at.group(1) if at else None, missing.group(1) if missing else None) if p]
    return ".".join(parts) or None


def by_table(items: list[Pending]) -> dict[str, list[Rows]]:
    batch: dict[str, list[Rows]] = {}
    for item in items:
        if item.rows is not None:
            batch.setdefault(item.rows.table, []).append(item.rows)
    return batch


@dataclass
class Isolation:
    """One pass of splitting a refused batch: who failed alone, and whether anything went in."""

    written: int = 0
    suspects: list[tuple[Pending, BackpressureError]] = field(default_factory=list)


def isolate(store: ClickHouseStore, items: list[Pending], found: Isolation) -> None:
    """Write ``items`` a half at a time; records ClickHouse refuses on their own are
    collected in ``found.suspects``, the rest are written."""
    if not items:
        return
    try:
        store.write_batch(by_table(items))
        found.written += len(items)
        return
    except BackpressureError as exc:
        if len(items) == 1:
            found.suspects.append((items[0], exc))
            return
    middle = len(items) // 2
    isolate(store, items[:middle], found)
    isolate(store, items[middle:], found)


def blame(store: ClickHouseStore, found: Isolation) -> None:
    """Set ``error`` on the records to quarantine, or raise BackpressureError if nobody is
    to blame. A record is poison when ClickHouse (or the client) called its data wrong
    (:class:`RowsRefused`), or when it failed alone while other records of the batch
    went in and ClickHouse answers. A disk that is full, too many parts, a lost Keeper or
    a missing table fail every insert while ``SELECT 1`` still answers: those hold."""
    if not found.suspects:
        return
    if not all(isinstance(exc, RowsRefused) for _, exc in found.suspects):
        store.ping()  # raises BackpressureError when ClickHouse itself is down
        if found.written == 0:
            raise BackpressureError(f"no record of the batch could be written: {found.suspects[0][1]}")
    for item, exc in found.suspects:
        item.error = f"ClickHouse refused this record on its own: {exc}"[:2000]


def dead_letter(item: Pending) -> tuple[bytes, bytes]:
    topic, partition, offset = kafka.position(item.msg)
    raw = item.msg.value() or b""
    event_id = None if item.rows is None else item.rows.event_id  # a batch record's: its first item's, as its key is
    # bounded after encoding: bytes that are not UTF-8 grow threefold as U+FFFD
    payload = raw.decode("utf-8", errors="replace").encode()[:MAX_DLQ_PAYLOAD].decode("utf-8", errors="ignore")
    record = {
        "schema_version": 1, "error_code": "unwritable_record" if item.rows is not None else "undecodable_record",
        "field": item.bad_field, "reason": item.error or "", "event_id": event_id,
        "source": {"topic": topic, "partition": partition, "offset": offset},
        "payload": payload,
    }
    return f"{topic}:{partition}:{offset}".encode(), kafka.dumps(record)


def quarantine(dlq: Producer, items: list[Pending]) -> int:
    """Send the failed records to ``sink-clickhouse.dlq`` and wait until Kafka acknowledged
    every one (a delivery error or a refused produce is backpressure: the batch is tried
    again and nothing is committed). A record of that topic itself that fails again is
    only logged: its payload is already kept in the topic."""
    failures: list[str] = []

    def delivered(err: Any, msg: Message) -> None:
        if err is not None:
            failures.append(str(err))

    sent = 0
    for item in items:
        if item.error is None:
            continue
        topic, partition, offset = kafka.position(item.msg)
        log.error("quarantined record topic=%s partition=%d offset=%d error=%s", topic, partition, offset,
                  item.error[:500])
        QUARANTINED.labels("unwritable" if item.rows is not None else "undecodable").inc()
        if topic == Topic.SINK_CLICKHOUSE_DLQ:
            continue
        key, value = dead_letter(item)
        try:
            dlq.produce(Topic.SINK_CLICKHOUSE_DLQ.value, key=key, value=value, on_delivery=delivered)
        except (BufferError, KafkaException) as exc:
            raise BackpressureError(f"could not queue a record for sink-clickhouse.dlq: {exc}") from exc
        sent += 1
    if sent and dlq.flush(30):
        raise BackpressureError("sink-clickhouse.dlq did not acknowledge the quarantined records within 30s")
    if failures:
        raise BackpressureError(f"sink-clickhouse.dlq refused {len(failures)} record(s): {failures[0]}")
    return sent


def write(store: ClickHouseStore, dlq: Producer, items: list[Pending], stop: threading.Event,
          tries: int = 3, first_delay_s: float = 0.5) -> bool:
    """Write a batch: True when every record is written or quarantined, False if ``stop``
    was set first (nothing may be committed then). Each table's rows are one insert; a
    table that went in is not written again on a retry. A table refused ``tries - 1``
    times is split to find the records to quarantine (at once if some were undecodable)."""
    delay = first_delay_s
    attempt = 0
    done: set[str] = set()
    while True:
        attempt += 1
        tables: dict[str, list[Pending]] = {}
        for item in items:
            if item.rows is not None and item.rows.table not in done:
                item.error = None  # judged again on every pass
                tables.setdefault(item.rows.table, []).append(item)
        try:
            if attempt < tries and not any(item.error for item in items):
                for table, group in sorted(tables.items()):
                    store.write_batch(by_table(group))
                    done.add(table)
                return True
            store.ping()  # ClickHouse down: nobody's fault, keep retrying the whole batch
            found = Isolation()
            for _, group in sorted(tables.items()):
                isolate(store, group, found)
            blame(store, found)
            quarantine(dlq, items)
            return True
        except BackpressureError as exc:
            RETRIES.inc()
            log.warning("clickhouse refused the batch (try %d), retrying in %.1fs: %s", attempt, delay, exc)
            if stop.wait(delay):
                return False  # stop requested: nothing committed, the batch is re-read later
            delay = min(delay * 2, 30)


_STARTED = time.time()
_LAST_REFRESH: dict[str, float] = {}  # rollup -> unix time of its last successful refresh, as last read


def record_rollup_ages(store: ClickHouseStore) -> dict[str, int]:
    """Seconds since each rollup's last successful refresh (``system.view_refreshes``) into
    ``tributary_rollup_age_seconds`` (one never refreshed counts from the sink's start);
    a refresh that failed sets ``tributary_rollup_refresh_failing``. When they cannot be
    read the ages keep growing from the last reading (the alert still fires); the failure
    is logged, never raised: the sink's job is writing."""
    try:
        _, rows = store.query(
            "SELECT replaceRegexpOne(view, '_refresh$', ''), "
            "if(last_success_time IS NULL, 0, toUnixTimestamp(last_success_time)), exception != '' "
            f"FROM system.view_refreshes WHERE database = {ROLLUPS_DB_SQL}")
    except Exception as exc:  # noqa: BLE001 - a metric we could not read this time, not a sink failure
        log.warning("rollup freshness unknown: %s", str(exc).splitlines()[0][:300] if str(exc) else repr(exc))
        rows = []
    for name, last, failing in rows:
        _LAST_REFRESH[str(name)] = float(last) or _LAST_REFRESH.get(str(name), 0.0)
        ROLLUP_FAILING.labels(str(name)).set(1 if failing else 0)
    now = time.time()
    ages = {name: int(now - (last or _STARTED)) for name, last in _LAST_REFRESH.items()}
    for name, age in ages.items():
        ROLLUP_AGE.labels(name).set(age)
    return ages


def query_token(token_file: Path | None) -> str | None:
    """The bearer token for the query server: ``TRIBUTARY_QUERY_TOKEN`` (a Secret in the
    chart), else a random one written to ``token_file`` (0600) for the CLI."""
    token = os.environ.get("TRIBUTARY_QUERY_TOKEN")
    if token or token_file is None:
        return token
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token)
    return token


def run(bootstrap: str, dsn: str, query_port: int, stop: threading.Event,
        batch_size: int = 5000, batch_wait_s: float = 0.5, group_id: str = GROUP_ID,
        store: ClickHouseStore | None = None, token_file: Path | None = None,
        stall_after_s: float = 120.0, queries: ReadOnlyQueries | None = None) -> None:
    store = store or ClickHouseStore(dsn)
    applied = migrate(store.client)
    log.info("clickhouse ready dsn=%s migrations_applied=%s", dsn.split("@")[-1], applied)
    health = Health(stall_after_s)
    if queries is None and query_port:
        queries = ReadOnlyQueries.open(dsn, owner=True)
    server = serve_queries(queries, health, query_port, query_token(token_file)) if queries else None
    dlq = kafka.producer(bootstrap)
    consumer = kafka.consumer(bootstrap, group_id)
    consumer.subscribe([t.value for t in SOURCE_TOPICS])
    health.mark_ready(group=group_id)
    next_freshness = 0.0
    try:
        while not stop.is_set():
            if time.monotonic() >= next_freshness:
                next_freshness = time.monotonic() + FRESHNESS_CHECK_S
                record_rollup_ages(store)
            messages = kafka.good_messages(consumer.consume(num_messages=batch_size, timeout=batch_wait_s))
            if not messages:
                health.beat()  # idle with nothing waiting: alive
                continue
            items = decode(messages)
            if not write(store, dlq, items, stop):
                return
            consumer.commit(offsets=kafka.next_offsets(messages), asynchronous=False)
            health.beat()
            for table, parts in by_table([i for i in items if i.error is None]).items():
                ROWS.labels(table).inc(sum(part.count for part in parts))
            log.info("batch records=%d quarantined=%d", len(messages), sum(1 for i in items if i.error))
    finally:
        consumer.close()
        dlq.flush(10)
        if server:
            server.shutdown()
        if queries:
            queries.close()
        store.close()
