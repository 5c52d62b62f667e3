"""``tributary up | down | status``: the whole local platform at once."""

from __future__ import annotations

import shutil

from tributary.config import PlatformConfig
from tributary.platform import kafka, stripe_mock
from tributary.platform.procs import ManagedProcess
from tributary.platform.topics import ensure_topics

STAGES = ("streams", "indexer", "attribution", "sink-clickhouse", "sink-stripe")


def stage_process(cfg: PlatformConfig, stage: str) -> ManagedProcess:
    return ManagedProcess(stage, cfg.run_dir, cfg.log_dir)


def up(cfg: PlatformConfig, log=print) -> None:  # type: ignore[no-untyped-def]
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    kafka.start(cfg, log)
    ensure_topics(cfg.bootstrap_servers, log)
    stripe_mock.start(cfg, log)
    log(f"clickhouse (chdb) data at {cfg.data_dir / 'clickhouse'}; vector index rebuilt per worker "
        f"from topic catalog-chunks")


def down(cfg: PlatformConfig, wipe: bool = False, log=print) -> None:  # type: ignore[no-untyped-def]
    for stage in STAGES:
        if stage_process(cfg, stage).stop(timeout=20):
            log(f"stopped {stage}")
    if stripe_mock.stop(cfg):
        log("stopped stripe-mock")
    if kafka.stop(cfg):
        log("stopped kafka")
    if wipe:
        for sub in ("kafka", "clickhouse", "streams", "logs", "run"):
            shutil.rmtree(cfg.data_dir / sub, ignore_errors=True)
        log(f"wiped data under {cfg.data_dir}")


def status(cfg: PlatformConfig) -> list[tuple[str, str, str]]:
    """(component, state, detail) for each component."""
    rows = []
    kp = kafka.process(cfg)
    rows.append(("kafka", "running" if kp.running() else "stopped", f"127.0.0.1:{cfg.kafka_port} pid={kp.pid()}"))
    sp = stripe_mock.process(cfg)
    rows.append(("stripe-mock", "running" if sp.running() else "stopped", f"{cfg.stripe_api_base} pid={sp.pid()}"))
    for stage in STAGES:
        p = stage_process(cfg, stage)
        rows.append((stage, "running" if p.running() else "stopped", f"pid={p.pid()} log={p.log_file}"))
    rows.append(("clickhouse", "embedded", cfg.clickhouse_dsn))
    return rows
