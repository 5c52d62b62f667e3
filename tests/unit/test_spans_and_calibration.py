"""The verbatim span matcher, how the two signals combine into shares, near-duplicate
works paid once, and the calibration arithmetic. (The whole labelled set runs on the
real model in tests/integration/test_eval.py.)"""

import pytest

from gpu_workers.evalset import build, unrelated_outputs, unrelated_pools
from gpu_workers.evaluate import calibrate, resolve_threshold, upper_bound
from gpu_workers.index import Match
from gpu_workers.scoring import attribute_chunks
from gpu_workers.spans import SpanIndex

MOBY = ("Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse, "
        "and nothing particular to interest me on shore, I thought I would sail about a little and see the "
        "watery part of the world.")


@pytest.fixture
def spans():
    index = SpanIndex()
    index.add("ch_moby_0", "w-moby", "h-harbor", MOBY)
    index.add("ch_other_0", "w-other", "h-x", "An entirely different text about gardens, weather and the price of tea.")
    return index


def test_a_copied_sentence_is_found_through_case_and_punctuation_changes(spans):
    output = ("Sure! here it is: SOME YEARS AGO -- never mind how long precisely -- having little or no money "
              "in my purse... Hope that helps.")
    [match] = spans.match(output)
    assert (match.work_id, match.chunk_ids) == ("w-moby", ("ch_moby_0",))
    assert match.words >= 14


def test_short_overlaps_and_unrelated_text_do_not_match(spans):
    assert spans.match("I thought I would sail about the bay this weekend with friends.") == []  # 7 shared words
    assert spans.match("Reset the router and wait for the green light.") == []


def test_removing_a_chunk_removes_its_shingles(spans):
    spans.remove("ch_moby_0")
    assert spans.match(MOBY) == [] and len(spans) == 1


def test_verbatim_decides_before_embeddings_and_splits_by_words_copied(spans):
    per_chunk = [[Match("ch_emb", "w-emb", "h-e", 0, 0.95)]]  # a strong embedding match elsewhere
    per_spans = [spans.match(MOBY)]
    shares, unattributed, _, verbatim, decided = attribute_chunks(per_chunk, 0.5, per_spans)
    assert decided == ["verbatim"] and unattributed == 0
    assert shares == [{"work_id": "w-moby", "holder_id": "h-harbor", "share_ppm": 1_000_000}]
    assert verbatim[0]["chunk_ids"] == ["ch_moby_0"]


def test_a_work_registered_twice_is_paid_once_split_between_the_copies():
    twin = SpanIndex()
    twin.add("ch_a", "w-original", "h-1", MOBY)
    twin.add("ch_b", "w-reupload", "h-2", MOBY)
    shares, unattributed, _, _, _ = attribute_chunks([[]], 0.5, [twin.match(MOBY)])
    assert unattributed == 0 and sum(s["share_ppm"] for s in shares) == 1_000_000
    assert {s["work_id"]: s["share_ppm"] for s in shares} == {"w-original": 500_000, "w-reupload": 500_000}
    # the same for near-identical embedding matches (shared boilerplate)
    near = [[Match("c1", "w-1", "h-1", 0, 0.900), Match("c2", "w-2", "h-2", 0, 0.898), Match("c3", "w-3", "h-3", 0, 0.8)]]
    shares, _, evidence, _, _ = attribute_chunks(near, 0.5)
    assert {s["work_id"] for s in shares} == {"w-1", "w-2"} and sum(s["share_ppm"] for s in shares) == 1_000_000
    assert [e["chunk_id"] for e in evidence if e["chosen"]] == ["c1", "c2"]


def test_upper_bound_matches_the_rule_of_three():
    assert upper_bound(0, 300) == pytest.approx(0.00994, abs=2e-4)  # ~3/n
    assert upper_bound(1, 300) > upper_bound(0, 300)


def test_calibration_clears_enough_outputs_for_the_target():
    scores = [i / 1000 for i in range(600)]  # 0.000 .. 0.599
    threshold = calibrate(scores, 0.01)
    above = sum(s >= threshold for s in scores)
    assert upper_bound(above, len(scores)) <= 0.01 and above <= 1
    assert calibrate([0.3] * 10, 0.01) == pytest.approx(0.301)  # too few outputs: clear them all


def test_an_explicit_threshold_wins_over_the_calibration(monkeypatch):
    monkeypatch.delenv("TRIBUTARY_SIMILARITY_THRESHOLD", raising=False)
    value, source = resolve_threshold(0.62, "all-MiniLM-L6-v2", "sha256:2dfaa8528f1dd37e")
    assert source.startswith("calibrated") and value < 0.62
    assert resolve_threshold(0.62, "all-MiniLM-L6-v2", "sha256:other")[0] == 0.62  # another revision
    monkeypatch.setenv("TRIBUTARY_SIMILARITY_THRESHOLD", "0.7")
    assert resolve_threshold(0.7, "all-MiniLM-L6-v2", "sha256:2dfaa8528f1dd37e") == (0.7, "TRIBUTARY_SIMILARITY_THRESHOLD")


def test_the_labelled_set_is_deterministic_and_calibration_never_sees_test_text():
    first, second = build(), build()
    assert first == second
    levels = {c.level for c in first}
    assert levels == {"verbatim", "light_edit", "paraphrase", "mixed", "near_miss", "unrelated"}
    assert all(len(c.planted) >= 2 for c in first if c.level == "mixed")
    calibration, evaluation = unrelated_pools()
    assert not set(calibration) & set(evaluation)
    calib_outputs = set(unrelated_outputs(calibration, 1_000, seed=99))
    unrelated = [c.text for c in first if c.level == "unrelated"]
    assert len(unrelated) == 200 and not calib_outputs & set(unrelated)
    assert set(" ".join(unrelated_outputs(evaluation, 200, seed=18)).split()) >= set(unrelated[0].split())


def test_covered_words_count_overlapping_windows_once():
    from gpu_workers.spans import _covered

    assert _covered([], 8) == 0
    assert _covered([0], 8) == 8
    assert _covered([0, 1, 2, 3, 4], 8) == 12  # five consecutive shingles: 12 words
    assert _covered([0, 8], 8) == 16 and _covered([0, 10], 8) == 16  # adjacent or apart
    assert _covered([3, 5], 8) == 10
