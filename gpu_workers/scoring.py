"""Matches -> word-exact shares. Pure: the same inputs give the same shares, bit for bit.

An output's pool is apportioned by its **words**. Every word is decided once:

1. **certain** (copied): a word inside a span copied word for word from a work
   (:mod:`gpu_workers.spans`, 8 words or more, boilerplate excluded) goes to that work.
   A sentence copied for at least half its words is a copy with a few words changed:
   its other words go to the same work, and the sentence is flagged ``altered`` (a
   quote whose meaning may have been changed is still derived use, and the holder
   should see it);
2. **probable** (semantic): the other words of a sentence go to the work whose unit
   (a sentence or a window of two) best matches the sentence's own unit, or a window
   holding it, only if the match beats the catalog's calibrated bar *and* clears the
   runner-up work by the calibrated margin (:mod:`gpu_workers.calibration`). A window
   lends its decision only to a sentence whose own best match is the same work, so
   filler next to a paraphrase is not paid;
3. anything else stays **unattributed** (escrow).

A word copied from, or a sentence matched equally by, near-identical works (a work
registered twice) is split between them: paid once, never twice, never by an
arbitrary pick. The pool is split by largest remainder over the word weights, with the
unattributed words as one more account, so shares always sum to 1,000,000 ppm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpu_workers.calibration import COMMON_TWINS, Calibration
from gpu_workers.segment import Segment, Unit
from gpu_workers.spans import MIN_SPAN_WORDS, SHINGLE_WORDS, Copied
from tributary.ids import attribution_id
from tributary.money import SHARE_DENOMINATOR, split_pool

SCORE_DECIMALS = 6
COPIED_SENTENCE = 0.5  # a sentence with at least this fraction of its words copied is a copy
QUOTE_CHARS = 300  # evidence quotes a decided sentence and the work's passage up to this length
WORD_PARTS = 720_720  # a word split between up to 16 works stays an integer weight
CERTAIN, PROBABLE = "certain", "probable"


@dataclass(frozen=True)
class Candidate:
    """A work's best match for one output unit (exact cosine, rounded)."""

    work_id: str
    holder_id: str
    score: float
    chunk_id: str  # the work's best-matching catalog unit
    twin: bool = False  # near-identical to the top candidate's unit: tied with it, not a runner-up


@dataclass(frozen=True)
class UnitMatch:
    """The exact per-work best scores of one output unit, best first, and an upper bound
    on the score of any work not listed (the weakest candidate the index returned)."""

    candidates: tuple[Candidate, ...]
    unlisted_bound: float = 0.0
    grounded: bool = False  # the top work is one the output says it was grounded on: no margin needed

    @property
    def top(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    def runner_up(self) -> float:
        rest = [c.score for c in self.candidates[1:] if not c.twin]
        return max(rest + [self.unlisted_bound]) if self.candidates else 0.0

    def winners(self) -> list[Candidate]:
        top = self.top
        return [top, *[c for c in self.candidates[1:] if c.twin]] if top else []

    def passes(self, calibration: Calibration) -> bool:
        top = self.top
        if top is None:
            return False
        if sum(c.twin for c in self.candidates) >= COMMON_TWINS:
            return False  # boilerplate: the same passage in many works belongs to none of them
        if self.grounded:
            return calibration.accepts(top.score, calibration.margin)
        return calibration.accepts(top.score, top.score - self.runner_up())

    def grounded_on(self, works: frozenset[str], calibration: Calibration) -> UnitMatch:
        """Weigh the works the output was grounded on (its RAG sources) first: the best of
        them that reaches the bar and is within the margin of the top work wins the unit,
        without having to beat the others by the margin (the grounding is that evidence)."""
        top = self.top
        if not works or top is None:
            return self
        for c in self.candidates:
            if c.work_id in works and round(c.score, SCORE_DECIMALS) >= calibration.threshold and (
                    round(top.score - c.score, SCORE_DECIMALS) < calibration.margin or c is top):
                rest = tuple(Candidate(o.work_id, o.holder_id, o.score, o.chunk_id) for o in self.candidates
                             if o is not c)
                return UnitMatch((Candidate(c.work_id, c.holder_id, c.score, c.chunk_id), *rest),
                                 self.unlisted_bound, grounded=True)
        return self


def _key(work_id: str, holder_id: str, tier: str) -> str:
    return f"{work_id}\x00{holder_id}\x00{tier}"


def decide(
    segments: list[Segment], units: list[Unit], matches: list[UnitMatch], copied: list[Copied],
    calibration: Calibration, grounded: frozenset[str] = frozenset(),
) -> tuple[dict[str, int], list[dict[str, Any]], set[int]]:
    """(word weights per work and tier, one evidence row per sentence, the sentences whose
    words a semantic match could decide). ``grounded``: the works the output names as its
    sources (RAG context), weighed first."""
    matches = [m.grounded_on(grounded, calibration) for m in matches]
    by_position: dict[int, list[Copied]] = {}
    for c in copied:
        for p in c.positions:
            by_position.setdefault(p, []).append(c)
    own: dict[int, UnitMatch] = {}
    holding: dict[int, list[UnitMatch]] = {}
    for unit, match in zip(units, matches, strict=True):
        if unit.first_sentence == unit.last_sentence:
            own[unit.first_sentence] = match
        for i in range(unit.first_sentence, unit.last_sentence + 1):
            holding.setdefault(i, []).append(match)
    weights: dict[str, int] = {}

    def credit(works: list[tuple[str, str]], n_words: int, tier: str) -> None:
        for work_id, holder_id in works:
            key = _key(work_id, holder_id, tier)
            weights[key] = weights.get(key, 0) + n_words * WORD_PARTS // len(works)

    rows: list[dict[str, Any]] = []
    semantic: set[int] = set()
    for i, seg in enumerate(segments):
        row: dict[str, Any] = {"sentence": i, "words": seg.n_words, "method": "none"}
        per_work: dict[tuple[str, str], int] = {}
        uncovered = 0
        for p in seg.word_range:
            sources = by_position.get(p)
            if not sources:
                uncovered += 1
                continue
            works = sorted({(c.work_id, c.holder_id) for c in sources})
            for w in works:
                per_work[w] = per_work.get(w, 0) + 1
            credit(works, 1, CERTAIN)
        if per_work:
            row["copied"] = [{"work_id": w, "holder_id": h, "words": n} for (w, h), n in sorted(per_work.items())]
        best_sem = _semantic(i, own.get(i), holding.get(i, []), calibration)
        if best_sem is not None:
            top = best_sem.top
            assert top is not None
            row.update({"score": top.score, "runner_up": round(best_sem.runner_up(), SCORE_DECIMALS),
                        "chunk_id": top.chunk_id})
            if best_sem.grounded:
                row["grounded"] = True
        copied_words = seg.n_words - uncovered
        if uncovered and not (per_work and copied_words >= COPIED_SENTENCE * seg.n_words):
            semantic.add(i)
        if per_work and copied_words >= COPIED_SENTENCE * seg.n_words:
            most = max(per_work.values())
            owners = [w for w, n in sorted(per_work.items()) if n == most]
            row.update({"method": "copied", "tier": CERTAIN, "works": [w for w, _ in owners],
                        "altered": uncovered > 0})
            if uncovered:
                credit(owners, uncovered, CERTAIN)
        elif best_sem is not None and uncovered:
            winners = [(c.work_id, c.holder_id) for c in best_sem.winners()]
            row.update({"method": "semantic" if not per_work else "copied+semantic", "tier": PROBABLE,
                        "works": sorted(w for w, _ in winners)})
            credit(sorted(winners), uncovered, PROBABLE)
        elif per_work:
            row.update({"method": "copied", "tier": CERTAIN, "works": sorted(w for w, _ in per_work),
                        "altered": False})
        if seg.text and row["method"] != "none":
            # what a reviewer or the holder reads beside the work's passage (the portal
            # highlights the copied words: ``copied`` spans over ``sentences`` word ranges)
            row["text"] = quote(seg.text)
        rows.append(row)
    return weights, rows, semantic


def quote(text: str) -> str:
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS - 1].rstrip() + "\u2026"


def _semantic(i: int, own: UnitMatch | None, holding: list[UnitMatch], calibration: Calibration) -> UnitMatch | None:
    """The best passing unit for sentence ``i``: its own, or a window whose top work is
    also its own unit's top work."""
    own_top = own.top.work_id if own is not None and own.top is not None else None
    best: UnitMatch | None = None
    for m in holding:
        if not m.passes(calibration):
            continue
        if m is not own and (m.top is None or m.top.work_id != own_top):
            continue
        if best is None or (m.top.score, -len(m.candidates)) > (best.top.score, -len(best.candidates)):  # type: ignore[union-attr]
            best = m
    return best


def shares_from_weights(weights: dict[str, int], total_words: int) -> tuple[list[dict[str, Any]], int]:
    """(shares, unattributed_ppm): the pool split by words, unattributed words to escrow."""
    if total_words <= 0:
        return [], SHARE_DENOMINATOR
    attributed = sum(weights.values())
    rest = max(total_words * WORD_PARTS - attributed, 0)
    split = split_pool(SHARE_DENOMINATOR, {**weights, "\x7funattributed": rest})
    shares = []
    for key in sorted(weights):
        ppm = split[key]
        if ppm:
            work_id, holder_id, tier = key.split("\x00")
            shares.append({"work_id": work_id, "holder_id": holder_id, "share_ppm": ppm, "tier": tier,
                           "words": round(weights[key] / WORD_PARTS, 3)})
    return shares, split["\x7funattributed"]


def attribute(
    segments: list[Segment], units: list[Unit], matches: list[UnitMatch], copied: list[Copied],
    calibration: Calibration, grounded: frozenset[str] = frozenset(),
) -> tuple[list[dict[str, Any]], int, list[dict[str, Any]]]:
    """(shares, unattributed_ppm, one evidence row per sentence) for one output."""
    weights, rows, _ = decide(segments, units, matches, copied, calibration, grounded)
    shares, unattributed = shares_from_weights(weights, sum(s.n_words for s in segments))
    return shares, unattributed, rows


def build_attribution(
    request: dict[str, Any],
    segments: list[Segment],
    units: list[Unit],
    matches: list[UnitMatch],
    copied: list[Copied],
    *,
    calibration: Calibration,
    model_name: str,
    model_revision: str,
    catalog_version: int,
) -> dict[str, Any]:
    grounded = frozenset(request.get("grounded_on") or ())
    weights, rows, semantic = decide(segments, units, matches, copied, calibration, grounded)
    shares, unattributed = shares_from_weights(weights, sum(s.n_words for s in segments))
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
            "threshold": calibration.threshold,
            "margin": calibration.margin,
            "calibration": calibration.describe(),
            "output_words": sum(s.n_words for s in segments),
            "sentences": [[s.first_word, s.n_words] for s in segments],
            "matches": [r for r in rows if r["method"] != "none"],
            "units": [_unit_evidence(u, m, calibration, grounded)
                      for u, m in _deciding(units, matches, calibration, grounded, semantic)],
            "copied": [{"work_id": c.work_id, "holder_id": c.holder_id, "spans": _runs(c.positions),
                        "chunk_ids": list(c.chunk_ids)} for c in copied],
            "span_rule": {"shingle_words": SHINGLE_WORDS, "min_words": MIN_SPAN_WORDS},
            "grounded_on": sorted(grounded),
        },
    }


def _deciding(units: list[Unit], matches: list[UnitMatch], calibration: Calibration,
              grounded: frozenset[str], semantic: set[int]) -> list[tuple[Unit, UnitMatch]]:
    """The units a decision can depend on: those that pass (a unit that does not pass is
    never chosen) and hold a sentence a semantic match could decide (copied sentences are
    decided without them), and the own unit of every sentence a passing window holds (a
    window lends its decision only to a sentence whose own best work agrees)."""
    passing = [m.grounded_on(grounded, calibration).passes(calibration)
               and any(i in semantic for i in range(u.first_sentence, u.last_sentence + 1))
               for u, m in zip(units, matches, strict=True)]
    lent = {i for u, ok in zip(units, passing, strict=True) if ok and u.kind == "window"
            for i in range(u.first_sentence, u.last_sentence + 1)}
    return [(u, m) for u, m, ok in zip(units, matches, passing, strict=True)
            if m.candidates and (ok or (u.kind == "sentence" and u.first_sentence in lent))]


def _unit_evidence(unit: Unit, match: UnitMatch, calibration: Calibration, grounded: frozenset[str]) -> dict[str, Any]:
    """Enough of each unit's match to recompute every decision (``tributary explain``): the
    top work, its twins, the runner-up, and the grounded works' candidates; only the top of
    a unit that cannot reach the bar (a window still asks which work it points at)."""
    keep: list[Candidate] = []
    runner_seen = False
    twins = 0
    for n, c in enumerate(match.candidates):
        twins += c.twin
        if n == 0 or (c.twin and twins <= COMMON_TWINS) or c.work_id in grounded or (not runner_seen and not c.twin):
            keep.append(c)
            runner_seen = runner_seen or (n > 0 and not c.twin)
        if match.candidates[0].score < calibration.threshold:
            break
    return {"sentences": [unit.first_sentence, unit.last_sentence], "unlisted_bound": match.unlisted_bound,
            "candidates": [[c.work_id, c.holder_id, c.score, c.chunk_id, c.twin] for c in keep]}


def _runs(positions: frozenset[int]) -> list[list[int]]:
    """Sorted positions as [start, end) runs."""
    runs: list[list[int]] = []
    for p in sorted(positions):
        if runs and runs[-1][1] == p:
            runs[-1][1] = p + 1
        else:
            runs.append([p, p + 1])
    return runs


def recompute(evidence: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """The shares again from an attribution's evidence alone: what ``explain`` checks."""
    segments = [Segment("", first, n) for first, n in evidence["sentences"]]
    units, matches = [], []
    for u in evidence["units"]:
        units.append(Unit("", u["sentences"][0], u["sentences"][1]))
        matches.append(UnitMatch(tuple(Candidate(w, h, score, chunk, twin) for w, h, score, chunk, twin
                                       in u["candidates"]), u["unlisted_bound"]))
    copied = [Copied(c["work_id"], c["holder_id"], frozenset(p for a, b in c["spans"] for p in range(a, b)),
                     tuple(c["chunk_ids"])) for c in evidence["copied"]]
    calibration = Calibration.from_description(evidence["calibration"])
    grounded = frozenset(evidence.get("grounded_on") or ())
    shares, unattributed, _ = attribute(segments, units, matches, copied, calibration, grounded)
    return shares, unattributed
