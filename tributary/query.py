"""Read-only SQL for the CLI, the demo and tests, wherever the data lives.

While ``sink-clickhouse`` runs it owns the chdb directory, so queries go to its
query server; otherwise the directory is opened directly, read-only.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import urllib.error
import urllib.request
from typing import Any

from tributary.config import PlatformConfig
from tributary.platform.procs import ManagedProcess
from tributary.sqlguard import UnsafeQuery, single_statement


class QueryError(RuntimeError):
    pass


def sink_running(cfg: PlatformConfig) -> bool:
    """Does a ClickHouse sink own the chdb directory? One started by the launcher has a pid
    file; one started in the foreground (`tributary run sink-clickhouse`) does not, but its
    query server answers on the query port."""
    if ManagedProcess("sink-clickhouse", cfg.run_dir, cfg.log_dir).running():
        return True
    try:
        with socket.create_connection(("127.0.0.1", cfg.clickhouse_query_port), timeout=1):
            return True
    except OSError:
        return False


def query_token(cfg: PlatformConfig) -> str | None:
    """``TRIBUTARY_QUERY_TOKEN``, else the token the local sink wrote to its run dir."""
    token = os.environ.get("TRIBUTARY_QUERY_TOKEN")
    if token:
        return token
    try:
        return cfg.query_token_file.read_text().strip() or None
    except OSError:
        return None


def query(cfg: PlatformConfig, sql: str, parameters: dict[str, Any] | None = None,
          timeout: float = 60) -> tuple[list[str], list[list[Any]]]:
    """Run one read-only statement. User values go in ``parameters`` and are referred to
    as ``{name:Type}`` in ``sql`` (bound by ClickHouse, never spliced into the text)."""
    try:
        single_statement(sql)  # refused here already, with the same message the server gives
    except UnsafeQuery as exc:
        raise QueryError(str(exc)) from None
    remote = bool(os.environ.get("TRIBUTARY_QUERY_URL"))  # the sink runs in another pod and owns the data
    if not cfg.clickhouse_dsn.startswith("chdb://") or not (remote or sink_running(cfg)):
        return _direct(cfg, sql, parameters)
    body = json.dumps({"sql": sql, "parameters": parameters or {}}, default=str).encode()
    headers = {"Content-Type": "application/json"}
    token = query_token(cfg)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"{cfg.clickhouse_query_url}/query", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read() or b"{}").get("error", str(exc))
        except ValueError:
            message = str(exc)
        raise QueryError(message) from None
    except (urllib.error.URLError, OSError) as exc:
        raise QueryError(
            f"the ClickHouse sink owns the data but its query server at {cfg.clickhouse_query_url} "
            f"did not answer ({exc}); check `tributary status` and its log"
        ) from None
    return answer["columns"], answer["rows"]


_DIRECT = threading.Lock()  # one embedded chdb session at a time in this process (the portal's threads)


def _direct(cfg: PlatformConfig, sql: str, parameters: dict[str, Any] | None
            ) -> tuple[list[str], list[list[Any]]]:
    with _DIRECT:
        return _direct_locked(cfg, sql, parameters)


def _direct_locked(cfg: PlatformConfig, sql: str, parameters: dict[str, Any] | None
                   ) -> tuple[list[str], list[list[Any]]]:
    from sinks.clickhouse.store import ReadOnlyQueries

    dsn = cfg.clickhouse_dsn
    if dsn.startswith("chdb://") and not (cfg.data_dir / "clickhouse").exists():
        raise QueryError(f"no ClickHouse data at {cfg.data_dir / 'clickhouse'}: run the pipeline first")
    try:
        queries = ReadOnlyQueries.open(dsn)
    except Exception as exc:
        raise QueryError(f"could not open {dsn} read-only ({str(exc).splitlines()[0][:300]}); if a ClickHouse "
                         f"sink runs with another --clickhouse-query-port than {cfg.clickhouse_query_port}, "
                         "pass that port") from None
    try:
        columns, rows = queries.query(sql, parameters)
        return columns, [list(r) for r in rows]
    except Exception as exc:
        raise QueryError(str(exc).splitlines()[0][:2000] if str(exc) else type(exc).__name__) from None
    finally:
        queries.close()


def scalar(cfg: PlatformConfig, sql: str, parameters: dict[str, Any] | None = None) -> Any:
    _, rows = query(cfg, sql, parameters)
    return rows[0][0] if rows else None
