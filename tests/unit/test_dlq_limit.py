"""The dead-letter rate limit judges the real recent history, which survives a restart."""

from __future__ import annotations

from streams.dlq_limit import DeadLetterLimit, key, reset_records


def limit(table: dict, **kwargs) -> DeadLetterLimit:
    return DeadLetterLimit(table, **{"window": 1000, "max_fraction": 0.5, "min_events": 50, **kwargs})


def test_trips_only_on_a_flood():
    book = limit({}, window=100, min_events=10)
    for i in range(100):
        book.record(0, i, i % 10 == 0)  # 10% bad: data, not a bad deploy
    assert book.exceeded([0]) is None
    for i in range(60):
        book.record(0, 100 + i, True)
    reason = book.exceeded([0])
    assert reason is not None and "tributary resume ingest" in reason


def test_a_restart_keeps_the_history_so_a_bad_burst_after_it_is_judged_against_the_last_1000():
    """The issue's measurement: 1,000 events with 7% bad, a restart, then 50 events 80% bad.
    An in-memory window starts empty after the restart and halts on the burst."""
    table: dict = {}
    before = limit(table)
    for i in range(1000):
        before.record(i % 4, i // 4, i % 100 < 7)
    assert before.exceeded(range(4)) is None
    after = limit(table)  # a new process: only the table (its changelog) carried over
    for i in range(50):
        after.record(i % 4, 250 + i // 4, i % 5 != 0)  # 80% bad
    assert after.exceeded(range(4)) is None
    seen, rejected = after.counts(range(4))
    assert seen >= 1000 and rejected == 70 + 40


def test_the_window_keeps_between_window_and_window_plus_one_bucket_of_events():
    book = limit({}, window=100, buckets=10)
    for i in range(1000):
        book.record(0, i, False)
    seen, _ = book.counts([0])
    assert 100 <= seen < 110


def test_owned_partitions_are_judged_together_and_a_halt_sticks_to_its_partition():
    """A burst of junk on one partition (a sticky partitioner) among healthy ones is data;
    once a halt is recorded, whichever worker owns that partition halts too."""
    table: dict = {}
    book = limit(table, window=100, min_events=10)
    for i in range(50):
        book.record(1, i, True)
    for p in (0, 2, 3):
        for i in range(100):
            book.record(p, i, False)
    assert book.exceeded([0, 1, 2, 3]) is None  # 50 of 350
    assert book.exceeded([1]) is not None  # a worker owning only the flooded partition
    book.halt(1, "flooded")
    peer = limit(table, window=100, min_events=10)  # another worker, after a rebalance
    assert peer.exceeded([0, 1, 2, 3]) == "flooded"
    assert peer.exceeded([0, 2, 3]) is None


def test_a_replayed_offset_is_counted_once():
    table: dict = {}
    book = limit(table, min_events=10)
    for _ in range(3):  # the same 20 offsets handled three times (restarts, rewinds)
        for i in range(20):
            book.record(0, i, i % 4 == 0)
    assert book.counts([0]) == (20, 5)


def test_a_halt_is_sticky_until_reset_and_the_backlog_before_the_reset_does_not_count():
    table: dict = {}
    book = limit(table, min_events=10)
    for i in range(20):
        book.record(2, i, True)
    assert limit(table, min_events=10).exceeded([2]) is not None  # restarted: halts again
    for partition, name, value in reset_records({p: 100 for p in range(4)}):
        assert name == key(partition)
        table[name] = value
    resumed = limit(table, min_events=10)
    assert resumed.exceeded([2]) is None
    for i in range(20, 100):  # the rest of the bad deploy, already in the log at the resume
        resumed.record(2, i, True)
    assert resumed.exceeded([2]) is None and resumed.counts([2]) == (0, 0)
    for i in range(100, 120):  # new traffic counts again
        resumed.record(2, i, True)
    assert resumed.exceeded([2]) is not None


def test_a_takes_records_counted_at_once_equal_them_counted_one_by_one_and_replays_count_once():
    import random

    rng = random.Random(7)
    records = [(offset, rng.randint(1, 40), 0) for offset in range(300)]
    records = [(o, n, rng.randint(0, n) if o % 3 == 0 else 0) for o, n, _ in records]
    one_by_one, per_take = limit({}, window=500), limit({}, window=500)
    for offset, events, rejected in records:
        one_by_one.record(0, offset, rejected, events=events)
    cut = 0
    while cut < len(records):
        take = rng.randint(1, 50)
        per_take.record_many(0, records[cut:cut + take])
        per_take.record_many(0, records[max(0, cut - 10):cut + take])  # a replay overlapping it: counted once
        cut += take
    assert per_take.table[key(0)] == one_by_one.table[key(0)]
    assert per_take.counts([0]) == one_by_one.counts([0])


def test_the_window_is_shared_by_the_partitions_so_a_flood_is_judged_against_the_last_window_events():
    """DLQ_WINDOW=200 over 12 partitions: each keeps ~17 of its latest events, ~200 in all.
    A whole window per partition judged 2,400 events together: 400 bad events after 550
    good ones stayed under half and ingest never halted."""
    book = limit({}, window=200, min_events=200, partitions=12)
    offsets = dict.fromkeys(range(12), 0)

    def feed(n: int, bad: bool) -> None:
        for i in range(n):
            p = i % 12
            book.record(p, offsets[p], bad)
            offsets[p] += 1

    feed(550, False)
    seen, _ = book.counts(range(12))
    assert 200 <= seen < 200 + 12 * 2  # the last ~window events, not 12 windows
    feed(150, True)
    assert book.exceeded(range(12)) is not None
