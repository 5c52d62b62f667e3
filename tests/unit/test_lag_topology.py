"""One topology registry (tributary.topology): `tributary status`, the demo's settle probe,
the money stages and the ClickHouse sink take their subscriptions from it; each stage's
own constants and the topic manifests must agree with it (the real broker counts lag in
tests/integration/test_platform_edges.py)."""

from __future__ import annotations

import gpu_workers.indexer
import gpu_workers.worker
import sinks.clickhouse.service
import sinks.stripe.service
import streams.app
from schemas import topic_manifests
from sinks.clickhouse.rows import SOURCE_TOPICS
from streams.money import AccrueStage, BalancesStage
from tributary.lag import stage_groups
from tributary.platform.local import STAGES
from tributary.topology import COMPONENTS, stages


def test_every_stage_group_and_subscription_is_the_one_its_stage_uses():
    groups = stage_groups()
    assert groups["streams"] == (streams.app.app.conf.id, [streams.app.inference_events.get_topic_name()])
    assert sorted(streams.app.SOURCES) == sorted(t.value for t in stages()["streams"].inputs)
    assert groups["sink-clickhouse"] == (sinks.clickhouse.service.GROUP_ID, list(SOURCE_TOPICS))
    assert groups["sink-stripe"][0] == sinks.stripe.service.GROUP_ID
    assert groups["attribution"][0] == gpu_workers.worker.GROUP_ID
    assert groups["indexer"][0] == gpu_workers.indexer.GROUP_ID
    for stage in (AccrueStage, BalancesStage):
        spec = stages()[stage.name]
        assert groups[stage.name] == (f"tributary-{stage.name}", list(spec.inputs))
        assert stage.inputs == [t.value for t in spec.inputs] and stage.state_topic == spec.state


def _stages_named(components: list[str]) -> set[str]:
    """The registry's stages among a manifest's producers or consumers (the CLI tools and
    producers outside the pipeline are not stages); "sinks.stripe (startup recovery)" is sink-stripe."""
    return {COMPONENTS[c.split(" ")[0]] for c in components if c.split(" ")[0] in COMPONENTS}


def test_the_manifests_name_the_same_producers_and_consumers_as_the_registry():
    manifests = topic_manifests()
    for topic, manifest in manifests.items():
        readers = {n for n, s in stages().items() if topic in {t.value for t in (*s.inputs, *s.reads)}
                   or (s.state and s.state.value == topic)}
        writers = {n for n, s in stages().items() if topic in {t.value for t in s.outputs}
                   or (s.state and s.state.value == topic)}
        assert _stages_named(manifest.consumers) == readers, topic
        assert _stages_named(manifest.producers) == writers, topic
    for name, stage in stages().items():  # a stage's inputs and state are co-partitioned by key
        if stage.transactional and stage.state:
            assert len({manifests[t.value].partitions for t in (*stage.inputs, stage.state)}) == 1, name


def test_every_stage_of_the_registry_runs_locally():
    assert set(STAGES) == set(stages())


def test_the_streams_app_id_setting_is_followed(monkeypatch):
    monkeypatch.setenv("TRIBUTARY_STREAMS_APP_ID", "tributary-streams-blue")
    assert stage_groups()["streams"][0] == "tributary-streams-blue"
