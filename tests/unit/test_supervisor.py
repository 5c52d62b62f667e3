"""The streams supervisor: restarts a stalled or crashed worker, never a halted one."""

from __future__ import annotations

import sys
import threading

from tributary.stages import HALTED_EXIT_CODE, STALLED_EXIT_CODE, supervise


def script(tmp_path, codes: list[int]) -> list[str]:
    """A child that exits with the next code from ``codes`` on each start."""
    counter = tmp_path / "starts"
    counter.write_text("0")
    code = (f"import pathlib, sys; p = pathlib.Path({str(counter)!r}); n = int(p.read_text()); "
            f"p.write_text(str(n + 1)); sys.exit({codes!r}[min(n, {len(codes) - 1})])")
    return [sys.executable, "-c", code]


def starts(tmp_path) -> int:
    return int((tmp_path / "starts").read_text())


def test_a_stalled_or_crashed_worker_is_restarted_until_it_stops_cleanly(tmp_path):
    argv = script(tmp_path, [STALLED_EXIT_CODE, 1, 0])
    assert supervise(argv, {}, threading.Event(), max_backoff_s=0.01) == 0
    assert starts(tmp_path) == 3


def test_a_dlq_halt_is_not_restarted(tmp_path):
    argv = script(tmp_path, [HALTED_EXIT_CODE, 0])
    assert supervise(argv, {}, threading.Event(), max_backoff_s=0.01) == HALTED_EXIT_CODE
    assert starts(tmp_path) == 1


def test_a_crash_loop_gives_up(tmp_path):
    argv = script(tmp_path, [1])
    assert supervise(argv, {}, threading.Event(), max_backoff_s=0.001) == 1
    assert starts(tmp_path) == 11


def test_stop_terminates_the_child(tmp_path):
    stop = threading.Event()
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    timer = threading.Timer(0.5, stop.set)
    timer.start()
    assert supervise(argv, {}, stop) == 0
