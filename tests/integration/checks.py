"""Read-back checks shared by the integration modules."""

from __future__ import annotations

import orjson
from confluent_kafka import Message

from schemas.batches import items
from tributary.config import PlatformConfig
from tributary.kafka import TopicReader
from tributary.query import scalar
from tributary.topics import Topic

MISSPLIT_SQL = """
    SELECT count() FROM (
      SELECT p.event_id, any(p.pool_micros) AS pool, sum(l.amount_micros) AS credited
      FROM (SELECT event_id, pool_micros FROM priced_events FINAL) AS p
      INNER JOIN (SELECT event_id, amount_micros FROM ledger_entries FINAL
                  WHERE entry_type = 'accrual') AS l ON p.event_id = l.event_id
      GROUP BY p.event_id) WHERE pool != credited"""


def events_not_split_exactly(cfg: PlatformConfig) -> int:
    """Events whose accrual entries do not add up to their pool, to the micro."""
    return int(scalar(cfg, MISSPLIT_SQL))


def cli_args(cfg: PlatformConfig) -> list[str]:
    """The global options that point the CLI at the test platform."""
    return ["--data-dir", str(cfg.data_dir), "--kafka-port", str(cfg.kafka_port),
            "--kafka-controller-port", str(cfg.kafka_controller_port), "--stripe-port", str(cfg.stripe_port),
            "--clickhouse-query-port", str(cfg.clickhouse_query_port)]


def read_topic(cfg: PlatformConfig, topic: Topic) -> list[dict]:
    """Every record of ``topic`` (read_committed, from the beginning) as JSON, batch records
    opened into their items (entries, events, requests)."""
    out: list[dict] = []

    def keep(msg: Message) -> None:
        if msg.value():
            value = orjson.loads(msg.value())
            found = next((items(value, f) for f in ("entries", "events", "requests") if items(value, f)), None)
            out.extend(found if found is not None else [value])

    reader = TopicReader(cfg.bootstrap_servers, topic.value)
    try:
        reader.read_to_end(keep, timeout=30)
    finally:
        reader.close()
    return out
