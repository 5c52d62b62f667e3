"""The one topology registry: every stage, its consumer group, the topics it subscribes
to and the topics it writes. `tributary status` and its lag, the demo's settle probe,
the money stages' subscriptions, the ClickHouse sink's subscriptions and the stage list
are taken from here; the topic manifests (schemas/topics), the Helm chart and each
stage's own constants are checked against it by tests/unit/test_lag_topology.py."""

from __future__ import annotations

from dataclasses import dataclass

from tributary.config import streams_app_id
from tributary.topics import Topic


@dataclass(frozen=True)
class Stage:
    name: str
    group: str
    inputs: tuple[Topic, ...]  # subscribed through the group (what lag counts)
    outputs: tuple[Topic, ...]
    transactional: bool  # outputs and input offsets commit in one Kafka transaction
    reads: tuple[Topic, ...] = ()  # also read by assignment, outside the group
    state: Topic | None = None  # its own compacted state topic


CLICKHOUSE_SOURCES = (
    Topic.ATTRIBUTION_REQUESTS, Topic.ATTRIBUTIONS, Topic.ROYALTY_LEDGER, Topic.PAYOUT_REQUESTS,
    Topic.PAYOUT_RESULTS, Topic.INFERENCE_EVENTS_DLQ, Topic.CATALOG_UPDATES, Topic.CORRECTIONS,
    Topic.SINK_CLICKHOUSE_DLQ, Topic.CONTRACTS, Topic.HOLDER_POLICIES, Topic.REVIEW_REQUESTS,
)


def stages() -> dict[str, Stage]:
    """Stage name -> its place in the topology, in flow order."""
    return {s.name: s for s in (
        Stage("streams", streams_app_id(), (Topic.INFERENCE_EVENTS,),
              (Topic.ATTRIBUTION_REQUESTS, Topic.CORRECTIONS, Topic.INFERENCE_EVENTS_DLQ, Topic.INFERENCE_EVENTS),
              transactional=False, reads=(Topic.CONTRACTS,)),
        # flush then commit: its chunk records are keyed by chunk id, so a replay rewrites the same keys
        Stage("indexer", "tributary-indexer", (Topic.CATALOG_UPDATES,), (Topic.CATALOG_CHUNKS,),
              transactional=False, reads=(Topic.CATALOG_CHUNKS,)),
        Stage("attribution", "tributary-attribution", (Topic.ATTRIBUTION_REQUESTS,), (Topic.ATTRIBUTIONS,),
              transactional=True, reads=(Topic.CATALOG_CHUNKS,)),
        Stage("accrue", "tributary-accrue", (Topic.ATTRIBUTIONS, Topic.CORRECTIONS), (Topic.ROYALTY_LEDGER,),
              transactional=True, state=Topic.ACCRUE_STATE),
        Stage("balances", "tributary-balances", (Topic.ROYALTY_LEDGER, Topic.HOLDER_POLICIES),
              (Topic.PAYOUT_REQUESTS, Topic.ROYALTY_LEDGER), transactional=True, state=Topic.BALANCES_STATE),
        Stage("sink-clickhouse", "tributary-sink-clickhouse", CLICKHOUSE_SOURCES, (Topic.SINK_CLICKHOUSE_DLQ,),
              transactional=False),
        Stage("sink-stripe", "tributary-sink-stripe", (Topic.PAYOUT_REQUESTS,),
              (Topic.PAYOUT_RESULTS, Topic.ROYALTY_LEDGER, Topic.HOLDER_POLICIES), transactional=True,
              reads=(Topic.CATALOG_UPDATES, Topic.PAYOUT_RESULTS, Topic.HOLDER_POLICIES)),
    )}


# how the topic manifests (schemas/topics) name each stage as a producer or consumer
COMPONENTS = {"streams.ingest": "streams", "gpu_workers.indexer": "indexer", "gpu_workers.attribution": "attribution",
              "streams.accrue": "accrue", "streams.balances": "balances", "sinks.clickhouse": "sink-clickhouse",
              "sinks.stripe": "sink-stripe"}

STAGE_NAMES = ("streams", "indexer", "attribution", "accrue", "balances", "sink-clickhouse", "sink-stripe")
