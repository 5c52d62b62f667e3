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


def run_streams(platform: PlatformConfig, pipeline: PipelineConfig, web_port: int) -> int:
    """Run the Faust worker under a small supervisor that restarts it when its watchdog
    reports a stall (or it crashes), and leaves it stopped after a clean stop or a DLQ halt."""
    os.environ["TRIBUTARY_DATA_DIR"] = str(platform.data_dir)
    os.environ["TRIBUTARY_KAFKA_PORT"] = str(platform.kafka_port)
    os.environ["TRIBUTARY_STREAMS_WEB_PORT"] = str(web_port)
    if os.environ.get("TRIBUTARY_STREAMS_CHILD") == "1":
        sys.argv = [sys.argv[0]]
        from streams.app import main

        main()
        return 0
    setup("streams-supervisor")
    argv = [sys.executable, "-m", "tributary.cli", *sys.argv[1:]]
    return supervise(argv, {**os.environ, "TRIBUTARY_STREAMS_CHILD": "1"}, stop_on_signals())


def supervise(argv: list[str], env: dict[str, str], stop: threading.Event, max_backoff_s: float = 30) -> int:
    """Run ``argv``; restart it after a stall or a crash (with backoff, at most 10 times
    in 5 minutes); return when it stops cleanly (0), is halted by the DLQ limit, or
    ``stop`` is set (the child then gets SIGTERM)."""
    crashes: list[float] = []
    while True:
        child = subprocess.Popen(argv, env=env)
        log.info("streams worker started pid=%d", child.pid)
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
            log.info("streams worker stopped")
            return 0
        if code == HALTED_EXIT_CODE:
            log.critical("streams worker halted by the dead-letter rate limit; not restarting. "
                         "Fix the producers, then start `tributary run streams` again")
            return code
        now = time.monotonic()
        crashes = [t for t in crashes if now - t < 300] + [now]
        if len(crashes) > 10:
            log.critical("streams worker exited %d times in 5 minutes (last code %d); giving up", len(crashes), code)
            return code
        reason = "stalled (watchdog)" if code == STALLED_EXIT_CODE else f"exited with code {code}"
        log.warning("streams worker %s; restarting", reason)
        if stop.wait(min(2 ** (len(crashes) - 1), max_backoff_s)):
            return 0


def run_indexer(platform: PlatformConfig, pipeline: PipelineConfig, http_port: int) -> None:
    setup("indexer")
    from gpu_workers import indexer
    from gpu_workers.embedder import SentenceTransformerEmbedder

    health = _health(http_port)
    stop = stop_on_signals()
    indexer.run(platform.bootstrap_servers, SentenceTransformerEmbedder(), stop, health)


def run_attribution(platform: PlatformConfig, pipeline: PipelineConfig, http_port: int,
                    worker_id: str) -> None:
    setup(f"attribution-{worker_id}")
    from gpu_workers.embedder import SentenceTransformerEmbedder
    from gpu_workers.index import QdrantIndex
    from gpu_workers.worker import AttributionWorker

    health = _health(http_port)
    stop = stop_on_signals()
    embedder = SentenceTransformerEmbedder()
    index = QdrantIndex(os.environ.get("QDRANT_URL", ":memory:"), dim=embedder.dim,
                        api_key=os.environ.get("QDRANT_API_KEY"))
    log.info("model=%s revision=%s device=%s", embedder.name, embedder.revision, embedder.device)
    AttributionWorker(platform.bootstrap_servers, embedder, index, pipeline, worker_id).run(stop, health)


def run_sink_clickhouse(platform: PlatformConfig, pipeline: PipelineConfig) -> None:
    setup("sink-clickhouse")
    from sinks.clickhouse import service

    stop = stop_on_signals()
    service.run(platform.bootstrap_servers, platform.clickhouse_dsn, platform.clickhouse_query_port, stop)


def run_sink_stripe(platform: PlatformConfig, pipeline: PipelineConfig, http_port: int) -> None:
    setup("sink-stripe")
    from sinks.stripe import service
    from sinks.stripe.payouts import StripeTransfers

    stop = stop_on_signals()
    api = StripeTransfers(pipeline.stripe_api_key, platform.stripe_api_base)
    service.run(platform.bootstrap_servers, api, stop, _health(http_port))


def _health(port: int) -> Health:
    health = Health()
    if port:
        host = os.environ.get("TRIBUTARY_HTTP_HOST", "127.0.0.1")  # 0.0.0.0 in a pod
        health.serve(port, host)
        log.info("health and metrics on http://%s:%d (/healthz /readyz /metrics)", host, port)
    return health
