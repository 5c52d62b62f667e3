"""Attribution on the real model and the real engine (int8 ONNX, the CPU default, and
torch; embedded qdrant-edge): reproducible whatever the batch composition, shares that
the evidence recomputes exactly, word-exact shares for a quote, the catalog's own
calibration, and grounding (RAG sources)."""

import os
import random

import pytest

from gpu_workers.catalog import index_works
from gpu_workers.embedder import load_embedder
from gpu_workers.index import EdgeIndex
from gpu_workers.scoring import recompute
from gpu_workers.segment import words
from gpu_workers.worker import attribute_batch
from tributary.config import PipelineConfig
from tributary.sample import UNRELATED, load_catalog

pytestmark = [pytest.mark.model, pytest.mark.qdrant]


@pytest.fixture(scope="module", params=["onnx-int8", "torch"])
def setup(request, tmp_path_factory, real_embedder):
    embedder = real_embedder if request.param == "torch" else load_embedder(request.param)
    index = EdgeIndex(os.fspath(tmp_path_factory.mktemp("edge") / "shard"), dim=embedder.dim)
    catalog = index_works(load_catalog()["works"], embedder, index)
    yield request.param, embedder, index, catalog
    index.close()


def request(event_id, text, **extra):
    return {"event_id": event_id, "occurred_at": "2026-11-20T00:00:00Z", "provider": "acme",
            "model": {"name": "m", "revision": "1"}, "pool_micros": 10_000,
            "contract": {"contract_id": "standard-2026", "version": 1, "royalty_rate_bps": 2000, "currency": "USD"},
            "output": {"text": text}, **extra}


def outputs():
    works = load_catalog()["works"]
    rng = random.Random(7)
    texts = []
    for n in range(24):
        w = works[n % len(works)]["text"].split()
        start = rng.randrange(0, max(1, len(w) - 40))
        quote = " ".join(w[start:start + rng.randint(10, 40)])
        texts.append(f"{rng.choice(UNRELATED)} {quote} {rng.choice(UNRELATED)}")
    texts += rng.sample(UNRELATED, 8)
    return [request(f"e{n}", t) for n, t in enumerate(texts)]


def test_the_same_output_gets_the_same_attribution_in_any_batch(setup):
    backend, embedder, index, catalog = setup
    reqs = outputs()
    cfg = PipelineConfig()
    whole = {a["event_id"]: a for a in attribute_batch(reqs, embedder, index, catalog, cfg)}
    shuffled = list(reqs)
    random.Random(3).shuffle(shuffled)
    pieces = {}
    for i in range(0, len(shuffled), 5):
        pieces.update({a["event_id"]: a for a in attribute_batch(shuffled[i:i + 5], embedder, index, catalog, cfg)})
    same_shares = {e: (a["shares_ppm"], a["unattributed_ppm"]) for e, a in whole.items()}
    assert {e: (a["shares_ppm"], a["unattributed_ppm"]) for e, a in pieces.items()} == same_shares
    if backend == "onnx-int8":  # one text per call: every score and every byte of evidence is the same
        assert pieces == whole
    for a in whole.values():
        assert recompute(a["evidence"]) == (a["shares_ppm"], a["unattributed_ppm"])


def test_a_quote_is_paid_for_its_words_only(setup):
    _, embedder, index, catalog = setup
    moby = next(w for w in load_catalog()["works"] if w["work_id"] == "w-moby-dick")["text"]
    quote = " ".join(moby.split()[:20])
    filler = "The printer on the third floor is out of toner, so send large jobs to the one near the kitchen."
    text = f"{filler} {quote}"
    [a] = attribute_batch([request("q1", text)], embedder, index, catalog, PipelineConfig())
    [share] = a["shares_ppm"]
    assert share["work_id"] == "w-moby-dick" and share["tier"] == "certain"
    expected = len(words(quote)) / len(words(text))
    assert abs(share["share_ppm"] / 1e6 - expected) < 0.05  # the chunk rule paid the whole pool
    row = next(m for m in a["evidence"]["matches"] if m["method"] == "copied")
    assert row["tier"] == "certain" and row["altered"] is False
    [copy] = a["evidence"]["copied"]  # the copied words as [start, end) runs of output word positions
    assert sum(end - start for start, end in copy["spans"]) == len(words(quote))


def test_the_catalog_calibrates_itself_deterministically(setup):
    _, _, _, catalog = setup
    first = catalog.calibration()
    assert first.source == "catalog leave-one-work-out" and first.null_works == 20
    assert 0 < first.threshold < 1 and first.margin >= 0
    catalog._changed()  # recompute from scratch: the same catalog gives the same calibration
    assert catalog.calibration() == first


def test_grounding_weighs_the_named_work_first(setup):
    _, embedder, index, catalog = setup
    text = ("A rich single man who has just arrived in the neighbourhood is soon considered the property of one "
            "of the local daughters by every family around.")
    cfg = PipelineConfig()
    [plain, grounded] = attribute_batch([request("g0", text), request("g1", text, grounded_on=["w-pride-prejudice"])],
                                        embedder, index, catalog, cfg)
    # a paraphrase of Pride and Prejudice's opening: close to Sense and Sensibility too, so on its
    # own it does not clear the runner-up by the catalog's margin; named as the source, it is paid
    assert [s["work_id"] for s in grounded["shares_ppm"]] == ["w-pride-prejudice"]
    assert grounded["unattributed_ppm"] == 0 and grounded["evidence"]["matches"][0]["grounded"] is True
    assert sum(s["share_ppm"] for s in grounded["shares_ppm"]) >= sum(s["share_ppm"] for s in plain["shares_ppm"])
    assert recompute(grounded["evidence"]) == (grounded["shares_ppm"], grounded["unattributed_ppm"])
