"""Segmentation, word-exact shares and the worker's batch step, on the fake embedder and
qdrant-client's local mode (the real model and engine run in tests/integration)."""

import random

import numpy as np
import pytest

from gpu_workers.calibration import Calibration
from gpu_workers.catalog import index_works
from gpu_workers.embedder import HashingEmbedder
from gpu_workers.index import ChunkRecord, QdrantIndex
from gpu_workers.scoring import Candidate, UnitMatch, attribute, build_attribution, recompute
from gpu_workers.segment import Segment, Unit, sentences, units, words
from gpu_workers.spans import Copied
from gpu_workers.worker import attribute_batch
from schemas import first_problem
from tributary.config import PipelineConfig
from tributary.sample import load_catalog

BAR = Calibration(0.6, 0.05, "test-cal", "test")


def test_sentences_tile_the_words_and_fragments_join_a_neighbour():
    text = ("The open() call opens the file named by pathname. If it does not exist, it may be created. "
            "Returns 0.\n\n- read(2) and write(2) do I/O on it.")
    segs = sentences(text)
    assert [s.text for s in segs][:2] == ["The open() call opens the file named by pathname.",
                                         "If it does not exist, it may be created."]
    assert "Returns 0." in segs[2].text  # a fragment is never a sentence of its own
    assert sum(s.n_words for s in segs) == len(words(text))
    assert [s.first_word for s in segs] == [0, 9, 18]
    assert sentences("  ") == [] and sentences("one two") == [Segment("one two", 0, 2)]
    long = " ".join(f"w{i}" for i in range(130))
    assert [s.n_words for s in sentences(long)] == [44, 44, 42]


def test_units_are_sentences_then_windows_of_two():
    segs = sentences("First sentence has five words. Second one has five words too. Third here has five words.")
    kinds = [(u.kind, u.first_sentence, u.last_sentence) for u in units(segs)]
    assert kinds == [("sentence", 0, 0), ("sentence", 1, 1), ("sentence", 2, 2), ("window", 0, 1),
                     ("window", 1, 2)]


def seg(*lengths):
    out, cursor = [], 0
    for n in lengths:
        out.append(Segment("", cursor, n))
        cursor += n
    return out


def um(*cands, bound=0.0):
    return UnitMatch(tuple(Candidate(w, f"h-{w}", s, f"{w}-u", twin) for w, s, twin in cands), bound)


def test_each_sentence_pays_its_words_to_the_work_that_clears_the_bar_and_the_margin():
    segments = seg(10, 30)
    us = [Unit("", 0, 0), Unit("", 1, 1)]
    matches = [um(("w1", 0.9, False), ("w2", 0.7, False)),  # clear: 10 words to w1
               um(("w2", 0.9, False), ("w3", 0.88, False))]  # beats the bar, not the runner-up: escrow
    shares, unattributed, rows = attribute(segments, us, matches, [], BAR)
    assert shares == [{"work_id": "w1", "holder_id": "h-w1", "share_ppm": 250_000, "tier": "probable",
                       "words": 10.0}]
    assert unattributed == 750_000
    assert [r["method"] for r in rows] == ["semantic", "none"]


def test_copied_words_are_certain_and_paid_exactly_the_words_copied():
    segments = seg(12, 12, 16)  # 40 words
    copied = [Copied("w1", "h-w1", frozenset(range(12, 24)), ("w1-u",))]  # the second sentence, word for word
    shares, unattributed, rows = attribute(segments, [], [], copied, BAR)
    assert shares == [{"work_id": "w1", "holder_id": "h-w1", "share_ppm": 300_000, "tier": "certain",
                       "words": 12.0}]
    assert unattributed == 700_000 and rows[1]["method"] == "copied" and rows[1]["altered"] is False


def test_a_mostly_copied_sentence_with_words_changed_is_paid_whole_and_flagged():
    segments = seg(20)
    copied = [Copied("w1", "h-w1", frozenset(range(0, 14)), ("w1-u",))]  # 6 words changed
    shares, unattributed, rows = attribute(segments, [], [], copied, BAR)
    assert unattributed == 0 and shares[0]["share_ppm"] == 1_000_000 and shares[0]["tier"] == "certain"
    assert rows[0]["altered"] is True


def test_a_word_copied_from_a_work_registered_twice_is_paid_once_split():
    segments = seg(10)
    both = frozenset(range(10))
    copied = [Copied("w-a", "h-1", both, ("a",)), Copied("w-b", "h-2", both, ("b",))]
    shares, unattributed, _ = attribute(segments, [], [], copied, BAR)
    assert unattributed == 0 and [s["share_ppm"] for s in shares] == [500_000, 500_000]


def test_twins_share_a_semantic_match_and_a_window_lends_only_to_agreeing_sentences():
    segments = seg(10, 10, 10)
    us = [Unit("", 0, 0), Unit("", 1, 1), Unit("", 2, 2), Unit("", 0, 1), Unit("", 1, 2)]
    matches = [
        um(("w1", 0.9, False), ("w1copy", 0.9, True), ("w2", 0.5, False)),  # twins split sentence 0
        um(("w1", 0.55, False)),  # below the bar alone, but its own best is w1 ...
        um(("w9", 0.5, False)),  # ... while this one's own best is another work
        um(("w1", 0.8, False)),
        um(("w1", 0.8, False)),  # passes, but lends nothing to sentence 2 (its own best is w9)
    ]
    shares, unattributed, _ = attribute(segments, us, matches, [], BAR)
    got = {s["work_id"]: s["words"] for s in shares}
    assert got == {"w1": 15.0, "w1copy": 5.0}
    assert unattributed == pytest.approx(333_333, abs=1)


def test_shares_always_conserve_the_pool():
    rng = random.Random(3)
    for _ in range(300):
        lengths = [rng.randint(1, 20) for _ in range(rng.randint(1, 6))]
        segments = seg(*lengths)
        us = [Unit("", i, i) for i in range(len(lengths))]
        works = ["a", "b", "c"]
        matches = [um(*[(w, round(rng.random(), 3), False) for w in rng.sample(works, 2)]) for _ in us]
        total = sum(lengths)
        copied = [Copied(w, f"h-{w}", frozenset(rng.sample(range(total), rng.randint(0, total))), ())
                  for w in rng.sample(works, rng.randint(0, 2))]
        shares, unattributed, _ = attribute(segments, us, matches, copied, BAR)
        assert sum(s["share_ppm"] for s in shares) + unattributed == 1_000_000
        assert all(s["share_ppm"] > 0 for s in shares)


def test_no_words_means_fully_unattributed():
    assert attribute([], [], [], [], BAR) == ([], 1_000_000, [])


@pytest.fixture(scope="module")
def fake_catalog():
    embedder = HashingEmbedder()
    index = QdrantIndex(":memory:", dim=embedder.dim)
    catalog = index_works(load_catalog()["works"], embedder, index)
    catalog.fixed = (0.6, 0.05)
    return embedder, index, catalog


def request(event_id, output):
    return {"event_id": event_id, "occurred_at": "2026-11-20T00:00:00Z", "provider": "acme",
            "model": {"name": "m", "revision": "1"}, "pool_micros": 10_000,
            "contract": {"contract_id": "standard-2026", "version": 1, "royalty_rate_bps": 2000,
                         "currency": "USD"}, "output": output}


def test_batch_attributes_quotes_and_not_unrelated_text(fake_catalog):
    embedder, index, catalog = fake_catalog
    works = {w["work_id"]: w for w in load_catalog()["works"]}
    quote = " ".join(works["w-moby-dick"]["text"].split()[:60])
    unrelated = "Preheat the oven, roast the potatoes, and reset the router before the meeting on Thursday."
    alice = [u.text for u in units(sentences(works["w-alice"]["text"]))][:2]
    precomputed = embedder.encode(alice).tolist()
    batch = [request("e1", {"text": quote}), request("e2", {"text": unrelated}),
             request("e3", {"embeddings": precomputed, "embedding_model": "all-MiniLM-L6-v2"})]
    cfg = PipelineConfig()
    out = attribute_batch(batch, embedder, index, catalog, cfg)
    assert [a["event_id"] for a in out] == ["e1", "e2", "e3"]
    assert [s["work_id"] for s in out[0]["shares_ppm"]] == ["w-moby-dick"]
    assert out[0]["shares_ppm"][0]["tier"] == "certain" and out[0]["unattributed_ppm"] == 0
    assert out[1]["shares_ppm"] == [] and out[1]["unattributed_ppm"] == 1_000_000
    assert [s["work_id"] for s in out[2]["shares_ppm"]] == ["w-alice"]
    for a in out:
        assert first_problem("attribution.v1", a) is None
        assert a["evidence"]["catalog_version"] == catalog.version and a["evidence"]["threshold"] == 0.6
        assert recompute(a["evidence"]) == (a["shares_ppm"], a["unattributed_ppm"])
    # reproducible: same inputs in another batch composition, same attribution (ids included)
    again = attribute_batch([batch[2], request("e4", {"text": "Something else entirely, said twice. Twice."}),
                             batch[1], batch[0]], embedder, index, catalog, cfg)
    assert {a["event_id"]: a for a in again if a["event_id"] != "e4"} == {a["event_id"]: a for a in out}


def test_index_delete_removes_chunks():
    index = QdrantIndex(":memory:", dim=4)
    index.upsert([ChunkRecord("c1", "w1", "h1", 0, 1, [1, 0, 0, 0]),
                  ChunkRecord("c2", "w2", "h2", 0, 1, [0, 1, 0, 0])])
    assert index.count() == 2
    index.delete(["c1"])
    hits = index.search_batch(np.array([[1.0, 0, 0, 0]], dtype=np.float32), 5)
    assert [h.chunk_id for h in hits[0]] == ["c2"]


def test_build_attribution_ids_depend_on_catalog_version():
    req = request("e1", {"text": "x"})
    a = build_attribution(req, [], [], [], [], calibration=BAR, model_name="m", model_revision="r", catalog_version=1)
    b = build_attribution(req, [], [], [], [], calibration=BAR, model_name="m", model_revision="r", catalog_version=2)
    assert a["attribution_id"] != b["attribution_id"]
    assert a["evidence"]["calibration"]["version"] == "test-cal"


def test_a_grounded_work_wins_a_sentence_within_the_margin_and_only_above_the_bar():
    segments = seg(10)
    us = [Unit("", 0, 0)]
    close = [um(("w-other", 0.86, False), ("w-rag", 0.84, False))]  # no margin: escrow without grounding
    assert attribute(segments, us, close, [], BAR)[0] == []
    shares, unattributed, rows = attribute(segments, us, close, [], BAR, frozenset({"w-rag"}))
    assert [s["work_id"] for s in shares] == ["w-rag"] and unattributed == 0 and rows[0]["grounded"] is True
    far = [um(("w-other", 0.95, False), ("w-rag", 0.84, False))]  # the other work is clearly better
    assert [s["work_id"] for s in attribute(segments, us, far, [], BAR, frozenset({"w-rag"}))[0]] == ["w-other"]
    low = [um(("w-rag", 0.55, False))]  # below the bar: grounding is not evidence by itself
    assert attribute(segments, us, low, [], BAR, frozenset({"w-rag"}))[0] == []


def test_grounding_travels_from_the_request_into_evidence_and_recomputes(fake_catalog):
    embedder, index, catalog = fake_catalog
    works = {w["work_id"]: w for w in load_catalog()["works"]}
    text = " ".join(works["w-emma"]["text"].split()[:30])
    plain = attribute_batch([request("g1", {"text": text})], embedder, index, catalog, PipelineConfig())[0]
    grounded = attribute_batch([{**request("g1", {"text": text}), "grounded_on": ["w-emma", "w-unknown"]}],
                               embedder, index, catalog, PipelineConfig())[0]
    assert grounded["evidence"]["grounded_on"] == ["w-emma", "w-unknown"]
    assert recompute(grounded["evidence"]) == (grounded["shares_ppm"], grounded["unattributed_ppm"])
    assert recompute(plain["evidence"]) == (plain["shares_ppm"], plain["unattributed_ppm"])


def test_the_largest_output_gives_an_attribution_that_fits_one_kafka_message(fake_catalog):
    from gpu_workers.worker import MAX_ATTRIBUTION_BYTES, bounded
    from tributary import kafka

    embedder, index, catalog = fake_catalog
    works = load_catalog()["works"]
    fragments = [" ".join(s.text.split()[:9]).rstrip(".,;:!?") + "." for w in works for s in sentences(w["text"])
                 if len(s.text.split()) >= 9]
    text = ""
    while len(text) < 99_000:  # ~10,000 copied 9-word sentences: the most rows an output can have
        text += fragments[len(text) % len(fragments)] + " "
    [a] = attribute_batch([request("big", {"text": text[:99_900]})], embedder, index, catalog, PipelineConfig())
    assert len(kafka.dumps(a)) <= MAX_ATTRIBUTION_BYTES
    assert recompute(a["evidence"]) == (a["shares_ppm"], a["unattributed_ppm"])
    # quotes go first, then the per-sentence rows; what recompute needs always stays
    huge = {**a, "evidence": {**a["evidence"], "matches": [{"tier": "probable", "text": "x" * 400,
                                                            "work_text": "y" * 400}] * 3_000}}
    trimmed = bounded(huge)
    assert trimmed["evidence"]["quotes_dropped"] is True and "text" not in trimmed["evidence"]["matches"][0]
    assert recompute(trimmed["evidence"]) == (a["shares_ppm"], a["unattributed_ppm"])


def test_words_of_any_script_are_counted_and_paid():
    assert words("Café naïve DON\u2019T") == ["café", "naïve", "don't"]
    assert words("Привет, мир.") == ["привет", "мир"] and words("你好世界") == ["你", "好", "世", "界"]
    text = "Это первое предложение здесь сейчас. 我们今天去公园散步。明天我们去学校上课。"
    segs = sentences(text)
    assert len(segs) == 3 and sum(s.n_words for s in segs) == len(words(text))
    from gpu_workers.spans import SpanIndex

    index = SpanIndex()
    index.add("c1", "w-ru", "h-1", "Это первое предложение здесь сейчас и ещё несколько слов потом.")
    [copy] = index.match("Он сказал: это первое предложение здесь сейчас и ещё несколько слов.")
    assert copy.work_id == "w-ru" and copy.words >= 8
