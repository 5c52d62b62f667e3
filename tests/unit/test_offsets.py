from streams.offsets import OffsetGuard


def test_gaps_are_reported_and_replays_are_not():
    table: dict = {}
    guard = OffsetGuard(table, "inference-events")
    assert guard.gap(0, 0) is None  # the very first record
    assert guard.gap(0, 17) == (0, 17)  # nothing processed yet: everything before it is checked
    guard.advance(0, 17)
    assert guard.gap(0, 18) is None
    assert guard.gap(0, 12) is None  # a replay after a restart
    assert guard.gap(0, 25) == (18, 25)  # records 18..24 were not seen
    guard.advance(0, 12)
    guard.flush(0)
    assert table["wm:inference-events:0"] == 17  # never moves back
    assert guard.gap(1, 5) == (0, 5)  # partitions are independent


def test_committed_past_unprocessed_records_is_reported():
    guard = OffsetGuard({}, "inference-events")
    assert guard.committed_past(0, -1001) is None  # nothing committed, nothing processed
    assert guard.committed_past(0, 0) is None
    assert guard.committed_past(0, 3) == (0, 3)  # committed past records never processed
    guard.advance(0, 9)
    assert guard.committed_past(0, 10) is None  # committed right after the last processed record
    assert guard.committed_past(0, 4) is None  # behind it (a commit still to come)
    assert guard.committed_past(0, 12) == (10, 12)  # the last records of the partition were skipped
    assert guard.committed_past(1, 12) == (0, 12)  # partitions are independent


def test_the_watermark_is_written_once_per_flush_and_reread_after_a_reset():
    table: dict = {"wm:inference-events:0": 4}
    guard = OffsetGuard(table, "inference-events")
    for offset in (5, 6, 7):
        assert guard.gap(0, offset) is None  # each record follows the one before, in memory
        guard.advance(0, offset)
    assert table["wm:inference-events:0"] == 4  # not written per record
    guard.flush(0)
    assert table["wm:inference-events:0"] == 7
    table["wm:inference-events:0"] = 20  # another worker moved on while the partition was away
    assert guard.gap(0, 21) == (8, 21)  # the stale copy in memory ...
    guard.reset()  # ... until the next assignment
    assert guard.gap(0, 21) is None
    guard.flush(0)  # nothing advanced since: nothing written
    assert table["wm:inference-events:0"] == 20
