"""The registered catalog as one attribution process holds it: every unit's vector and
text, the verbatim span index, exact rescoring of the vector index's candidates, and the
catalog's own calibration.

The vector index (Qdrant) finds candidates fast and approximately; the decision is made
on exact scores: each candidate unit is rescored here in float64 against the stored
vector, rounded to 6 decimals, so the same output and catalog give the same scores
whatever the index's graph, the batch, or the machine (``explain`` recomputes shares
from them bit for bit).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpu_workers import calibration as cal
from gpu_workers.index import ChunkRecord, Match, VectorIndex
from gpu_workers.scoring import SCORE_DECIMALS, Candidate, UnitMatch
from gpu_workers.segment import sentences, words
from gpu_workers.spans import SpanIndex


@dataclass
class _NullQuery:
    """One calibration query (a catalog sentence, or a corpus sentence) and its best works."""

    work: str
    text: str
    vector: np.ndarray
    top: list[tuple[float, str, str]]  # (score, work, unit id of the work's best unit), best first
    complete: bool  # ``top`` holds every work
    copied_by: set[str] = field(default_factory=set)


@dataclass
class CatalogUnits:
    spans: SpanIndex = field(default_factory=SpanIndex)
    _units: dict[str, tuple[str, str, str, np.ndarray]] = field(default_factory=dict)  # id -> work, holder, text, vec
    _windows: set[str] = field(default_factory=set)  # units that are windows of sentences
    _ids: list[str] = field(default_factory=list)
    _row: dict[str, int] = field(default_factory=dict)
    _matrix: np.ndarray | None = None
    _calibration: cal.Calibration | None = None
    version: int = 0
    fixed: tuple[float, float] | None = None  # an operator's (threshold, margin), bypassing calibration
    trim: float = 0.0  # see calibration.trimmed_rate: for catalogs of many works that restate one another
    _null: dict[str, _NullQuery] = field(default_factory=dict)  # the calibration's queries, kept between changes
    _changed_works: set[str] = field(default_factory=set)  # works changed since the null was last brought up to date

    def add(self, rec: ChunkRecord, text: str, kind: str = "sentence") -> None:
        """``kind``: "sentence" or "window" (two neighbouring sentences); outputs are matched
        by sentence, so only sentences are the calibration's null queries."""
        if kind == "window":
            self._windows.add(rec.chunk_id)
        else:
            self._windows.discard(rec.chunk_id)
        v = np.asarray(rec.vector, dtype=np.float32)
        norm = float(np.linalg.norm(v))
        self._units[rec.chunk_id] = (rec.work_id, rec.holder_id, text, v / norm if norm else v)
        self.spans.add(rec.chunk_id, rec.work_id, rec.holder_id, text)
        self.version = max(self.version, rec.catalog_version)
        self._changed(rec.work_id)

    def add_record(self, rec: dict[str, Any]) -> ChunkRecord:
        """A ``catalog-chunks`` record (as the indexer publishes it); returns it for the index."""
        record = ChunkRecord(rec["chunk_id"], rec["work_id"], rec["holder_id"], int(rec["chunk_index"]),
                             int(rec["catalog_version"]), rec["vector"])
        self.add(record, rec.get("text") or "", rec.get("unit", "window"))  # no unit: a pre-sentence chunk
        return record

    def remove(self, chunk_id: str) -> None:
        old = self._units.pop(chunk_id, None)
        if old is not None:
            self._windows.discard(chunk_id)
            self.spans.remove(chunk_id)
            self._changed(old[0])

    def _changed(self, work_id: str | None = None) -> None:
        self._matrix = None
        self._calibration = None
        if work_id is not None:
            self._changed_works.add(work_id)

    def __len__(self) -> int:
        return len(self._units)

    def _build(self) -> np.ndarray:
        if self._matrix is None:
            self._ids = sorted(self._units)
            self._row = {c: i for i, c in enumerate(self._ids)}
            dim = next(iter(self._units.values()))[3].shape[0] if self._units else 1
            self._matrix = (np.vstack([self._units[c][3] for c in self._ids]) if self._ids
                            else np.zeros((0, dim), dtype=np.float32))
        return self._matrix

    def has(self, chunk_id: str) -> bool:
        return chunk_id in self._units

    def text(self, chunk_id: str) -> str:
        return self._units[chunk_id][2]

    def work_of(self, chunk_id: str) -> str:
        return self._units[chunk_id][0]

    def rescore(self, queries: np.ndarray, found: list[list[Match]], top_k: int) -> list[UnitMatch]:
        """Exact per-work best scores of each query unit among the index's candidates."""
        matrix = self._build()
        out: list[UnitMatch] = []
        for q, cands in zip(queries, found, strict=True):
            rows = [self._row[m.chunk_id] for m in cands if m.chunk_id in self._row]
            if not rows:
                out.append(UnitMatch(()))
                continue
            q64 = q.astype(np.float64)
            norm = float(np.linalg.norm(q64))
            q64 = q64 / norm if norm else q64
            vecs = matrix[rows].astype(np.float64)
            scores = np.round(vecs @ q64, SCORE_DECIMALS)
            per_work: dict[tuple[str, str], tuple[float, str, int]] = {}
            for r, s in zip(rows, scores, strict=True):
                chunk = self._ids[r]
                work, holder = self._units[chunk][0], self._units[chunk][1]
                old = per_work.get((work, holder))
                if old is None or s > old[0] or (s == old[0] and chunk < old[1]):  # ties: the smaller unit id
                    per_work[(work, holder)] = (float(s), chunk, r)
            ranked = sorted(per_work.items(), key=lambda kv: (-kv[1][0], kv[0][0], kv[0][1]))
            (_, _), (top_score, _, top_row) = ranked[0]
            top_vec = matrix[top_row].astype(np.float64)
            candidates = []
            for n, ((work, holder), (score, chunk, r)) in enumerate(ranked):
                twin = n > 0 and top_score - score <= cal.TWIN_GAP and float(
                    matrix[r].astype(np.float64) @ top_vec) >= cal.TWIN_COSINE
                candidates.append(Candidate(work, holder, score, chunk, twin))
            bound = float(scores.min()) if len(rows) >= top_k else 0.0
            out.append(UnitMatch(tuple(candidates), max(bound, 0.0)))
        return out

    def calibration(self) -> cal.Calibration:
        """This catalog's calibration (recomputed after the catalog changed)."""
        if self._calibration is None:
            self._calibration = self._calibrate()
        return self._calibration

    def _calibrate(self) -> cal.Calibration:
        if self.fixed is not None:
            t, m = self.fixed
            return cal.Calibration(t, m, f"fixed-{t:.3f}-{m:.3f}", "fixed by the operator, not calibrated",
                                   catalog_version=self.version)
        null = self._null_sample()
        corpus = sum(1 for q in self._null if q.startswith("corpus:"))
        source = "catalog leave-one-work-out" + (f" + {corpus} corpus sentences" if corpus else "")
        return cal.fit(null, catalog_version=self.version, source=source, trim=self.trim)

    def _null_sample(self) -> cal.NullSample:
        """The null, brought up to date incrementally: a query is computed against the whole
        catalog once, then only against the works added or changed since; a query whose own
        work changed, or whose kept best works lose one, is computed again. The result is
        the same as computing everything from scratch (a test checks it)."""
        matrix = self._build()
        works = [self._units[c][0] for c in self._ids]
        sentence_ids = [c for c in self._ids if c not in self._windows]
        sample = {sentence_ids[i] for i in cal.sample_rows(sentence_ids)}
        sample |= {q for q in self._null if q.startswith("corpus:")}
        changed, self._changed_works = self._changed_works, set()
        for qid, q in list(self._null.items()):
            stale = [t for t in q.top if t[1] in changed]
            if qid not in sample or q.work in changed or (stale and not q.complete):
                del self._null[qid]
            elif stale:
                q.top = [t for t in q.top if t[1] not in changed]
        present = changed & set(works)
        kept = sorted(q for q in self._null if changed)
        if present and kept:
            cols = [i for i, w in enumerate(works) if w in present]
            tops = cal.top_works(matrix[cols], [works[i] for i in cols], np.vstack([self._null[q].vector for q in kept]))
            for qid, (top, _) in zip(kept, tops, strict=True):
                q = self._null[qid]
                merged = sorted(q.top + [(sc, w, self._ids[cols[r]]) for sc, w, r in top], key=lambda t: (-t[0], t[1]))
                q.top = cal.kept(merged)
                q.complete = q.complete and len(q.top) == len(merged)
        missing = sorted(sample - set(self._null))
        self._add_queries({q: (self._units[q][0], self._units[q][2], self._units[q][3]) for q in missing})
        for qid in kept:  # which works copy each earlier query (8-word spans) may have changed
            self._null[qid].copied_by = self._copiers(self._null[qid].work, self._null[qid].text)
        best, runner, origin = [], [], []
        for qid in sorted(self._null):
            q = self._null[qid]
            got = cal.derive(q.top, q.complete, q.copied_by | {q.work}, lambda u: self._units[u][3])
            if got is not None:
                best.append(got[0])
                runner.append(got[1])
                origin.append(q.work)
        return cal.NullSample(np.array(best), np.array(runner), origin)

    def _add_queries(self, queries: dict[str, tuple[str, str, np.ndarray]]) -> None:
        """New null queries (id -> own work, text, vector), scored against the whole catalog."""
        if not queries:
            return
        matrix = self._build()
        works = [self._units[c][0] for c in self._ids]
        tops = cal.top_works(matrix, works, np.vstack([v for _, _, v in queries.values()]))
        for (qid, (work, text, vec)), (top, complete) in zip(queries.items(), tops, strict=True):
            self._null[qid] = _NullQuery(work, text, vec, [(sc, w, self._ids[r]) for sc, w, r in top], complete,
                                         self._copiers(work, text))

    def _copiers(self, work: str, text: str) -> set[str]:
        """The other works that copy ``text`` (8-word spans): a shared passage is no null observation."""
        return {c.work_id for c in self.spans.copied(words(text), exclude=frozenset({work}))}

    def set_corpus(self, sentences: list[tuple[np.ndarray, str, str]]) -> None:
        """(vector, document, text) of unrelated same-genre sentences for the null."""
        self._calibration = None
        for qid in [q for q in self._null if q.startswith("corpus:")]:
            del self._null[qid]
        self._add_queries({f"corpus:{n:06d}": (f"corpus:{doc}", text, vec)
                           for n, (vec, doc, text) in enumerate(sentences)})


def load_corpus(path: str | os.PathLike[str], embedder: Any, limit: int = cal.MAX_QUERIES
                ) -> list[tuple[np.ndarray, str, str]]:
    """A calibration corpus file (JSON Lines ``{"text", "document"}``) as (vector,
    document, sentence) rows, at most ``limit`` sentences (a deterministic sample)."""
    rows: list[tuple[str, str]] = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                text, doc = item["text"], str(item.get("document") or f"line-{n}")
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{n}: expected a JSON object with a 'text' field ({exc})") from None
            rows += [(doc, s.text) for s in sentences(str(text))]
    keys = [f"{doc}\x00{n}" for n, (doc, _) in enumerate(rows)]
    chosen = [rows[i] for i in cal.sample_rows(keys, limit)]
    vectors = embedder.encode([t for _, t in chosen]) if chosen else np.zeros((0, 1), dtype=np.float32)
    return [(v, doc, text) for v, (doc, text) in zip(vectors, chosen, strict=True)]


def index_works(works: list[dict[str, Any]], embedder: Any, index: VectorIndex,
                log: Callable[[str], None] | None = None) -> CatalogUnits:
    """Works segmented and embedded as the indexer does, into ``index`` and a new
    in-memory catalog (what a worker holds after reading ``catalog-chunks``)."""
    from gpu_workers.indexer import chunk_records

    catalog = CatalogUnits()
    for n, work in enumerate(works, 1):
        records = chunk_records({k: work[k] for k in ("work_id", "holder_id", "text")}, n, embedder)
        index.upsert([catalog.add_record(r) for r in records])
        if log is not None and n % 25 == 0:
            log(f"  {n}/{len(works)} works, {len(catalog)} units")
    return catalog
