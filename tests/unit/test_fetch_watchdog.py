"""The transactional loop's fetch watchdog, on librdkafka statistics as the consumer
reports them: an assigned partition whose fetch state is not ``active`` for the limit
stops the loop (to be restarted from the committed offsets); unassigned partitions and
short outages do not."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import TopicPartition

from tributary import txloop
from tributary.txloop import FatalStageError, FetchWatchdog


class Consumer:
    def __init__(self, assigned):
        self.assigned = assigned

    def assignment(self):
        return [TopicPartition(t, p) for t, p in self.assigned]


def stats(states: dict[tuple[str, int], str]) -> str:
    topics: dict = {}
    for (topic, partition), state in states.items():
        topics.setdefault(topic, {"partitions": {}})["partitions"][str(partition)] = {"fetch_state": state}
    topics.setdefault("royalty-ledger", {"partitions": {}})["partitions"]["-1"] = {"fetch_state": "none"}
    return json.dumps({"topics": topics})


def test_a_partition_not_fetched_for_the_limit_stops_the_loop(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(txloop.time, "monotonic", lambda: clock[0])
    watchdog = FetchWatchdog("balances", stuck_s=60)
    watchdog.consumer = Consumer([("royalty-ledger", 1), ("royalty-ledger", 2)])
    report = {("royalty-ledger", 1): "active", ("royalty-ledger", 2): "offset-query",
              ("royalty-ledger", 3): "none"}  # 3 is not ours: never judged
    watchdog.on_stats(stats(report))
    clock[0] += 30
    watchdog.on_stats(stats(report))
    watchdog.check()  # 30 s: not yet
    clock[0] += 31
    watchdog.on_stats(stats(report))
    with pytest.raises(FatalStageError, match=r"royalty-ledger/2 \(offset-query\)"):
        watchdog.check()


def test_a_partition_that_fetches_again_is_forgiven(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(txloop.time, "monotonic", lambda: clock[0])
    watchdog = FetchWatchdog("accrue", stuck_s=60)
    watchdog.consumer = Consumer([("attributions", 0)])
    watchdog.on_stats(stats({("attributions", 0): "offset-wait"}))  # a broker restart
    clock[0] += 50
    watchdog.on_stats(stats({("attributions", 0): "active"}))
    clock[0] += 50
    watchdog.on_stats(stats({("attributions", 0): "offset-wait"}))  # again, later: its clock starts over
    clock[0] += 30
    watchdog.check()
    watchdog.on_stats("not json")  # a garbled report changes nothing
    watchdog.check()


def test_the_lag_of_the_assigned_partitions_is_exported_per_topic():
    """tributary_stage_lag_records: last stable offset minus the stage's read position, over
    its assigned partitions (what the lag alerts watch). Not librdkafka's consumer_lag: that
    counts from the consumer's committed offset, which a transactional stage never moves,
    so it would grow forever on a healthy stage. Unknown offsets (-1) count as none; a topic
    whose partitions moved away goes back to 0."""
    watchdog = FetchWatchdog("balances-lagtest", stuck_s=60)
    watchdog.consumer = Consumer([("royalty-ledger", 1), ("royalty-ledger", 2)])
    part = lambda end, pos, committed: {"fetch_state": "active", "ls_offset": end, "app_offset": pos,  # noqa: E731
                                        "committed_offset": committed, "consumer_lag": end - committed}
    raw = {"topics": {"royalty-ledger": {"partitions": {
        "1": part(500, 460, 3), "2": part(-1, 7, 3), "3": part(999, 0, 0)}}}}  # 3 is another process's
    watchdog.on_stats(json.dumps(raw))
    gauge = txloop.LAG.labels("balances-lagtest", "royalty-ledger")
    assert gauge._value.get() == 40  # not 497: the committed offset a transactional stage never moves
    raw["topics"]["royalty-ledger"]["partitions"]["1"] = part(900, 900, 3)  # caught up, much later
    watchdog.on_stats(json.dumps(raw))
    assert gauge._value.get() == 0
    watchdog.on_stats(json.dumps(raw))
    watchdog.consumer = Consumer([])  # rebalanced away
    raw["topics"]["royalty-ledger"]["partitions"]["1"] = part(950, 900, 3)
    watchdog.on_stats(json.dumps(raw))
    assert gauge._value.get() == 0
