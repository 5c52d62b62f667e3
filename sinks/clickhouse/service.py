"""``tributary run sink-clickhouse``: consume every pipeline topic, write, then commit.

Commit order per batch: (1) insert every table's rows, (2) commit the consumed
offsets synchronously. A crash between (1) and (2) re-delivers the batch; the rows
carry deterministic ids and every read deduplicates (``FINAL``), so queries never
see it twice. If ClickHouse refuses the batch, nothing is committed and the same
batch is retried with backoff (backpressure), so nothing is dropped or acknowledged
early.

chdb locks its data directory to one process, so this process owns it and serves
read-only SQL to the CLI and analysts on 127.0.0.1 (``tributary sql``), plus
``/healthz`` and Prometheus ``/metrics``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from sinks.clickhouse.rows import SOURCE_TOPICS, Row, to_row
from sinks.clickhouse.schema import migrate
from sinks.clickhouse.store import BackpressureError, ClickHouseStore
from tributary import kafka
from tributary.query import check_read_only

log = logging.getLogger("tributary.sink.clickhouse")
GROUP_ID = "tributary-sink-clickhouse"

ROWS = Counter("tributary_clickhouse_rows_total", "Rows written", ["table"])
RETRIES = Counter("tributary_clickhouse_retries_total", "Batches retried after ClickHouse refused them")
BAD_RECORDS = Counter("tributary_clickhouse_bad_records_total", "Records that could not be turned into rows")



def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def serve_queries(store: ClickHouseStore, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            if self.path in ("/healthz", "/readyz"):
                self._send(200, b'{"status":"ok"}')
            elif self.path == "/metrics":
                self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
            else:
                self._send(404, b'{"error":"try POST /query, GET /healthz or /metrics"}')

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/query":
                self._send(404, b'{"error":"POST /query with the SQL as the body"}')
                return
            sql = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            try:
                check_read_only(sql)
                columns, rows = store.query(sql)
            except Exception as exc:  # noqa: BLE001 - the analyst gets the engine's message
                self._send(400, json.dumps({"error": str(exc).splitlines()[0][:2000]}).encode())
                return
            self._send(200, json.dumps({"columns": columns, "rows": rows}, default=_json_default).encode())

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("query server: " + format, *args)

    host = os.environ.get("TRIBUTARY_HTTP_HOST", "127.0.0.1")  # 0.0.0.0 in a pod
    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="query-server", daemon=True).start()
    return server


def rows_for(messages: list[Any]) -> dict[str, list[Row]]:
    batch: dict[str, list[Row]] = {}
    for msg in messages:
        try:
            converted = to_row(msg.topic(), msg.partition(), msg.offset(), msg.value())
        except (ValueError, KeyError, TypeError) as exc:
            # upstream stages validate; a record that still cannot be stored is logged
            # with its position, never silently skipped
            BAD_RECORDS.inc()
            log.error("cannot store record topic=%s partition=%d offset=%d error=%r",
                      msg.topic(), msg.partition(), msg.offset(), exc)
            continue
        if converted is not None:
            table, row = converted
            batch.setdefault(table, []).append(row)
    return batch


def run(bootstrap: str, dsn: str, query_port: int, stop: threading.Event,
        batch_size: int = 5000, batch_wait_s: float = 0.5, group_id: str = GROUP_ID,
        store: ClickHouseStore | None = None) -> None:
    store = store or ClickHouseStore(dsn)
    applied = migrate(store.client)
    log.info("clickhouse ready dsn=%s migrations_applied=%s", dsn.split("@")[-1], applied)
    server = serve_queries(store, query_port) if query_port else None
    consumer = kafka.consumer(bootstrap, group_id)
    consumer.subscribe([t.value for t in SOURCE_TOPICS])
    try:
        while not stop.is_set():
            messages = kafka.good_messages(consumer.consume(num_messages=batch_size, timeout=batch_wait_s))
            if not messages:
                continue
            batch = rows_for(messages)
            delay = 0.5
            while True:
                try:
                    store.write_batch(batch)
                    break
                except BackpressureError as exc:
                    RETRIES.inc()
                    log.warning("clickhouse refused the batch, retrying in %.1fs: %s", delay, exc)
                    if stop.wait(delay):
                        return  # stop requested: nothing committed, the batch is re-read later
                    delay = min(delay * 2, 30)
            consumer.commit(offsets=kafka.next_offsets(messages), asynchronous=False)
            for table, rows in batch.items():
                ROWS.labels(table).inc(len(rows))
            log.info("batch records=%d rows=%s", len(messages),
                     ",".join(f"{t}:{len(r)}" for t, r in sorted(batch.items())))
    finally:
        consumer.close()
        if server:
            server.shutdown()
        store.close()

