"""``tributary run <stage>``: each stage is its own process, scaled and killed alone."""

from __future__ import annotations

import logging
import os
import sys

from tributary.config import PipelineConfig, PlatformConfig
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


def run_indexer(platform: PlatformConfig, pipeline: PipelineConfig, metrics_port: int) -> None:
    setup("indexer")
    from gpu_workers import indexer
    from gpu_workers.embedder import SentenceTransformerEmbedder

    _metrics(metrics_port)
    stop = stop_on_signals()
    indexer.run(platform.bootstrap_servers, SentenceTransformerEmbedder(), stop)


def run_attribution(platform: PlatformConfig, pipeline: PipelineConfig, metrics_port: int,
                    worker_id: str) -> None:
    setup(f"attribution-{worker_id}")
    from gpu_workers.embedder import SentenceTransformerEmbedder
    from gpu_workers.index import QdrantIndex
    from gpu_workers.worker import AttributionWorker

    _metrics(metrics_port)
    stop = stop_on_signals()
    embedder = SentenceTransformerEmbedder()
    index = QdrantIndex(os.environ.get("QDRANT_URL", ":memory:"), dim=embedder.dim)
    log.info("model=%s revision=%s device=%s", embedder.name, embedder.revision, embedder.device)
    AttributionWorker(platform.bootstrap_servers, embedder, index, pipeline, worker_id).run(stop)


def run_sink_clickhouse(platform: PlatformConfig, pipeline: PipelineConfig) -> None:
    setup("sink-clickhouse")
    from sinks.clickhouse import service

    stop = stop_on_signals()
    service.run(platform.bootstrap_servers, platform.clickhouse_dsn, platform.clickhouse_query_port, stop)


def run_sink_stripe(platform: PlatformConfig, pipeline: PipelineConfig, metrics_port: int) -> None:
    setup("sink-stripe")
    from sinks.stripe import service
    from sinks.stripe.payouts import StripeTransfers

    stop = stop_on_signals()
    api = StripeTransfers(pipeline.stripe_api_key, platform.stripe_api_base)
    service.run(platform.bootstrap_servers, api, stop, metrics_port)


def _metrics(port: int) -> None:
    if port:
        from prometheus_client import start_http_server

        start_http_server(port, addr="127.0.0.1")
        log.info("metrics on http://127.0.0.1:%d/metrics", port)
