"""Matches -> shares. Pure: the same matches, spans and threshold give the same shares.

Each output chunk carries an equal slice of the pool (parts-per-million, split
exactly), decided by two signals:

1. verbatim spans (:mod:`gpu_workers.spans`): if the chunk copies a sentence or more
   word for word from one or more works, its slice goes to those works in proportion
   to the words copied. Certain, so no threshold applies;
2. otherwise embeddings: the best catalog match at or above the calibrated threshold
   takes the slice. Matches from other works within ``TIE_EPSILON`` of the best (a
   work registered twice, shared boilerplate) share it equally: a near-duplicate is
   paid once, never twice, and never by an arbitrary pick.

A chunk with neither stays unattributed (escrow). The evidence lists both signals per
output chunk and which one decided.
"""

from __future__ import annotations

from typing import Any

from gpu_workers.index import Match
from gpu_workers.spans import MIN_SPAN_WORDS, SHINGLE_WORDS, SpanMatch
from tributary.ids import attribution_id
from tributary.money import SHARE_DENOMINATOR, split_pool

SCORE_DECIMALS = 6
TIE_EPSILON = 0.005


def _score(m: Match) -> float:
    return round(m.score, SCORE_DECIMALS)


def best_match(matches: list[Match], threshold: float) -> Match | None:
    eligible = [m for m in matches if _score(m) >= threshold]
    if not eligible:
        return None
    # highest score wins; equal scores go to the smaller chunk id (deterministic)
    return min(eligible, key=lambda m: (-_score(m), m.chunk_id))


def winning_matches(matches: list[Match], threshold: float) -> list[Match]:
    """The best match, plus the best match of every other work within TIE_EPSILON of it."""
    top = best_match(matches, threshold)
    if top is None:
        return []
    winners = {(top.work_id, top.holder_id): top}
    for m in sorted(matches, key=lambda m: (-_score(m), m.chunk_id)):
        key = (m.work_id, m.holder_id)
        if key not in winners and _score(m) >= threshold and _score(top) - _score(m) <= TIE_EPSILON:
            winners[key] = m
    return list(winners.values())


def _key(work_id: str, holder_id: str) -> str:
    return f"{work_id}\x00{holder_id}"


def shares_from_matches(
    per_chunk: list[list[Match]], threshold: float, per_chunk_spans: list[list[SpanMatch]] | None = None,
) -> tuple[list[dict[str, Any]], int, list[dict[str, Any]]]:
    """(shares, unattributed_ppm, evidence matches) for one output."""
    shares, unattributed, evidence, _, _ = attribute_chunks(per_chunk, threshold, per_chunk_spans)
    return shares, unattributed, evidence


def attribute_chunks(
    per_chunk: list[list[Match]], threshold: float, per_chunk_spans: list[list[SpanMatch]] | None = None,
) -> tuple[list[dict[str, Any]], int, list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """(shares, unattributed_ppm, embedding evidence, verbatim evidence, method per chunk)."""
    if not per_chunk:
        return [], SHARE_DENOMINATOR, [], [], []
    slices = split_pool(SHARE_DENOMINATOR, {f"{i:06d}": 1 for i in range(len(per_chunk))})
    by_work: dict[str, int] = {}
    evidence: list[dict[str, Any]] = []
    verbatim: list[dict[str, Any]] = []
    methods: list[str] = []
    for i, matches in enumerate(per_chunk):
        spans = per_chunk_spans[i] if per_chunk_spans else []
        winners = [] if spans else winning_matches(matches, threshold)
        for m in matches:
            if _score(m) >= threshold:
                evidence.append({
                    "output_chunk": i, "chunk_id": m.chunk_id, "work_id": m.work_id,
                    "holder_id": m.holder_id, "chunk_index": m.chunk_index,
                    "score": _score(m), "chosen": any(m is w for w in winners),
                })
        for span in spans:
            verbatim.append({"output_chunk": i, "work_id": span.work_id, "holder_id": span.holder_id,
                             "words": span.words, "chunk_ids": list(span.chunk_ids)})
        if spans:
            weights = {_key(s.work_id, s.holder_id): s.words for s in spans}
            methods.append("verbatim")
        elif winners:
            weights = {_key(w.work_id, w.holder_id): 1 for w in winners}
            methods.append("embedding")
        else:
            methods.append("none")
            continue
        for key, ppm in split_pool(slices[f"{i:06d}"], weights).items():
            by_work[key] = by_work.get(key, 0) + ppm
    shares: list[dict[str, Any]] = []
    for key, ppm in sorted(by_work.items()):
        work_id, holder_id = key.split("\x00")
        if ppm:
            shares.append({"work_id": work_id, "holder_id": holder_id, "share_ppm": ppm})
    unattributed = SHARE_DENOMINATOR - sum(ppm for ppm in by_work.values())
    return shares, unattributed, evidence, verbatim, methods


def build_attribution(
    request: dict[str, Any],
    per_chunk: list[list[Match]],
    *,
    threshold: float,
    model_name: str,
    model_revision: str,
    catalog_version: int,
    per_chunk_spans: list[list[SpanMatch]] | None = None,
) -> dict[str, Any]:
    shares, unattributed, evidence, verbatim, methods = attribute_chunks(per_chunk, threshold, per_chunk_spans)
    return {
        "schema_version": 1,
        "attribution_id": attribution_id(request["event_id"], catalog_version, model_revision),
        "event_id": request["event_id"],
        "occurred_at": request["occurred_at"],
        "provider": request["provider"],
        "model": request["model"],
        "contract": request["contract"],
        "pool_micros": request["pool_micros"],
        "shares_ppm": shares,
        "unattributed_ppm": unattributed,
        "evidence": {
            "model_name": model_name,
            "model_revision": model_revision,
            "catalog_version": catalog_version,
            "threshold": threshold,
            "output_chunks": len(per_chunk),
            "matches": evidence,
            "verbatim": verbatim,
            "decided_by": methods,
            "span_rule": {"shingle_words": SHINGLE_WORDS, "min_words": MIN_SPAN_WORDS},
            "tie_epsilon": TIE_EPSILON,
        },
    }
