"""The watchdog's decision: records must be *seen* waiting, per partition, for the limit."""

from __future__ import annotations

from streams.stall import StallDetector


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


P = ("attributions", 0)
Q = ("attributions", 1)


def detector() -> tuple[Clock, StallDetector]:
    clock = Clock()
    return clock, StallDetector(60, clock)


def test_records_that_just_reached_a_long_idle_partition_are_not_a_stall():
    """The finding: the old watchdog exited 0.5 s after the first records reached an idle
    topic, because the topic had been quiet for longer than the limit."""
    clock, stalls = detector()
    clock.now += 3600  # idle for an hour
    assert stalls.quiet([P]) == [P]
    assert stalls.stalled([P], [P]) == []  # first seen waiting now
    clock.now += 20
    assert stalls.quiet([P]) == [P]
    assert stalls.stalled([P], [P]) == []


def test_records_seen_waiting_for_the_limit_without_progress_are_a_stall():
    clock, stalls = detector()
    clock.now += 3600
    stalls.stalled([P], stalls.quiet([P]))
    clock.now += 61
    assert stalls.stalled([P], stalls.quiet([P])) == [(P, 61)]


def test_a_stuck_partition_is_not_hidden_by_a_sibling_that_moves():
    clock, stalls = detector()
    clock.now += 3600
    stalls.stalled([P], stalls.quiet([P, Q]))
    for _ in range(7):
        clock.now += 10
        stalls.progressed(*Q)  # the other partition of the same topic keeps moving
    probed = stalls.quiet([P, Q])
    assert probed == [P]
    assert stalls.stalled([P], probed) == [(P, 70)]


def test_progress_or_an_empty_partition_restarts_the_clock():
    clock, stalls = detector()
    clock.now += 3600
    stalls.stalled([P], stalls.quiet([P]))
    clock.now += 30
    stalls.progressed(*P)
    clock.now += 40  # waited 70 s in all, but progress came 40 s ago
    assert stalls.quiet([P]) == []  # not quiet: not even probed
    clock.now += 30
    assert stalls.stalled([P], stalls.quiet([P])) == []  # seen waiting again: a new clock
    clock.now += 30
    assert stalls.stalled([], stalls.quiet([P])) == []  # drained
    clock.now += 61
    assert stalls.stalled([P], stalls.quiet([P])) == []  # waiting again, newly


def test_probes_are_spaced_and_a_rebalance_resets_every_clock():
    clock, stalls = detector()
    clock.now += 3600
    assert stalls.quiet([P]) == [P]
    clock.now += 5
    assert stalls.quiet([P]) == []  # probed 5 s ago: not again before 15 s
    stalls.stalled([P], [P])
    clock.now += 59
    stalls.reset()
    clock.now += 2
    assert stalls.quiet([P]) == []
