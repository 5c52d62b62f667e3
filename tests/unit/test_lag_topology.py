"""`tributary status` reports lag per stage over exactly the topics each stage's consumer
group subscribes to, taken from the stages' own registries (the real broker counts it
in tests/integration/test_platform_edges.py)."""

from __future__ import annotations

import gpu_workers.indexer
import gpu_workers.worker
import sinks.clickhouse.service
import sinks.stripe.service
import streams.app
from sinks.clickhouse.rows import SOURCE_TOPICS
from tributary.lag import stage_groups
from tributary.topics import Topic


def test_the_streams_group_covers_every_topic_the_worker_consumes():
    group, topics = stage_groups()["streams"]
    assert group == streams.app.app.conf.id
    assert Topic.CORRECTIONS in topics  # refunds: status under-reported this lag
    assert sorted(t.value for t in topics) == sorted(streams.app.SOURCES)


def test_every_stage_group_is_the_one_its_stage_uses():
    groups = stage_groups()
    assert groups["sink-clickhouse"] == (sinks.clickhouse.service.GROUP_ID, list(SOURCE_TOPICS))
    assert groups["sink-stripe"][0] == sinks.stripe.service.GROUP_ID
    assert groups["attribution"][0] == gpu_workers.worker.GROUP_ID
    assert groups["indexer"] == (gpu_workers.indexer.GROUP_ID, [Topic.CATALOG_UPDATES])


def test_the_streams_app_id_setting_is_followed(monkeypatch):
    monkeypatch.setenv("TRIBUTARY_STREAMS_APP_ID", "tributary-streams-blue")
    assert stage_groups()["streams"][0] == "tributary-streams-blue"
