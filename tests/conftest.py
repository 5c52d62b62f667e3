"""Test tiers say what they need. Integration fixtures start the real services
(Kafka broker, stripe-mock) once per session and stop them; a test that uses a
service fixture without the service's marker fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SERVICE_FIXTURES = {"platform_cfg": "kafka", "chdb_store": "clickhouse", "real_embedder": "model"}
# TRIBUTARY_TEST_PORT_OFFSET moves every port, so two suites can run side by side
_OFFSET = int(os.environ.get("TRIBUTARY_TEST_PORT_OFFSET", "0"))
TEST_PORTS = {name: port + _OFFSET for name, port in {
    "kafka_port": 29092, "kafka_controller_port": 29093, "stripe_port": 22111, "clickhouse_query_port": 28123,
    "portal_port": 28400,
}.items()}


def pytest_runtest_setup(item: pytest.Item) -> None:
    for fixture, marker in SERVICE_FIXTURES.items():
        if fixture in getattr(item, "fixturenames", ()) and item.get_closest_marker(marker) is None:
            pytest.fail(f"{item.nodeid} uses {fixture} but is not marked @pytest.mark.{marker}")


@pytest.fixture(scope="session")
def platform_cfg(tmp_path_factory: pytest.TempPathFactory):
    """A real Kafka broker and stripe-mock on test ports, under a fresh data dir."""
    from tributary.config import load_platform
    from tributary.platform import local

    data_dir = Path(os.environ.get("TRIBUTARY_TEST_DATA_DIR") or tmp_path_factory.mktemp("tributary"))
    for var in ("TRIBUTARY_KAFKA_BOOTSTRAP", "TRIBUTARY_STRIPE_API_BASE", "CLICKHOUSE_URL"):
        os.environ.pop(var, None)
    cfg = load_platform(data_dir=data_dir, **TEST_PORTS)
    local.down(cfg, wipe=True, log=lambda m: None)
    local.up(cfg)
    yield cfg
    local.down(cfg)


def reset_platform(cfg) -> None:
    """Stop every stage and start the platform again on empty data (between modules)."""
    from tributary.platform import local

    local.down(cfg, wipe=True, log=lambda m: None)
    local.up(cfg, log=lambda m: None)


@pytest.fixture(scope="session")
def real_embedder():
    from gpu_workers.embedder import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder()
