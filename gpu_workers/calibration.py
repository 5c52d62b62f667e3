"""Catalog-calibrated decisions: a semantic match counts only if it would be rare among
texts that are *not* derived from the matched work, measured on this catalog.

A threshold is a property of the catalog's genre, not of the model: on novels unrelated
text scores 0.2-0.4, on technical documentation 0.6 and more. So the bar is derived
from the registered catalog itself, leave one work out: every sampled catalog unit (a
sentence or a window of two) is matched against the catalog *without* its own work and
without the works that copy it (a shared passage is real copying, not chance), exactly
as an output unit is matched. Those scores are same-genre, mostly same-topic text that
is not derived from what it matches: the null distribution. An optional corpus of
unrelated same-genre text (``TRIBUTARY_CALIBRATION_CORPUS``) adds to it.

The decision has two parts, both read off the null: the best work's score must reach
``threshold`` and beat the runner-up work by ``margin`` (the margin is what separates a
paraphrase of one work from independent text about a topic several works cover). They
are chosen so that at most ``target_unit_rate`` of null units pass, with a one-sided
Clopper-Pearson bound whose sample size is discounted for units of one work being alike
(clustered by document); the threshold is the null's ``THRESHOLD_QUANTILE`` (no
output whose best score is typical of unrelated text is paid on margin alone) and the
margin is then the smallest that keeps the rate. The calibration is versioned by a digest
of its inputs and figures; every attribution names the version it used.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

TARGET_UNIT_RATE = 0.005  # null sentences passing (chosen on the technical set's dev split: same-topic FA 2.7%)
THRESHOLD_QUANTILE = 0.95  # the bar is above 95% of the null's best scores
TRIM_WORKS = 0.0  # share of works (highest pass rates) left out of the null's pass rate; 0: none
MAX_QUERIES = 3_000  # null units sampled (deterministically) from the catalog
TWIN_COSINE = 0.97  # two catalog units this alike are the same text (a work registered twice)
TWIN_GAP = 0.02  # ... and a twin scores within this of the top
COMMON_TWINS = 3  # a passage with this many twins is boilerplate (as a shingle in > 3 works is)
MIN_NULL = 50  # fewer null units than this cannot calibrate: the fallback applies
FALLBACK = (0.80, 0.10)  # (threshold, margin) for a catalog too small to calibrate on


@dataclass(frozen=True)
class Calibration:
    threshold: float
    margin: float
    version: str = "fixed"
    source: str = "fixed"
    null_units: int = 0
    null_works: int = 0
    unit_rate: float = 0.0  # null units that pass
    unit_rate_upper: float = 1.0  # its clustered one-sided 95% upper bound
    catalog_version: int = 0

    def accepts(self, score: float, margin: float) -> bool:
        return round(score, 6) >= self.threshold and round(margin, 6) >= self.margin

    def describe(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_description(cls, d: dict[str, Any]) -> Calibration:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def _cdf(x: int, n: int, p: float) -> float:
    """P(X <= x) for X ~ Binomial(n, p), summed in log space (no overflow at any n)."""
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if x >= n else 0.0
    lp, lq, ln = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    return min(1.0, sum(math.exp(ln - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * lp + (n - k) * lq)
                        for k in range(min(x, n) + 1)))


def upper_bound(false: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound of a rate seen ``false`` times in ``n``."""
    if n <= 0:
        return 1.0
    if false >= n:
        return 1.0
    lo, hi = false / n, 1.0
    for _ in range(50):  # bisection on P(X <= false | n, p) = 1 - confidence
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _cdf(false, n, mid) > 1 - confidence else (lo, mid)
    return hi


def lower_bound(hits: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson lower bound: P(X >= hits | p) = 1 - confidence."""
    if n <= 0 or hits <= 0:
        return 0.0
    lo, hi = 0.0, hits / n
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if 1 - _cdf(hits - 1, n, mid) < 1 - confidence else (lo, mid)
    return lo


def design_effect(hits: list[bool], clusters: list[str]) -> float:
    """Kish's design effect 1 + (m - 1) * ICC for a 0/1 outcome clustered by document
    (ICC from the one-way ANOVA estimator, floored at 0)."""
    groups: dict[str, list[float]] = {}
    for h, c in zip(hits, clusters, strict=True):
        groups.setdefault(c, []).append(float(h))
    n, k = len(hits), len(groups)
    if k < 2 or n <= k:
        return 1.0
    mean = sum(hits) / n
    ssb = sum(len(g) * (sum(g) / len(g) - mean) ** 2 for g in groups.values())
    ssw = sum(sum((x - sum(g) / len(g)) ** 2 for x in g) for g in groups.values())
    msb, msw = ssb / (k - 1), ssw / (n - k)
    m0 = (n - sum(len(g) ** 2 for g in groups.values()) / n) / (k - 1)
    denom = msb + (m0 - 1) * msw
    icc = max(0.0, (msb - msw) / denom) if denom > 0 else 0.0
    m_bar = n / k
    return 1.0 + (m_bar - 1.0) * icc


def clustered_interval(hits: list[bool], clusters: list[str], confidence: float = 0.95,
                       lower: bool = True) -> tuple[float, float, float]:
    """(rate, lower, upper): one-sided Clopper-Pearson bounds on the effective sample size
    n / deff (Kish), so outcomes of one document count as less than independent ones."""
    n = len(hits)
    if n == 0:
        return 0.0, 0.0, 1.0
    x = sum(hits)
    deff = design_effect(hits, clusters)
    n_eff = max(1, round(n / deff))
    x_eff = round(x / deff)
    return (x / n, lower_bound(min(x_eff, n_eff), n_eff, confidence) if lower else 0.0,
            upper_bound(min(x_eff, n_eff), n_eff, confidence))


@dataclass
class NullSample:
    best: np.ndarray  # best score per null unit
    runner: np.ndarray  # runner-up work's score
    works: list[str]  # the work each null unit was taken from (its cluster)

    def passing(self, threshold: float, margin: float) -> np.ndarray:
        return (np.round(self.best, 6) >= threshold) & (np.round(self.best - self.runner, 6) >= margin)


def trimmed_rate(hits: np.ndarray, works: list[str], trim: float = 0.1) -> float:
    """The pass rate of the null as a trimmed mean over works: each work's own rate, the
    ``trim`` share of works with the highest rates left out. A family of registered works
    that restate one another (urlparse / urlsplit, nice / getpriority) passes far more often
    than independent text does; it would otherwise set the margin for the whole catalog."""
    index = {w: i for i, w in enumerate(sorted(set(works)))}
    ids = np.array([index[w] for w in works])
    per_work = np.bincount(ids, weights=hits.astype(float), minlength=len(index)) / np.bincount(ids, minlength=len(index))
    keep = len(per_work) - math.floor(trim * len(per_work))
    return float(np.sort(per_work)[:keep].mean()) if keep > 0 else 0.0


def fit(null: NullSample, target: float = TARGET_UNIT_RATE, quantile: float = THRESHOLD_QUANTILE,
        catalog_version: int = 0, source: str = "catalog leave-one-work-out", trim: float = TRIM_WORKS
        ) -> Calibration:
    """(threshold, margin) from the null: threshold at ``quantile`` of the best scores,
    then the smallest margin (3 decimals) at which the null's pass rate, a trimmed mean
    over works (:func:`trimmed_rate`; ``trim`` 0 by default: the plain rate), is at most
    ``target``. The observed rate and its clustered one-sided 95% upper bound are reported
    with it."""
    n = len(null.best)
    if n < MIN_NULL:
        threshold, margin = FALLBACK
        return Calibration(threshold, margin, _version(catalog_version, threshold, margin, n), "fallback: catalog "
                           f"too small to calibrate ({n} null units < {MIN_NULL})", n, len(set(null.works)),
                           catalog_version=catalog_version)
    threshold = math.ceil(float(np.quantile(null.best, quantile)) * 1000) / 1000
    chosen = 1.0
    for m in range(0, 1001):
        hits = null.passing(threshold, m / 1000)
        if (trimmed_rate(hits, null.works, trim) if trim else float(hits.mean())) <= target:
            chosen = m / 1000
            break
    hits = null.passing(threshold, chosen)
    _, _, upper = clustered_interval(list(hits), null.works, lower=False)
    if trim:
        source += f", pass rate trimmed of the {trim:.0%} most similar works"
    return Calibration(threshold, round(chosen, 3), _version(catalog_version, threshold, chosen, n, trim), source, n,
                       len(set(null.works)), round(float(hits.mean()), 6), round(upper, 6), catalog_version)


def _version(catalog_version: int, threshold: float, margin: float, n: int, trim: float = 0.0) -> str:
    raw = f"{catalog_version}:{threshold:.3f}:{margin:.3f}:{n}".encode() + (f":{trim}".encode() if trim else b"")
    return f"cal-{catalog_version}-{hashlib.sha256(raw).hexdigest()[:10]}"


def sample_rows(ids: list[str], limit: int = MAX_QUERIES) -> list[int]:
    """A deterministic sample of row numbers (by a digest of the unit id, not its order)."""
    keyed = sorted(range(len(ids)), key=lambda i: hashlib.blake2b(ids[i].encode(), digest_size=8).digest())
    return sorted(keyed[:limit])


KEEP_WORKS = 32  # per null query, the best works kept besides its twins (the rest are bounded by the last kept score)


def kept(top: list[Any]) -> list[Any]:
    """``top`` (best first) cut to KEEP_WORKS entries besides the twins of the query."""
    return top[:KEEP_WORKS + sum(1 for t in top if t[0] >= TWIN_COSINE)]

Top = list[tuple[float, str, int]]  # (score, work, catalog row of the work's best unit), best first


def top_works(vectors: np.ndarray, works: list[str], queries: np.ndarray, keep: int | None = None,
              block: int = 256) -> list[tuple[Top, bool]]:
    """Per query: the best unit of each of its ``keep`` best works (exact float64 cosine
    over every unit of ``vectors``), and whether that is every work."""
    keep = KEEP_WORKS if keep is None else keep
    work_ids = sorted(set(works))
    if not work_ids or len(queries) == 0:
        return [([], True) for _ in range(len(queries))]
    index_of = {w: i for i, w in enumerate(work_ids)}
    col_work = np.array([index_of[w] for w in works], dtype=np.int64)
    order = np.argsort(col_work, kind="stable")
    sorted_vecs = vectors[order].astype(np.float64)
    starts = np.searchsorted(col_work[order], np.arange(len(work_ids)))
    ends = np.append(starts[1:], len(order))
    out: list[tuple[Top, bool]] = []
    for b in range(0, len(queries), block):
        q = queries[b:b + block].astype(np.float64)
        q /= np.clip(np.linalg.norm(q, axis=1, keepdims=True), 1e-12, None)
        scores = q @ sorted_vecs.T  # (B, N)
        per_work = np.maximum.reduceat(scores, starts, axis=1)  # (B, works)
        for j in range(len(q)):
            # twins of the query (the same passage) are left out of the null later: keep that
            # many more, so ``keep`` works remain to find the best and the runner-up among
            k = min(keep + int((per_work[j] >= TWIN_COSINE).sum()), len(work_ids))
            chosen = np.argpartition(-per_work[j], k - 1)[:k] if k < len(work_ids) else np.arange(len(work_ids))
            top: Top = []
            for w in chosen:
                lo, hi = starts[w], ends[w]
                top.append((round(float(per_work[j, w]), 9), work_ids[w], int(order[lo + int(np.argmax(scores[j, lo:hi]))])))
            top.sort(key=lambda t: (-t[0], t[1]))
            out.append((top, k == len(work_ids)))
    return out


def derive(top: Sequence[tuple[float, str, Any]], complete: bool, skip: set[str], unit_vector: Callable[[Any], np.ndarray],
           twin: float = TWIN_COSINE) -> tuple[float, float] | None:
    """(best, runner-up) of one null query from its best works: its own work and the works
    in ``skip`` (those that copy it) left out, and any work holding the same passage (a
    twin of the query: shared text, not a null observation); a runner-up whose best unit is
    a twin of the best one is tied with it, not a rival; three such twins make the passage
    boilerplate (it pays nobody). Works beyond the kept list are bounded by its last score."""
    rest = [t for t in top if t[1] not in skip and t[0] < twin]
    if not rest:
        return None
    b1, _, top_row = rest[0]
    top_vec = unit_vector(top_row).astype(np.float64)
    b2, twins = -1.0, 0
    for score, _, row in rest[1:]:
        if b1 - score <= TWIN_GAP and float(top_vec @ unit_vector(row).astype(np.float64)) >= twin:
            twins += 1
            continue
        b2 = score
        break
    if b2 < 0 and not complete and top:
        b2 = top[-1][0]  # the runner-up is among the works not kept: at most the last kept score
    if twins >= COMMON_TWINS:
        b2 = b1
    return b1, max(b2, 0.0)


def null_sample(
    vectors: np.ndarray, works: list[str], queries: np.ndarray, query_works: list[str],
    excluded: Callable[[int], set[str]], twin: float = TWIN_COSINE,
) -> NullSample:
    """Leave-one-work-out: each query unit against every unit of every other work, except
    the works ``excluded(i)`` names for query ``i`` (those that copy it).
    ``vectors``: the catalog's units (N, d), L2-normalised; exact scores in float64."""
    best, runner, origin = [], [], []
    for i, (top, complete) in enumerate(top_works(vectors, works, queries)):
        got = derive(top, complete, excluded(i) | {query_works[i]}, lambda r: vectors[r], twin)
        if got is not None:
            best.append(got[0])
            runner.append(got[1])
            origin.append(query_works[i])
    return NullSample(np.array(best), np.array(runner), origin)
