"""``tributary up | down | status``: the whole local platform at once."""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request

from tributary.config import PlatformConfig
from tributary.platform import kafka, stripe_mock
from tributary.platform.procs import ManagedProcess
from tributary.platform.topics import ensure_topics
from tributary.topology import STAGE_NAMES

STAGES = STAGE_NAMES  # every stage of the topology registry, each its own process
PORTAL = "portal"  # the holder portal: a process of its own, not a stage (it consumes nothing)
PROCESSES = (*STAGES, PORTAL)


def stage_process(cfg: PlatformConfig, stage: str) -> ManagedProcess:
    return ManagedProcess(stage, cfg.run_dir, cfg.log_dir)


def stage_port(cfg: PlatformConfig, stage: str) -> int:
    """Where each local stage serves /healthz and /metrics: next to the ClickHouse query port."""
    if stage == PORTAL:
        return cfg.portal_port
    base = cfg.clickhouse_query_port
    return {"sink-clickhouse": base, "streams": base + 1, "indexer": base + 2, "attribution": base + 3,
            "sink-stripe": base + 4, "accrue": base + 5, "balances": base + 6}[stage]


def stage_health(cfg: PlatformConfig, stage: str, timeout: float = 3.0) -> str | None:
    """None if the stage's /healthz answers 200; else what it (or the attempt) said."""
    url = f"http://127.0.0.1:{stage_port(cfg, stage)}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return None
    except urllib.error.HTTPError as exc:
        return f"/healthz {exc.code}: {exc.read()[:300].decode(errors='replace')}"
    except (urllib.error.URLError, OSError) as exc:
        return f"/healthz did not answer ({exc})"


def up(cfg: PlatformConfig, log=print) -> None:  # type: ignore[no-untyped-def]
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    kafka.start(cfg, log)
    ensure_topics(cfg.bootstrap_servers, log)
    stripe_mock.start(cfg, log)
    log(f"clickhouse (chdb) data at {cfg.data_dir / 'clickhouse'}; vector index rebuilt per worker "
        f"from topic catalog-chunks")


def down(cfg: PlatformConfig, wipe: bool = False, log=print) -> None:  # type: ignore[no-untyped-def]
    for stage in PROCESSES:
        if stage_process(cfg, stage).stop(timeout=20):
            log(f"stopped {stage}")
    if stripe_mock.stop(cfg):
        log("stopped stripe-mock")
    if kafka.stop(cfg):
        log("stopped kafka")
    if wipe:
        for sub in ("kafka", "clickhouse", "streams", "state", "logs", "run"):
            shutil.rmtree(cfg.data_dir / sub, ignore_errors=True)
        log(f"wiped data under {cfg.data_dir}")


def status(cfg: PlatformConfig) -> list[tuple[str, str, str]]:
    """(component, state, detail) for each component."""
    rows = []
    kp = kafka.process(cfg)
    rows.append(("kafka", "running" if kp.running() else "stopped", f"127.0.0.1:{cfg.kafka_port} pid={kp.pid()}"))
    sp = stripe_mock.process(cfg)
    rows.append(("stripe-mock", "running" if sp.running() else "stopped", f"{cfg.stripe_api_base} pid={sp.pid()}"))
    for stage in PROCESSES:
        p = stage_process(cfg, stage)
        detail = f"pid={p.pid()} log={p.log_file}" + (f" http://127.0.0.1:{cfg.portal_port}" if stage == PORTAL else "")
        if p.running():
            problem = stage_health(cfg, stage)
            rows.append((stage, "unhealthy", f"{problem}; {detail}") if problem else (stage, "running", detail))
        elif stage == "streams" and cfg.streams_halt_file.exists():
            reason = cfg.streams_halt_file.read_text().strip()
            rows.append((stage, "halted", f"{reason}; log={p.log_file}"))
        else:
            rows.append((stage, "stopped", detail))
    rows.append(("clickhouse", "embedded", cfg.clickhouse_dsn))
    return rows
