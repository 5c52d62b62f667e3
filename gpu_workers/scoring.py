"""Matches -> shares. Pure: the same matches and threshold give the same shares.

Each output chunk carries an equal slice of the pool (parts-per-million, split
exactly). A chunk whose best catalog match scores at or above the threshold gives
its slice to that match's work; otherwise its slice stays unattributed (escrow).
"""

from __future__ import annotations

from typing import Any

from gpu_workers.index import Match
from tributary.ids import attribution_id
from tributary.money import SHARE_DENOMINATOR, split_pool

SCORE_DECIMALS = 6


def best_match(matches: list[Match], threshold: float) -> Match | None:
    eligible = [m for m in matches if round(m.score, SCORE_DECIMALS) >= threshold]
    if not eligible:
        return None
    # highest score wins; equal scores go to the smaller chunk id (deterministic)
    return min(eligible, key=lambda m: (-round(m.score, SCORE_DECIMALS), m.chunk_id))


def shares_from_matches(
    per_chunk: list[list[Match]], threshold: float
) -> tuple[list[dict[str, Any]], int, list[dict[str, Any]]]:
    """(shares, unattributed_ppm, evidence matches) for one output."""
    if not per_chunk:
        return [], SHARE_DENOMINATOR, []
    slices = split_pool(SHARE_DENOMINATOR, {f"{i:06d}": 1 for i in range(len(per_chunk))})
    by_work: dict[tuple[str, str], int] = {}
    evidence = []
    for i, matches in enumerate(per_chunk):
        winner = best_match(matches, threshold)
        for m in matches:
            if round(m.score, SCORE_DECIMALS) >= threshold:
                evidence.append({
                    "output_chunk": i, "chunk_id": m.chunk_id, "work_id": m.work_id,
                    "holder_id": m.holder_id, "chunk_index": m.chunk_index,
                    "score": round(m.score, SCORE_DECIMALS), "chosen": m is winner,
                })
        if winner is not None:
            key = (winner.work_id, winner.holder_id)
            by_work[key] = by_work.get(key, 0) + slices[f"{i:06d}"]
    shares = [
        {"work_id": w, "holder_id": h, "share_ppm": ppm} for (w, h), ppm in sorted(by_work.items())
    ]
    unattributed = SHARE_DENOMINATOR - sum(by_work.values())
    return shares, unattributed, evidence


def build_attribution(
    request: dict[str, Any],
    per_chunk: list[list[Match]],
    *,
    threshold: float,
    model_name: str,
    model_revision: str,
    catalog_version: int,
) -> dict[str, Any]:
    shares, unattributed, evidence = shares_from_matches(per_chunk, threshold)
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
        },
    }
