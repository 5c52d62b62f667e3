"""``tributary run <stage>``: each stage is its own process, scaled and killed alone."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

from tributary.config import PipelineConfig, PlatformConfig
from tributary.health import Health
from tributary.kafka import stop_on_signals
from tributary.logs import setup

log = logging.getLogger("tributary.stages")


STALLED_EXIT_CODE = 75  # streams.app: the watchdog found the worker stalled
HALTED_EXIT_CODE = 3  # streams.app: the DLQ rate limit stopped ingest


CHILD_ENV = "TRIBUTARY_STAGE_CHILD"


def supervised(stage: str) -> int | None:
    """In the supervisor: run this same command as a child under :func:`supervise` and
    return its outcome. In the child: None (go on and run the stage).

    Every stage runs supervised: each is exactly-once or idempotent from its committed
    offsets, so restarting it after a crash (a broker restart it did not ride out, a
    transient error, a bug) is always safe, and a crashed stage never stays down
    silently. On Kubernetes the pod restart policy does the same one level up."""
    if os.environ.get(CHILD_ENV) == "1":
        return None
    setup(f"{stage}-supervisor")
    argv = [sys.executable, "-m", "tributary.cli", *sys.argv[1:]]
    return supervise(argv, {**os.environ, CHILD_ENV: "1"}, stop_on_signals(), name=stage)


def run_streams(platform: PlatformConfig, pipeline: PipelineConfig, web_port: int) -> int:
    """Run the Faust worker under a small supervisor that restarts it when its watchdog
    reports a stall (or it crashes), and leaves it stopped after a clean stop or a DLQ halt."""
    os.environ["TRIBUTARY_DATA_DIR"] = str(platform.data_dir)
    os.environ["TRIBUTARY_KAFKA_PORT"] = str(platform.kafka_port)
    os.environ["TRIBUTARY_STREAMS_WEB_PORT"] = str(web_port)
    outcome = supervised("streams")
    if outcome is not None:
        return outcome
    sys.argv = [sys.argv[0]]
    from streams.app import main

    main()
    return 0


def supervise(argv: list[str], env: dict[str, str], stop: threading.Event, max_backoff_s: float = 30,
              name: str = "streams") -> int:
    """Run ``argv``; restart it after a stall or a crash (with backoff, at most 10 times
    in 5 minutes); return when it stops cleanly (0), is halted by the DLQ limit, or
    ``stop`` is set (the child then gets SIGTERM)."""
    crashes: list[float] = []
    while True:
        child = subprocess.Popen(argv, env=env)
        log.info("%s worker started pid=%d", name, child.pid)
        while child.poll() is None:
            if stop.wait(0.5):
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(90)
                except subprocess.TimeoutExpired:
                    child.kill()
                return 0
        code = child.returncode
        if code == 0 or stop.is_set():
            log.info("%s worker stopped", name)
            return 0
        if code == HALTED_EXIT_CODE:
            log.critical("streams worker halted by the dead-letter rate limit; not restarting. "
                         "Fix the producers, then run `tributary resume ingest`")
            return code
        now = time.monotonic()
        crashes = [t for t in crashes if now - t < 300] + [now]
        if len(crashes) > 10:
            log.critical("%s worker exited %d times in 5 minutes (last code %d); giving up", name, len(crashes), code)
            return code
        reason = "stalled (watchdog)" if code == STALLED_EXIT_CODE else f"exited with code {code}"
        log.warning("%s worker %s; restarting", name, reason)
        if stop.wait(min(2 ** (len(crashes) - 1), max_backoff_s)):
            return 0


def run_indexer(platform: PlatformConfig, pipeline: PipelineConfig, http_port: int) -> None:
    setup("indexer")
    from gpu_workers import indexer
    from gpu_workers.embedder import load_embedder

    health = _health(http_port)
    stop = stop_on_signals()
    _exit_when_stalled(health, stop)
    indexer.run(platform.bootstrap_servers, load_embedder(), stop, health)


def run_attribution(platform: PlatformConfig, pipeline: PipelineConfig, http_port: int,
                    worker_id: str) -> None:
    setup(f"attribution-{worker_id}")
    from gpu_workers.embedder import load_embedder
    from gpu_workers.index import open_index
    from gpu_workers.worker import AttributionWorker

    health = _health(http_port)
    stop = stop_on_signals()
    embedder = load_embedder()
    index = open_index(os.environ.get("QDRANT_URL"), str(platform.data_dir / "qdrant-edge" / f"worker-{worker_id}"),
                       dim=embedder.dim, api_key=os.environ.get("QDRANT_API_KEY"))
    log.info("model=%s revision=%s backend=%s device=%s", embedder.name, embedder.revision, embedder.backend,
             embedder.device)
    _exit_when_stalled(health, stop)
    AttributionWorker(platform.bootstrap_servers, embedder, index, pipeline, worker_id).run(stop, health)


def run_sink_clickhouse(platform: PlatformConfig, pipeline: PipelineConfig) -> None:
    setup("sink-clickhouse")
    from sinks.clickhouse import service

    stop = stop_on_signals()
    service.run(platform.bootstrap_servers, platform.clickhouse_dsn, platform.clickhouse_query_port, stop,
                token_file=platform.query_token_file)


def run_sink_stripe(platform: PlatformConfig, pipeline: PipelineConfig, http_port: int, worker_id: str) -> None:
    setup(f"sink-stripe-{worker_id}")
    from sinks.stripe import service
    from sinks.stripe.payouts import StripeTransfers

    stop = stop_on_signals()
    from sinks.stripe.accounts import ConnectAccounts

    api = StripeTransfers(pipeline.stripe_api_key, platform.stripe_api_base)
    accounts = ConnectAccounts(pipeline.stripe_api_key, platform.stripe_api_base)
    health = _health(http_port)
    _exit_when_stalled(health, stop)
    service.run(platform.bootstrap_servers, api, stop, health, worker_id, accounts, pipeline.account_recheck_s)


def run_money(platform: PlatformConfig, pipeline: PipelineConfig, stage: str, http_port: int,
              instance_id: str) -> None:
    """``accrue`` or ``balances``: a transactional loop (streams.money); its state in
    RocksDB under the data directory, mirrored to its state topic."""
    setup(f"{stage}-{instance_id}")
    from streams.money import AccrueStage, BalancesStage
    from tributary.txloop import LoopConfig, TransactionalLoop

    logic = (AccrueStage(pipeline.refund_window_s) if stage == "accrue"
             else BalancesStage(pipeline.payout_policy))
    health = _health(http_port)
    stop = stop_on_signals()
    _exit_when_stalled(health, stop)
    cfg = LoopConfig(platform.bootstrap_servers, instance_id=instance_id,
                     state_dir=platform.data_dir / "state" / f"instance-{instance_id}")
    TransactionalLoop(logic, cfg).run(stop, health)


def _exit_when_stalled(health: Health, stop: threading.Event) -> None:
    """A stage whose main loop stopped ticking (e.g. a transaction call that librdkafka
    kept retrying for ten minutes after a broker restart) exits, to be restarted by its
    supervisor from its committed offsets. (/healthz reports the same to Kubernetes.)"""
    def watch() -> None:
        while not stop.wait(5.0):
            if health.ready and not health.alive:
                log.critical("main loop made no progress for %.0fs; exiting to be restarted", health.stall_after_s)
                logging.shutdown()
                os._exit(STALLED_EXIT_CODE)

    threading.Thread(target=watch, name="stall-watchdog", daemon=True).start()


def _health(port: int) -> Health:
    health = Health()
    if port:
        host = os.environ.get("TRIBUTARY_HTTP_HOST", "127.0.0.1")  # 0.0.0.0 in a pod
        health.serve(port, host)
        log.info("health and metrics on http://%s:%d (/healthz /readyz /metrics)", host, port)
    return health
