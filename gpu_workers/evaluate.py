"""``tributary eval``: attribution quality on the labelled set (:mod:`gpu_workers.evalset`),
and the calibration of the similarity threshold.

The catalog is chunked and embedded exactly as the indexer does, loaded into the
embedded qdrant-edge shard and the verbatim span index, and every case goes through
the worker's own code (:func:`gpu_workers.worker.output_vectors`, the span matcher,
:func:`gpu_workers.scoring.attribute_chunks`), so the figures are the pipeline's.

Per level it reports ranking quality (recall@1, recall@5, MRR: works ranked by their
best chunk score, verbatim matches first) and what money depends on: the recall and
precision of what is actually attributed at the operating threshold, the false
attribution rate (cases with nothing planted that still pay someone) and the L1 error
between attributed and planted shares (attributed shares normalised over works; 0 is
perfect, 1 means nothing attributed, 2 means all to the wrong works).

Calibration: the threshold is set from the best similarity score of each output in a
pool of unrelated text disjoint from the evaluation pool, so that at most
``target_false_attribution`` of those outputs reach it; stored per model in
``gpu_workers/calibration.json``, which the attribution worker reads.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from gpu_workers.embedder import Embedder
from gpu_workers.evalset import EvalCase, build, unrelated_outputs, unrelated_pools
from gpu_workers.index import ChunkRecord, EdgeIndex, Match, VectorIndex
from gpu_workers.indexer import chunk_records
from gpu_workers.scoring import attribute_chunks
from gpu_workers.spans import SpanIndex, SpanMatch
from gpu_workers.worker import output_chunks, output_vectors
from tributary.sample import load_catalog

CALIBRATION_FILE = Path(__file__).resolve().parent / "calibration.json"
TARGETS = {  # level -> (metric, comparison, bound)
    "verbatim": ("attributed_recall", ">=", 0.95),
    "paraphrase": ("attributed_recall", ">=", 0.80),
    "unrelated": ("false_attribution_rate", "<=", 0.01),
    "near_miss": ("false_attribution_rate", "<=", 0.05),
}


@dataclass
class Scored:
    case: EvalCase
    ranking: list[str]  # work ids, best first
    attributed: dict[str, float]  # work id -> share of the pool
    best_score: float  # the best embedding score over the output's chunks
    decided_by: list[str]


def load_catalog_into(catalog: dict[str, Any], embedder: Embedder, index: VectorIndex) -> SpanIndex:
    spans = SpanIndex()
    for n, work in enumerate(catalog["works"], 1):
        update = {"work_id": work["work_id"], "holder_id": work["holder_id"], "text": work["text"]}
        records = chunk_records(update, n, embedder)
        index.upsert([ChunkRecord(r["chunk_id"], r["work_id"], r["holder_id"], r["chunk_index"],
                                  r["catalog_version"], r["vector"]) for r in records])
        for r in records:
            spans.add(r["chunk_id"], r["work_id"], r["holder_id"], r["text"])
    return spans


def score_texts(texts: list[str], embedder: Embedder, index: VectorIndex, spans: SpanIndex, top_k: int,
                batch: int = 64) -> list[tuple[list[list[Match]], list[list[SpanMatch]]]]:
    """Per text: (matches per output chunk, verbatim spans per output chunk)."""
    out: list[tuple[list[list[Match]], list[list[SpanMatch]]]] = []
    for start in range(0, len(texts), batch):
        requests = [{"output": {"text": t}} for t in texts[start:start + batch]]
        chunks = output_chunks(requests)
        vectors, _ = output_vectors(requests, embedder, chunks)
        flat = np.vstack([v for v in vectors if len(v)]) if any(len(v) for v in vectors) else np.zeros((0, 1))
        found = index.search_batch(flat, top_k) if len(flat) else []
        cursor = 0
        for texts_of, vecs in zip(chunks, vectors, strict=True):
            per_chunk = found[cursor:cursor + len(vecs)]
            cursor += len(vecs)
            out.append((per_chunk, [spans.match(t) for t in texts_of]))
    return out


def _best(per_chunk: list[list[Match]]) -> float:
    return max((m.score for row in per_chunk for m in row), default=0.0)


def evaluate(cases: list[EvalCase], embedder: Embedder, index: VectorIndex, spans: SpanIndex, threshold: float,
             top_k: int = 5) -> list[Scored]:
    scored = []
    for case, (per_chunk, per_spans) in zip(cases, score_texts([c.text for c in cases], embedder, index, spans,
                                                                  top_k), strict=True):
        work_score: dict[str, float] = {}
        for row in per_chunk:
            for m in row:
                work_score[m.work_id] = max(work_score.get(m.work_id, -1.0), m.score)
        for row_spans in per_spans:
            for s in row_spans:
                work_score[s.work_id] = max(work_score.get(s.work_id, -1.0), 2.0 + s.words / 1000)
        ranking = sorted(work_score, key=lambda w: (-work_score[w], w))
        shares, _, _, _, decided = attribute_chunks(per_chunk, threshold, per_spans)
        scored.append(Scored(case, ranking, {s["work_id"]: s["share_ppm"] / 1e6 for s in shares},
                             _best(per_chunk), decided))
    return scored


def metrics(scored: list[Scored]) -> dict[str, dict[str, float]]:
    by_level: dict[str, list[Scored]] = {}
    for s in scored:
        by_level.setdefault(s.case.level, []).append(s)
    report: dict[str, dict[str, float]] = {}
    for level, items in by_level.items():
        row: dict[str, float] = {"cases": len(items)}
        planted_items = [s for s in items if s.case.planted]
        if planted_items:
            for k in (1, 5):
                row[f"recall@{k}"] = float(np.mean([
                    len(set(s.case.planted) & set(s.ranking[:k])) / min(k, len(s.case.planted))
                    for s in planted_items]))
            row["mrr"] = float(np.mean([
                next((1 / (i + 1) for i, w in enumerate(s.ranking[:5]) if w in s.case.planted), 0.0)
                for s in planted_items]))
            hits = sum(len(set(s.case.planted) & set(s.attributed)) for s in planted_items)
            row["attributed_recall"] = hits / sum(len(s.case.planted) for s in planted_items)
            attributed = sum(len(s.attributed) for s in planted_items)
            row["attributed_precision"] = hits / attributed if attributed else 0.0
            row["l1_share_error"] = float(np.mean([_l1(s) for s in planted_items]))
        else:
            row["false_attribution_rate"] = sum(bool(s.attributed) for s in items) / len(items)
        report[level] = row
    return report


def _l1(s: Scored) -> float:
    total = sum(s.attributed.values())
    attributed = {w: v / total for w, v in s.attributed.items()} if total else {}
    works = set(attributed) | set(s.case.planted)
    return sum(abs(attributed.get(w, 0.0) - s.case.planted.get(w, 0.0)) for w in works)


def upper_bound(false: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound of a rate seen ``false`` times in ``n``."""
    lo, hi = false / n, 1.0
    for _ in range(60):  # bisection on P(X <= false | n, p) = 1 - confidence
        mid = (lo + hi) / 2
        tail = sum(math.comb(n, k) * mid**k * (1 - mid) ** (n - k) for k in range(false + 1))
        lo, hi = (mid, hi) if tail > 1 - confidence else (lo, mid)
    return hi


def calibrate(best_scores: list[float], target: float, confidence: float = 0.95) -> float:
    """The lowest threshold (3 decimals) at which the false-attribution rate on unrelated
    text is at most ``target`` with ``confidence``: the number of calibration outputs
    allowed at or above it is the largest k whose Clopper-Pearson upper bound stays
    within the target (k = 0 for 300-450 outputs at 1%: the threshold clears them all)."""
    n = len(best_scores)
    allowed = 0
    while allowed + 1 < n and upper_bound(allowed + 1, n, confidence) <= target:
        allowed += 1
    if upper_bound(0, n, confidence) > target:
        allowed = 0  # too few outputs to certify the target: clear every one of them
    ordered = sorted(best_scores, reverse=True)
    # at most `allowed` outputs may reach it: clear the (allowed + 1)-th highest score (all if none may)
    return math.floor(ordered[max(allowed, 0)] * 1000 + 1e-6) / 1000 + 0.001


def sweep(scored: list[Scored], thresholds: list[float]) -> list[dict[str, float]]:
    """The trade-off, re-scored at each threshold: the share of cases that would be
    attributed (recall on paraphrases, false attribution on near misses and unrelated)."""
    by_level = {level: [s for s in scored if s.case.level == level]
                for level in ("paraphrase", "near_miss", "unrelated")}
    rows = []
    for t in thresholds:
        row: dict[str, float] = {"threshold": t}
        for level, items in by_level.items():
            if items:
                row[level] = sum(s.best_score >= t or "verbatim" in s.decided_by for s in items) / len(items)
        rows.append(row)
    return rows


def check_targets(report: dict[str, dict[str, float]]) -> list[tuple[str, str, float, str, float, bool]]:
    results = []
    for level, (metric, op, bound) in TARGETS.items():
        value = report.get(level, {}).get(metric)
        if value is None:
            continue
        ok = value >= bound if op == ">=" else value <= bound
        results.append((level, metric, value, op, bound, ok))
    return results


def stored_threshold(model_name: str, revision: str) -> float | None:
    """The calibrated threshold for this model and revision, if one is stored."""
    if not CALIBRATION_FILE.exists():
        return None
    entry = json.loads(CALIBRATION_FILE.read_text()).get(model_name)
    if not entry or entry.get("revision") != revision:
        return None
    return float(entry["threshold"])


def resolve_threshold(configured: float, model_name: str, revision: str) -> tuple[float, str]:
    """(threshold, where it came from): an explicit TRIBUTARY_SIMILARITY_THRESHOLD wins,
    then the calibration stored for this model revision, then the built-in default."""
    if "TRIBUTARY_SIMILARITY_THRESHOLD" in os.environ:
        return configured, "TRIBUTARY_SIMILARITY_THRESHOLD"
    calibrated = stored_threshold(model_name, revision)
    if calibrated is not None:
        return calibrated, f"calibrated ({CALIBRATION_FILE.name})"
    return configured, "default (not calibrated for this model revision)"


def run(embedder: Embedder, threshold: float | None, target: float, do_calibrate: bool, top_k: int = 5,
        log: Any = print) -> dict[str, Any]:
    catalog = load_catalog()
    with tempfile.TemporaryDirectory(prefix="tributary-eval-") as tmp:
        index = EdgeIndex(os.path.join(tmp, "shard"), dim=embedder.dim)
        log(f"indexing the sample catalog ({len(catalog['works'])} works) with {embedder.name} ...")
        spans = load_catalog_into(catalog, embedder, index)
        calibration_pool, _ = unrelated_pools()
        calib_texts = unrelated_outputs(calibration_pool, 1_000, seed=99)
        log(f"scoring {len(calib_texts)} unrelated calibration outputs ...")
        calib_best = [_best(pc) for pc, _ in score_texts(calib_texts, embedder, index, spans, top_k)]
        calibrated = calibrate(calib_best, target)
        source = "given"
        if threshold is None:
            threshold, source = calibrated, f"calibrated now for {target:.0%} false attribution"
        cases = build()
        log(f"evaluating {len(cases)} labelled cases at threshold {threshold:.3f} ({source}) ...")
        scored = evaluate(cases, embedder, index, spans, threshold, top_k)
        index.close()
    report = metrics(scored)
    result = {
        "model_name": embedder.name, "model_revision": embedder.revision, "threshold": threshold,
        "threshold_source": source, "calibrated_threshold": calibrated, "target_false_attribution": target,
        "calibration_outputs": len(calib_texts),
        "calibration_best_score_p50_p99": [float(np.percentile(calib_best, 50)), float(np.percentile(calib_best, 99))],
        "levels": report,
        "sweep": sweep(scored, [round(threshold, 3)] + [round(0.40 + 0.05 * i, 2) for i in range(8)]),
        "targets": [
            {"level": lv, "metric": m, "value": v, "bound": f"{op} {b}", "met": ok}
            for lv, m, v, op, b, ok in check_targets(report)],
    }
    if do_calibrate:
        stored = json.loads(CALIBRATION_FILE.read_text()) if CALIBRATION_FILE.exists() else {}
        stored[embedder.name] = {
            "revision": embedder.revision, "threshold": calibrated, "target_false_attribution": target,
            "unrelated_outputs": len(calib_texts), "calibrated_at": datetime.now(UTC).date().isoformat(),
            "how": "tributary eval --calibrate",
        }
        CALIBRATION_FILE.write_text(json.dumps(stored, indent=2, sort_keys=True) + "\n")
        log(f"stored threshold {calibrated:.3f} for {embedder.name} ({embedder.revision}) in {CALIBRATION_FILE}")
    return result


def render(result: dict[str, Any]) -> str:
    columns = ["cases", "recall@1", "recall@5", "mrr", "attributed_recall", "attributed_precision",
               "l1_share_error", "false_attribution_rate"]
    lines = [f"model {result['model_name']} ({result['model_revision']}), threshold {result['threshold']:.3f} "
             f"({result['threshold_source']}); calibrated threshold for "
             f"{result['target_false_attribution']:.0%} false attribution: {result['calibrated_threshold']:.3f}",
             "", f"{'level':<12}" + "".join(f"{c:>22}" for c in columns)]
    order = ["verbatim", "light_edit", "paraphrase", "mixed", "near_miss", "unrelated"]
    for level in order:
        row = result["levels"].get(level)
        if row is None:
            continue
        cells = [f"{row[c]:.0f}" if c == "cases" else (f"{row[c]:.3f}" if c in row else "-") for c in columns]
        lines.append(f"{level:<12}" + "".join(f"{c:>22}" for c in cells))
    lines += ["", "trade-off (share of cases attributed at each threshold):",
              f"{'threshold':>10}{'paraphrase recall':>20}{'near-miss FA':>16}{'unrelated FA':>16}"]
    for row in result["sweep"]:
        lines.append(f"{row['threshold']:>10.3f}{row.get('paraphrase', 0):>20.3f}{row.get('near_miss', 0):>16.3f}"
                     f"{row.get('unrelated', 0):>16.3f}")
    lines.append("")
    for t in result["targets"]:
        lines.append(f"target {t['level']:<11} {t['metric']:<24} {t['value']:.3f} {t['bound']:<8} "
                     f"{'met' if t['met'] else 'NOT MET'}")
    return "\n".join(lines)
