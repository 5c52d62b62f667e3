"""The one storage interface the sink writes through: ``write_batch``.

The same code talks to embedded chdb (``chdb:///path``, the default) or a ClickHouse
server (``CLICKHOUSE_URL=http://user:pass@host:8123/db``).
"""

from __future__ import annotations

import os
import threading
from typing import Any
from urllib.parse import urlparse

from sinks.clickhouse.rows import Row


class BackpressureError(RuntimeError):
    """ClickHouse did not take the batch; nothing was committed, retry the same batch."""


def open_client(dsn: str, readonly: bool = False) -> Any:
    import clickhouse_connect

    if dsn.startswith("chdb://"):
        if readonly:
            return clickhouse_connect.get_client(dsn=dsn, chdb_options={"mode": "ro"})  # type: ignore[call-arg]
        return clickhouse_connect.get_client(dsn=dsn)
    parsed = urlparse(dsn)
    return clickhouse_connect.get_client(
        host=parsed.hostname or "localhost", port=parsed.port or 8123,
        username=parsed.username or "default",
        password=parsed.password or os.environ.get("CLICKHOUSE_PASSWORD", ""),
        database=(parsed.path or "/default").lstrip("/") or "default",
        secure=parsed.scheme == "https",
        settings={"readonly": 1} if readonly else None,
    )


class ClickHouseStore:
    def __init__(self, dsn: str):
        self.dsn = dsn
        self.client = open_client(dsn)
        self.lock = threading.Lock()  # the query server shares the client

    def write_batch(self, rows_by_table: dict[str, list[Row]]) -> int:
        written = 0
        with self.lock:
            for table, rows in sorted(rows_by_table.items()):
                if not rows:
                    continue
                columns = list(rows[0].keys())
                try:
                    self.client.insert(table, [[r[c] for c in columns] for r in rows], column_names=columns)
                except Exception as exc:
                    raise BackpressureError(f"insert into {table} failed: {exc}") from exc
                written += len(rows)
        return written

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        with self.lock:
            result = self.client.query(sql)
        return list(result.column_names), [tuple(r) for r in result.result_rows]

    def close(self) -> None:
        self.client.close()
