"""The watchdog's decision: records must be *seen* waiting for the stall limit."""

from __future__ import annotations

from streams.stall import StallDetector


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


P = ("attributions", 0)


def test_records_that_just_reached_a_long_idle_topic_are_not_a_stall():
    """The finding: the old watchdog exited 0.5 s after the first records reached an idle
    topic, because the topic had been quiet for longer than the limit."""
    clock = Clock()
    stalls = StallDetector(60, clock)
    clock.now += 3600  # idle for an hour
    assert stalls.quiet(["attributions"]) == {"attributions"}
    assert stalls.stalled([P], [P]) == []  # first seen waiting now
    clock.now += 0.5
    assert stalls.stalled([P], [P]) == []


def test_records_waiting_for_the_limit_without_progress_are_a_stall():
    clock = Clock()
    stalls = StallDetector(60, clock)
    clock.now += 3600
    stalls.quiet(["attributions"])
    stalls.stalled([P], [P])
    clock.now += 61
    stalls.quiet(["attributions"])
    assert stalls.stalled([P], [P]) == [(P, 61)]


def test_progress_or_an_empty_partition_restarts_the_clock():
    clock = Clock()
    stalls = StallDetector(60, clock)
    clock.now += 3600
    stalls.quiet(["attributions"])
    stalls.stalled([P], [P])
    clock.now += 30
    stalls.progressed("attributions")
    clock.now += 40  # waited 70 s in all, but progress came 40 s ago
    assert stalls.quiet(["attributions"]) == set()  # not quiet: not even probed
    clock.now += 30
    stalls.quiet(["attributions"])
    assert stalls.stalled([P], [P]) == []  # seen waiting again: a new clock
    clock.now += 30
    assert stalls.stalled([], [P]) == []  # drained
    clock.now += 61
    assert stalls.stalled([P], [P]) == []  # waiting again, newly


def test_a_rebalance_resets_every_clock():
    clock = Clock()
    stalls = StallDetector(60, clock)
    clock.now += 3600
    stalls.quiet(["attributions"])
    stalls.stalled([P], [P])
    clock.now += 59
    stalls.reset(["attributions"])
    clock.now += 2
    assert stalls.quiet(["attributions"]) == set()
