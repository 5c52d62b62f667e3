"""The verbatim span matcher (word positions, boilerplate), the catalog calibration
(leave one work out, clustered bounds) and the labelled sets' shape. (The sets run on
the real model in tests/integration/test_eval.py.)"""

import numpy as np
import pytest

from gpu_workers.calibration import (
    Calibration,
    NullSample,
    clustered_interval,
    design_effect,
    fit,
    null_sample,
    trimmed_rate,
    upper_bound,
)
from gpu_workers.catalog import CatalogUnits
from gpu_workers.evalset import build, unrelated_outputs, unrelated_pools
from gpu_workers.evaluate import EvalCase, Scored, l1_whole_pool, load_set
from gpu_workers.index import ChunkRecord
from gpu_workers.segment import words
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


def test_a_copied_span_is_found_on_word_positions_through_case_and_punctuation(spans):
    output = ("Sure! here it is: SOME YEARS AGO -- never mind how long precisely -- having little or no money "
              "in my purse... Hope that helps.")
    [match] = spans.match(output)
    assert (match.work_id, match.chunk_ids) == ("w-moby", ("ch_moby_0",))
    tokens = words(output)
    assert [tokens[p] for p in sorted(match.positions)][:3] == ["some", "years", "ago"]
    assert match.words == 16 and "hope" not in {tokens[p] for p in match.positions}


def test_eight_copied_words_are_a_copy_seven_are_not(spans):
    assert spans.match("Yesterday I thought I would sail about a little, then stayed home.")[0].words == 8
    assert spans.match("I thought I would sail about the bay this weekend with friends.") == []  # 7 shared words
    assert spans.match("Reset the router and wait for the green light.") == []


def test_boilerplate_shared_by_many_works_is_no_evidence():
    index = SpanIndex(common_works=3)
    boiler = "On error, -1 is returned, and errno is set to indicate the error."
    for n in range(4):
        index.add(f"c{n}", f"w{n}", f"h{n}", f"Work {n} does its own thing entirely. {boiler}")
    assert index.match(boiler) == []
    index.remove("c3")  # three works left: a shared passage again
    assert {m.work_id for m in index.match(boiler)} == {"w0", "w1", "w2"}


def test_removing_a_unit_removes_its_shingles_and_exclusion_skips_a_work(spans):
    assert spans.copied(words(MOBY), exclude=frozenset({"w-moby"})) == []
    spans.remove("ch_moby_0")
    assert spans.match(MOBY) == [] and len(spans) == 1


def test_upper_bound_matches_the_rule_of_three():
    assert upper_bound(0, 300) == pytest.approx(0.00994, abs=2e-4)  # ~3/n
    assert upper_bound(1, 300) > upper_bound(0, 300)


def test_clustered_intervals_widen_when_documents_fail_together():
    spread = [i % 10 == 0 for i in range(200)]
    clusters = [f"d{i // 10}" for i in range(200)]  # one failure in each document
    bunched = [i < 20 for i in range(200)]  # all failures in two documents
    assert design_effect(spread, clusters) == pytest.approx(1.0, abs=0.2)
    assert design_effect(bunched, clusters) > 5
    assert clustered_interval(bunched, clusters)[2] > clustered_interval(spread, clusters)[2]
    assert clustered_interval([], [])[2] == 1.0


def test_fit_puts_the_bar_above_the_null_and_keeps_its_pass_rate_under_the_target():
    rng = np.random.default_rng(0)
    n = 3000
    best = rng.normal(0.6, 0.08, n)
    runner = best - np.abs(rng.normal(0.0, 0.04, n))
    null = NullSample(best, runner, [f"w{i % 150}" for i in range(n)])
    c = fit(null, target=0.003, quantile=0.95)
    assert c.threshold >= np.quantile(best, 0.95)
    assert c.unit_rate <= 0.003 and c.unit_rate_upper <= 0.01  # no trimming by default: the plain rate
    assert null.passing(c.threshold, c.margin - 0.001).mean() > 0.003  # the smallest such margin
    looser = fit(null, target=0.01, quantile=0.95)
    assert looser.threshold == c.threshold and looser.margin < c.margin  # a looser target, a smaller margin
    assert fit(null, target=0.0).unit_rate == 0.0  # target 0: clears every null sentence
    assert c.accepts(c.threshold, c.margin) and not c.accepts(c.threshold - 0.001, 1.0)
    assert Calibration.from_description(c.describe()) == c
    assert fit(NullSample(best[:10], runner[:10], ["w"] * 10)).source.startswith("fallback")


def test_a_family_of_works_that_restate_each_other_does_not_set_the_margin():
    rng = np.random.default_rng(4)
    n = 3000
    best = rng.normal(0.6, 0.08, n)
    runner = best - np.abs(rng.normal(0.0, 0.04, n))
    works = [f"w{i % 150}" for i in range(n)]
    clean = fit(NullSample(best, runner, works), target=0.005, trim=0.1)
    family = [i for i in range(n) if works[i] in {"w0", "w1", "w2", "w3", "w4"}]  # 5 works paraphrasing each other
    best2, runner2 = best.copy(), runner.copy()
    best2[family], runner2[family] = 0.95, 0.35
    contaminated = fit(NullSample(best2, runner2, works), target=0.005, trim=0.1)
    assert contaminated.margin <= clean.margin + 0.02  # trimmed away
    assert fit(NullSample(best2, runner2, works), target=0.005).margin > 0.3  # the plain rate: the family sets it
    assert trimmed_rate(NullSample(best2, runner2, works).passing(contaminated.threshold, contaminated.margin),
                        works, 0.1) <= 0.005
    assert "trimmed" in contaminated.source and contaminated.version != fit(NullSample(best2, runner2, works)).version
    assert NullSample(best2, runner2, works).passing(contaminated.threshold, contaminated.margin).mean() > 0.02


def test_null_sample_leaves_out_the_work_its_copies_and_twins():
    rng = np.random.default_rng(5)
    base = rng.normal(size=(3, 16))
    close = base[0] + 0.6 * rng.normal(size=16)  # related to unit 0, not the same text
    vectors = np.vstack([base[0], base[0] * 0.999 + 0.001 * base[1], close, base[1], base[2]]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    works = ["a", "twin", "near", "x", "y"]
    null = null_sample(vectors, works, vectors[:1], ["a"], lambda _i: set())
    expected = float(vectors[0] @ vectors[2])
    assert null.best[0] == pytest.approx(expected, abs=1e-6)  # "twin" holds the same text: not a null observation
    null = null_sample(vectors, works, vectors[:1], ["a"], lambda _i: {"near"})  # "near" copies it: excluded
    assert null.best[0] < expected
    assert null.works == ["a"]


def test_catalog_units_calibrate_from_themselves_and_recalibrate_after_a_change():
    rng = np.random.default_rng(1)
    catalog = CatalogUnits()
    for w in range(30):
        for u in range(4):
            catalog.add(ChunkRecord(f"w{w}-{u}", f"w{w}", f"h{w % 7}", u, w + 1, rng.normal(size=16).tolist()),
                        f"text of unit {u} of work {w} number {w * 10 + u}")
    first = catalog.calibration()
    assert first.source == "catalog leave-one-work-out" and first.null_units == 120 and first.null_works == 30
    assert catalog.calibration() is first  # cached until the catalog changes
    catalog.remove("w0-0")
    second = catalog.calibration()
    assert second.null_units == 119 and second.version != first.version
    catalog.fixed = (0.7, 0.1)
    catalog.remove("w0-1")
    assert (catalog.calibration().threshold, catalog.calibration().margin) == (0.7, 0.1)


def test_whole_pool_share_error_counts_the_unattributed_part():
    case = EvalCase("c", "verbatim", "x", {"w1": 0.4})
    assert l1_whole_pool(Scored(case, {"w1": 0.4}, 0.6, [])) == pytest.approx(0.0)
    assert l1_whole_pool(Scored(case, {"w1": 1.0}, 0.0, [])) == pytest.approx(1.2)  # the old chunk rule
    assert l1_whole_pool(Scored(case, {}, 1.0, [])) == pytest.approx(0.8)


def test_the_novels_set_is_deterministic_with_word_fractions_and_disjoint_pools():
    first, second = build(), build()
    assert first == second
    levels = {c.level for c in first}
    assert levels == {"verbatim", "light_edit", "paraphrase", "multi", "altered", "same_topic", "unrelated"}
    fiction = [c for c in first if c.case_id.startswith("fiction-")]
    assert len(fiction) >= 150 and all(c.level == "unrelated" and c.cluster for c in fiction)
    assert all(len(c.planted) >= 2 and sum(c.planted.values()) == pytest.approx(1.0)
               for c in first if c.level == "multi")
    assert all(0 < sum(c.planted.values()) < 1 for c in first if c.level == "verbatim" and len(words(c.text)) > 40)
    assert {c.split for c in first} == {"dev", "heldout"}
    calibration, evaluation = unrelated_pools()
    assert not set(calibration) & set(evaluation)
    unrelated = [c.text for c in first if c.case_id.startswith("everyday-")]
    assert len(unrelated) == 100
    assert set(" ".join(unrelated_outputs(evaluation, 200, seed=18)).split()) >= set(unrelated[0].split())


@pytest.mark.parametrize("name", ["novels", "unix-docs"])
def test_every_builtin_set_loads_and_names_only_catalog_works(name):
    works, cases = load_set(name)
    ids = {w["work_id"] for w in works}
    assert all(set(c.planted) <= ids and set(c.avoid) <= ids for c in cases)
    assert {c.split for c in cases} == {"dev", "heldout"}


def test_the_technical_set_has_what_the_targets_need():
    works, cases = load_set("unix-docs")
    by_level = {}
    for c in cases:
        by_level.setdefault(c.level, []).append(c)
    assert len(works) >= 100 and len({w["holder_id"] for w in works}) >= 30
    assert len(by_level["paraphrase"]) >= 50 and len(by_level["altered"]) >= 30
    assert len(by_level["same_topic"]) >= 100 and len(by_level["unrelated"]) >= 200
    assert all(c.avoid for c in by_level["same_topic"])
    assert all(len(c.planted) >= 2 for c in by_level["multi"])


def test_a_calibration_corpus_joins_the_null_and_a_bad_line_is_named(tmp_path):
    from gpu_workers.catalog import load_corpus
    from gpu_workers.embedder import HashingEmbedder

    rng = np.random.default_rng(2)
    catalog = CatalogUnits()
    for w in range(20):
        for u in range(3):
            catalog.add(ChunkRecord(f"w{w}-{u}", f"w{w}", "h", u, 1, rng.normal(size=384).tolist()), f"unit {w} {u}")
    alone = catalog.calibration()
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(f'{{"text": "Unrelated sentence number {n} about gardens and tea. And here another one follows '
                              f'here.", "document": "d{n % 7}"}}\n' for n in range(200)))
    catalog.set_corpus(load_corpus(corpus, HashingEmbedder()))
    joined = catalog.calibration()
    assert joined.null_units == alone.null_units + 400 and "400 corpus sentences" in joined.source
    assert joined.version != alone.version
    corpus.write_text('{"text": "fine"}\nnot json\n')
    with pytest.raises(ValueError, match="corpus.jsonl:2"):
        load_corpus(corpus, HashingEmbedder())


@pytest.mark.parametrize("keep", [4, 32])
def test_incremental_calibration_equals_calibrating_from_scratch(monkeypatch, keep):
    import gpu_workers.calibration as cal_module

    monkeypatch.setattr(cal_module, "KEEP_WORKS", keep)
    rng = np.random.default_rng(11)
    topics = rng.normal(size=(5, 16))
    shared = "these eight words are shared by a few works here"

    def unit(w, u, version):
        vec = topics[w % 5] + 0.7 * rng.normal(size=16)
        text = f"work {w} unit {u} v{version} " + (shared if (w % 4 == 0 and u == 0) else f"own words {w} {u}")
        return ChunkRecord(f"w{w}-{u}-v{version}", f"w{w}", f"h{w % 6}", u, version, vec.tolist()), text

    live = CatalogUnits()
    records = {}
    for w in range(24):
        for u in range(4):
            rec, text = unit(w, u, 1)
            records[rec.chunk_id] = (rec, text)
            live.add(rec, text)
    first = live.calibration()
    for w in (3, 7, 8):  # withdraw three works (some are in kept lists), re-register one, add two new
        for cid in [c for c in records if c.startswith(f"w{w}-")]:
            live.remove(cid)
            del records[cid]
    for w in (7, 30, 31):
        for u in range(3):
            rec, text = unit(w, u, 2)
            records[rec.chunk_id] = (rec, text)
            live.add(rec, text)
    incremental = live.calibration()
    scratch = CatalogUnits()
    for rec, text in records.values():
        scratch.add(rec, text)
    assert incremental == scratch.calibration()
    assert incremental.version != first.version
    assert live._null.keys() == scratch._null.keys()
    for qid, q in live._null.items():
        assert (q.top, q.complete, q.copied_by) == (scratch._null[qid].top, scratch._null[qid].complete,
                                                    scratch._null[qid].copied_by)
