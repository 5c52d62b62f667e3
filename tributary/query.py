"""Read-only SQL for the CLI, the demo and tests, wherever the data lives.

While ``sink-clickhouse`` runs it owns the chdb directory, so queries go to its
query server; otherwise the directory is opened directly, read-only.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any

from tributary.config import PlatformConfig
from tributary.platform.procs import ManagedProcess


class QueryError(RuntimeError):
    pass


READ_ONLY = re.compile(r"^\s*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXPLAIN|EXISTS)\b", re.IGNORECASE)


def check_read_only(sql: str) -> None:
    if not READ_ONLY.match(sql):
        raise QueryError("only read-only statements (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN) are allowed")


def sink_running(cfg: PlatformConfig) -> bool:
    return ManagedProcess("sink-clickhouse", cfg.run_dir, cfg.log_dir).running()


def query(cfg: PlatformConfig, sql: str, timeout: float = 60) -> tuple[list[str], list[list[Any]]]:
    check_read_only(sql)
    if not cfg.clickhouse_dsn.startswith("chdb://") or not sink_running(cfg):
        return _direct(cfg, sql)
    req = urllib.request.Request(f"{cfg.clickhouse_query_url}/query", data=sql.encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise QueryError(json.loads(exc.read() or b"{}").get("error", str(exc))) from None
    except (urllib.error.URLError, OSError) as exc:
        raise QueryError(
            f"the ClickHouse sink owns the data but its query server at {cfg.clickhouse_query_url} "
            f"did not answer ({exc}); check `tributary status` and its log"
        ) from None
    return body["columns"], body["rows"]


def _direct(cfg: PlatformConfig, sql: str) -> tuple[list[str], list[list[Any]]]:
    from sinks.clickhouse.store import open_client

    dsn = cfg.clickhouse_dsn
    if dsn.startswith("chdb://") and not (cfg.data_dir / "clickhouse").exists():
        raise QueryError(f"no ClickHouse data at {cfg.data_dir / 'clickhouse'}: run the pipeline first")
    client = open_client(dsn, readonly=True)
    try:
        result = client.query(sql)
        return list(result.column_names), [list(r) for r in result.result_rows]
    except Exception as exc:
        raise QueryError(str(exc).splitlines()[0][:2000]) from None
    finally:
        client.close()


def scalar(cfg: PlatformConfig, sql: str) -> Any:
    _, rows = query(cfg, sql)
    return rows[0][0] if rows else None
