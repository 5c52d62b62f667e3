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
    assert table["wm:inference-events:0"] == 17  # never moves back
    assert guard.gap(1, 5) == (0, 5)  # partitions are independent
