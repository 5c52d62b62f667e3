"""The embedding backends on the real model: the two-step encode (tokenize, then the
model call, as the worker's threads run it) equals ``model.encode``; the ONNX export
gives the same vectors as torch; the int8 variant is a different model revision, with
its own name, so a catalog embedded by one is never searched with vectors of the other
(the bar each worker calibrates from its catalog is made of that catalog's vectors)."""

import numpy as np
import pytest

from gpu_workers.embedder import OnnxEmbedder, load_embedder

pytestmark = pytest.mark.model

TEXTS = ["Call me Ishmael.", "Reset the router and wait a minute before you try again with the new password.",
         "It was the best of times, it was the worst of times, it was the age of wisdom. " * 12, "ok"] * 5


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory, monkeypatch_module):
    path = tmp_path_factory.mktemp("models")
    monkeypatch_module.setenv("TRIBUTARY_CACHE_DIR", str(path))
    return path


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_prepare_then_embed_equals_model_encode(real_embedder):
    two_step = real_embedder.embed(real_embedder.prepare(TEXTS))
    direct = real_embedder.model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    assert two_step.shape == (len(TEXTS), 384)
    assert np.abs(two_step - direct).max() < 1e-5


def test_onnx_export_gives_the_torch_vectors(real_embedder, model_cache):
    onnx = load_embedder("onnx")
    assert isinstance(onnx, OnnxEmbedder) and onnx.backend == "onnx"
    assert (onnx.name, onnx.revision) == (real_embedder.name, real_embedder.revision)
    assert list(model_cache.glob("models/*.onnx"))  # exported once into the cache
    cosine = (onnx.encode(TEXTS) * real_embedder.encode(TEXTS)).sum(axis=1)
    assert cosine.min() > 0.99999


def test_int8_is_close_but_a_model_of_its_own(real_embedder, model_cache):
    int8 = load_embedder("onnx-int8")
    vectors = int8.encode(TEXTS)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosine = (vectors * real_embedder.encode(TEXTS)).sum(axis=1)
    assert cosine.min() > 0.8 and cosine.max() < 0.99999  # quantisation moves the vectors
    assert int8.name != real_embedder.name


def test_an_unknown_backend_is_refused_with_the_choices():
    with pytest.raises(SystemExit, match="torch, onnx, onnx-int8"):
        load_embedder("tensorrt")


def test_int8_vectors_do_not_depend_on_the_rest_of_the_batch(model_cache):
    """Issue 12: dynamic quantization scales activations per call, and 45 of 600 outputs got
    other shares end to end than in one process. A text's int8 vector is now the same bit
    for bit whatever it is encoded with, and in whatever order."""
    int8 = load_embedder("onnx-int8")
    alone = np.vstack([int8.encode([t]) for t in TEXTS[:4]])
    rng = np.random.default_rng(7)
    for _ in range(3):
        order = rng.permutation(len(TEXTS))
        shuffled = int8.encode([TEXTS[i] for i in order])
        back = np.empty_like(shuffled)
        back[order] = shuffled
        assert np.array_equal(back[:4], alone)
    # in a batch of 64 (the old default) a vector moved by up to 0.03 depending on its company
    batched = OnnxEmbedder(quantize=True, batch_size=64)
    assert np.abs(batched.encode(TEXTS)[:4] - alone).max() > 0
