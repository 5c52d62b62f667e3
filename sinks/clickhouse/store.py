"""The one storage interface the sink writes through: ``write_batch``.

The same code talks to embedded chdb (``chdb:///path``, the default) or a ClickHouse
server (``CLICKHOUSE_URL=http://user:pass@host:8123/db``).
"""

from __future__ import annotations

import os
import threading
from typing import Any
from urllib.parse import urlparse

from sinks.clickhouse.rows import Rows
from tributary.sqlguard import UnsafeQuery, check_ast, single_statement

READ_ONLY = {"readonly": 1}
# an analyst's query may not hold the sink's query server (one query at a time) for
# minutes or take the sink's memory: set before readonly, which then freezes them
QUERY_LIMITS = {"max_execution_time": 60, "max_memory_usage": 2_000_000_000, "max_result_rows": 1_000_000,
                "result_overflow_mode": "throw"}


class BackpressureError(RuntimeError):
    """ClickHouse did not take the batch; nothing was committed, retry the same batch."""


class RowsRefused(BackpressureError):
    """The client or ClickHouse called the data itself wrong (a value the column type
    cannot hold, a type mismatch): the same rows fail however often they are retried."""


# how the sink's JSON lines are read: times in any RFC 3339 / ISO 8601 spelling (with
# their offset), null as the column's default ("" or 0: only a ledger entry's optional
# fields are ever null; rows.Rows.of refuses a null elsewhere), and a payload field that
# is not a column (a ledger entry's schema_version) skipped;
# tests/integration/test_data_dictionary.py checks every other row field is a column
JSON_INSERT = {"date_time_input_format": "best_effort", "input_format_null_as_default": 1,
               "input_format_skip_unknown_fields": 1}

# ClickHouse errors about the data of an insert, not about the server's state
DATA_ERRORS = ("TYPE_MISMATCH", "CANNOT_PARSE", "CANNOT_CONVERT_TYPE", "ARGUMENT_OUT_OF_BOUND",
               "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE", "INCORRECT_DATA", "CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN",
               "TOO_LARGE_STRING_SIZE", "DECIMAL_OVERFLOW", "ILLEGAL_TYPE_OF_ARGUMENT", "CANNOT_READ_ARRAY_FROM_TEXT")


def refused_rows(exc: Exception) -> bool:
    from clickhouse_connect.driver.exceptions import DataError

    return isinstance(exc, DataError | TypeError | OverflowError) or any(code in str(exc) for code in DATA_ERRORS)


def open_client(dsn: str, readonly: bool = False, session_readonly: bool = False) -> Any:
    """``readonly``: a client that cannot write (chdb's read-only mode, which another
    process needs to open a directory; a server connection with ``readonly=1``).
    ``session_readonly``: a chdb session of its own in the owning process with
    ``readonly=1`` set on the session (``SET``), not per query."""
    import clickhouse_connect

    if dsn.startswith("chdb://"):
        if readonly:
            return clickhouse_connect.get_client(dsn=dsn, chdb_options={"mode": "ro"},  # type: ignore[call-arg]
                                                 settings=QUERY_LIMITS)
        if session_readonly:
            return clickhouse_connect.get_client(dsn=dsn, settings={**QUERY_LIMITS, **READ_ONLY})
        return clickhouse_connect.get_client(dsn=dsn)
    parsed = urlparse(dsn)
    return clickhouse_connect.get_client(
        host=parsed.hostname or "localhost", port=parsed.port or 8123,
        username=parsed.username or "default",
        password=parsed.password or os.environ.get("CLICKHOUSE_PASSWORD", ""),
        database=(parsed.path or "/default").lstrip("/") or "default",
        secure=parsed.scheme == "https",
        settings={**QUERY_LIMITS, **READ_ONLY} if readonly or session_readonly else None,
    )


class ClickHouseStore:
    def __init__(self, dsn: str):
        self.dsn = dsn
        self.client = open_client(dsn)
        self.lock = threading.Lock()  # the query server shares the client

    def write_batch(self, batch: dict[str, list[Rows]]) -> int:
        """One insert per table of the records' JSON lines, parsed by ClickHouse itself
        (JSONEachRow): no Python object per value on the way (benchmarks/sink_bench.py:
        a raw insert of pre-built rows through clickhouse-connect is slower)."""
        written = 0
        with self.lock:
            for table, parts in sorted(batch.items()):
                count = sum(part.count for part in parts)
                if not count:
                    continue
                try:
                    self.client.raw_insert(table, None, b"".join(part.lines for part in parts), fmt="JSONEachRow",
                                           settings=JSON_INSERT)
                except Exception as exc:
                    kind = RowsRefused if refused_rows(exc) else BackpressureError
                    raise kind(f"insert into {table} failed: {exc}") from exc
                written += count
        return written

    def ping(self) -> None:
        """Raise BackpressureError unless ClickHouse answers a trivial query."""
        try:
            with self.lock:
                self.client.query("SELECT 1")
        except Exception as exc:
            raise BackpressureError(f"ClickHouse does not answer: {exc}") from exc

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """The sink's own reads (migrations, checks): trusted SQL on the writer's client."""
        with self.lock:
            result = self.client.query(sql)
        return list(result.column_names), [tuple(r) for r in result.result_rows]

    def close(self) -> None:
        self.client.close()


class ReadOnlyQueries:
    """Analysts' SQL, never on the writer's connection: one statement, checked on its
    text and on ClickHouse's own parse (:mod:`tributary.sqlguard`), run on a connection
    of its own with ``readonly=1`` and user values bound server-side (``{name:Type}``
    placeholders with ``parameters``), never spliced into the text."""

    def __init__(self, client: Any):
        self.client = client
        self.lock = threading.Lock()
        if str(self.client.query("SELECT getSetting('readonly')").result_rows[0][0]) == "0":
            raise RuntimeError("the analysts' session is not read-only")

    @classmethod
    def open(cls, dsn: str, owner: bool = False) -> ReadOnlyQueries:
        """``owner``: this process already holds the chdb directory (the sink), so open a
        second session on it with ``readonly=1`` set on that session (a session's
        settings are its own: the writer's session is not affected). Otherwise the
        client itself is read-only (chdb's read-only mode, or ``readonly=1`` on a
        server connection)."""
        return cls(open_client(dsn, readonly=not owner, session_readonly=owner))

    def query(self, sql: str, parameters: dict[str, Any] | None = None
              ) -> tuple[list[str], list[tuple[Any, ...]]]:
        statement = single_statement(sql)
        with self.lock:
            try:  # the engine's own word that this is one statement, without running it
                self.client.query("SELECT formatQuerySingleLine({q:String})", parameters={"q": statement})
            except Exception as exc:
                raise UnsafeQuery(f"not one statement ClickHouse can parse: {str(exc).splitlines()[0][:500]}"
                                  ) from None
            ast = self.client.query(f"EXPLAIN AST {statement}", parameters=parameters)
            check_ast([str(row[0]) for row in ast.result_rows])
            result = self.client.query(statement, parameters=parameters)
        return list(result.column_names), [tuple(r) for r in result.result_rows]

    def close(self) -> None:
        self.client.close()
