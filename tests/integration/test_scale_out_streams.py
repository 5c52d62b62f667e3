"""Two Faust streams workers (and two attribution workers) split the partitions;
stopping one of each moves its partitions to the other, and the totals stay exact.

This used to lose input in about half the runs: the worker being stopped committed
offsets of records its agents never received (Faust acknowledges records it treats as
a gap or drops at shutdown). The offset guard now notices records between an agent's
own watermark and the first record it is handed, on partitions it never processed
too, and rewinds the consumer to them (see streams/offsets.py)."""

from __future__ import annotations

import pytest

from producers.sdk import EventProducer
from tests.conftest import reset_platform
from tributary import demo
from tributary.config import load_pipeline
from tributary.platform import local
from tributary.platform.procs import ManagedProcess
from tributary.query import scalar
from tributary.sample import plan_events
from tributary.topics import Topic

from .checks import events_not_split_exactly
from .test_scale_out import offsets_report, wait_split

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.stripe, pytest.mark.model, pytest.mark.e2e]

EVENTS = 240


@pytest.fixture(scope="module")
def scaled(platform_cfg):
    cfg = platform_cfg
    reset_platform(cfg)
    base = cfg.clickhouse_query_port
    extra = {
        "streams-2": ManagedProcess("streams-2", cfg.run_dir, cfg.log_dir),
        "attribution-2": ManagedProcess("attribution-2", cfg.run_dir, cfg.log_dir),
    }
    # Faust can stop fetching after a rebalance (faust-streaming #175); the watchdog
    # restarts a stalled worker: 20 s here instead of the default 60 s
    env = {"TRIBUTARY_STREAMS_STALL_S": "20"}
    demo.start_stages(cfg, log=lambda m: None, env=env)
    extra["streams-2"].start(demo.stage_argv(cfg, "streams", ["--web-port", str(base + 11)]), env=env)
    extra["attribution-2"].start(demo.stage_argv(cfg, "attribution", ["--metrics-port", str(base + 12),
                                                                      "--worker-id", "1"]), env=env)
    observed: dict[str, object] = {}
    try:
        sample = demo.register_and_index(cfg, load_pipeline(), 600, log=lambda m: None)
        observed["streams_two"] = wait_split(cfg, "tributary-streams", Topic.INFERENCE_EVENTS, 2)
        observed["attribution_two"] = wait_split(cfg, "tributary-attribution", Topic.ATTRIBUTION_REQUESTS, 2)
        planned = plan_events(sample, EVENTS, seed=31)
        with EventProducer(cfg.bootstrap_servers) as producer:
            for item in planned[: EVENTS // 2]:
                producer.emit(item.event)
            assert producer.flush(30) == 0
            # a graceful stop of one worker of each kind, with the first half in flight
            extra["streams-2"].stop(timeout=30)
            extra["attribution-2"].stop(timeout=30)
            observed["streams_one"] = wait_split(cfg, "tributary-streams", Topic.INFERENCE_EVENTS, 1)
            observed["attribution_one"] = wait_split(cfg, "tributary-attribution", Topic.ATTRIBUTION_REQUESTS, 1)
            for item in planned[EVENTS // 2:]:
                producer.emit(item.event)
            assert producer.flush(30) == 0
        try:
            observed["counts"] = demo.wait_for(cfg, "pipeline", demo.settle_probe(cfg, EVENTS, 0), timeout=300,
                                               log=print)
        except Exception:
            print(offsets_report(cfg))
            raise
        yield cfg, observed
    finally:
        for proc in extra.values():
            proc.stop(timeout=20)
        for stage in local.STAGES:
            local.stage_process(cfg, stage).stop(timeout=20)


def test_two_workers_of_each_kind_split_the_partitions(scaled):
    _, observed = scaled
    for key in ("streams_two", "attribution_two"):
        split = observed[key]
        assert len(split) == 2
        first, second = split.values()
        assert set(first).isdisjoint(second) and sorted(first + second) == [0, 1, 2, 3], (key, split)


def test_stopping_one_moves_its_partitions_to_the_other(scaled):
    _, observed = scaled
    for key in ("streams_one", "attribution_one"):
        [partitions] = observed[key].values()
        assert partitions == [0, 1, 2, 3], (key, observed[key])


def test_totals_stay_exact(scaled):
    cfg, observed = scaled
    counts = observed["counts"]
    assert counts["priced"] == counts["attributed"] == counts["accrued"] == EVENTS
    assert events_not_split_exactly(cfg) == 0
    assert scalar(cfg, "SELECT count() FROM dead_letters FINAL") == 0
    paid = scalar(cfg, "SELECT sum(amount_micros) FROM ledger_entries FINAL WHERE entry_type = 'payout'") or 0
    requested = scalar(cfg, "SELECT sum(amount_micros) FROM payout_requests FINAL") or 0
    assert paid == requested
