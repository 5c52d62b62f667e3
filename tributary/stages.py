"""``tributary run <stage>``: each stage is its own process, scaled and killed alone."""

from __future__ import annotations

import logging
import os
import sys

from tributary.config import PipelineConfig, PlatformConfig
from tributary.health import Health
from tributary.kafka import stop_on_signals
from tributary.logs import setup

log = logging.getLogger("tributary.stages")


def run_streams(platform: PlatformConfig, pipeline: PipelineConfig, web_port: int) -> None:
    os.environ["TRIBUTARY_DATA_DIR"] = str(platform.data_dir)
    os.environ["TRIBUTARY_KAFKA_PORT"] = str(platform.kafka_port)
    os.environ["TRIBUTARY_STREAMS_WEB_PORT"] = str(web_port)
    sys.argv = [sys.argv[0]]
    from streams.app import main

    main()


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
