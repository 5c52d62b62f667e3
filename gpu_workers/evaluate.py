"""``tributary eval``: attribution quality on a labelled set, measured through the
worker's own code.

A catalog is segmented and embedded exactly as the indexer does, loaded into the
embedded qdrant-edge shard and the in-memory catalog (exact vectors, verbatim spans),
calibrated from itself (leave one work out, :mod:`gpu_workers.calibration`), and every
case goes through :func:`gpu_workers.worker.output_units`, the model, the batch search,
exact rescoring and :func:`gpu_workers.scoring.attribute`: the figures are the pipeline's.

Input (``--catalog`` / ``--cases``, JSON Lines, documented in the README):

- catalog: ``{"work_id", "holder_id", "text"}`` per line (``title`` optional);
- cases: ``{"case_id", "level", "text", "planted": {work_id: fraction of the output's
  words derived from it}, "avoid": [work_id, ...], "split": "dev"|"heldout", "cluster"}``.
  Levels with planted works: ``verbatim``, ``light_edit``, ``paraphrase``, ``multi``,
  ``altered`` (a quote with a few words changed, meaning altered: derived use, reported
  separately); with none: ``same_topic`` (independent text on the topics of ``avoid``)
  and ``unrelated`` (same-genre text on other topics).

Per level: attributed recall (planted works that get any share), precision, false
attribution (outputs with nothing planted that pay anyone), and the share error over
the whole pool (L1 between the attributed split, unattributed part included, and the
planted one: 0 is perfect, 2 is all money to the wrong place), each rate with a 95%
interval clustered by source document.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gpu_workers import calibration as cal
from gpu_workers.catalog import CatalogUnits, index_works, load_corpus
from gpu_workers.embedder import Embedder
from gpu_workers.index import EdgeIndex
from gpu_workers.scoring import UnitMatch, attribute
from gpu_workers.spans import Copied
from gpu_workers.worker import Output, match_units, output_units, output_vectors

EVALSETS = Path(__file__).resolve().parent / "data" / "evalsets"
PLANTED_LEVELS = ("verbatim", "light_edit", "paraphrase", "multi", "altered")
NULL_LEVELS = ("same_topic", "unrelated")
TARGETS = {  # level -> (metric, comparison, bound)
    "unrelated": ("false_attribution", "<=", 0.01),
    "same_topic": ("false_attribution", "<=", 0.05),
    "verbatim": ("attributed_recall", ">=", 0.97),
    "light_edit": ("attributed_recall", ">=", 0.95),
    "multi": ("attributed_recall", ">=", 0.97),
    "paraphrase": ("attributed_recall", ">=", 0.55),
    "verbatim:l1": ("l1_whole_pool", "<=", 0.15),
    "multi:l1": ("l1_whole_pool", "<=", 0.15),
}
HELDOUT_TARGETS = {"unrelated": 0.02, "same_topic": 0.08}


class EvalInputError(ValueError):
    pass


@dataclass(frozen=True)
class EvalCase:
    case_id: str
    level: str
    text: str
    planted: dict[str, float] = field(default_factory=dict)  # work_id -> fraction of the output's words
    avoid: tuple[str, ...] = ()
    split: str = "dev"
    cluster: str = ""  # the source document, for clustered intervals

    @property
    def group(self) -> str:
        return self.cluster or (sorted(self.planted)[0] if self.planted else (self.avoid[0] if self.avoid
                                                                                else self.case_id))


def _jsonl(path: Path, what: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) per non-empty line."""
    rows = []
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except OSError as exc:
        raise EvalInputError(f"{what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise EvalInputError(f"{what} {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalInputError(f"{path}:{n}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise EvalInputError(f"{path}:{n}: expected a JSON object per line")
        rows.append((n, row))
    return rows


CATALOG_FIELDS = {"work_id", "holder_id", "text", "title", "source", "license"}
CASE_FIELDS = {"case_id", "level", "text", "planted", "avoid", "split", "cluster", "note", "source", "source_passage"}


def _unknown(row: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(row) - allowed)
    if extra:
        raise EvalInputError(f"{where}: unknown field {extra[0]!r} (fields: {', '.join(sorted(allowed))})")


def load_catalog_file(path: Path) -> list[dict[str, Any]]:
    rows = _jsonl(path, "catalog")
    works = [w for _, w in rows]
    seen: set[str] = set()
    for n, w in rows:
        where = f"{path}:{n}"
        _unknown(w, CATALOG_FIELDS, where)
        for key in ("work_id", "holder_id", "text"):
            if not isinstance(w.get(key), str) or not w[key].strip():
                raise EvalInputError(f"{where}: field {key!r} must be a non-empty string")
        if w["work_id"] in seen:
            raise EvalInputError(f"{where}: work_id {w['work_id']!r} appears twice")
        seen.add(w["work_id"])
    if not works:
        raise EvalInputError(f"{path}: no works")
    return works


def load_cases_file(path: Path, work_ids: set[str]) -> list[EvalCase]:
    levels = PLANTED_LEVELS + NULL_LEVELS
    cases = []
    ids: set[str] = set()
    for n, c in _jsonl(path, "cases"):
        where = f"{path}:{n} (case {c.get('case_id', '?')})"
        _unknown(c, CASE_FIELDS, where)
        case_id = str(c.get("case_id") or f"line-{n}")
        if case_id in ids:
            raise EvalInputError(f"{where}: case_id {case_id!r} appears twice")
        ids.add(case_id)
        if not isinstance(c.get("text"), str) or not c["text"].strip():
            raise EvalInputError(f"{where}: field 'text' must be a non-empty string")
        if c.get("level") not in levels:
            raise EvalInputError(f"{where}: field 'level' must be one of {', '.join(levels)}")
        planted = c.get("planted") or {}
        if not isinstance(planted, dict) or any(not isinstance(v, int | float) or not 0 < v <= 1
                                                for v in planted.values()):
            raise EvalInputError(f"{where}: field 'planted' must map work ids to fractions in (0, 1]")
        if sum(planted.values()) > 1.000001:
            raise EvalInputError(f"{where}: planted fractions add up to more than 1")
        unknown = sorted(set(planted) - work_ids)
        if unknown:
            raise EvalInputError(f"{where}: planted work {unknown[0]!r} is not in the catalog")
        avoid = c.get("avoid") or []
        if not isinstance(avoid, list) or any(not isinstance(a, str) for a in avoid):
            raise EvalInputError(f"{where}: field 'avoid' must be a list of work ids")
        unknown = sorted(set(avoid) - work_ids)
        if unknown:
            raise EvalInputError(f"{where}: avoided work {unknown[0]!r} is not in the catalog")
        if (c["level"] in PLANTED_LEVELS) != bool(planted):
            raise EvalInputError(f"{where}: level {c['level']!r} " + (
                "needs planted works" if c["level"] in PLANTED_LEVELS else "must not have planted works"))
        split = c.get("split", "dev")
        if split not in ("dev", "heldout"):
            raise EvalInputError(f"{where}: field 'split' must be dev or heldout")
        cases.append(EvalCase(case_id, c["level"], c["text"], {k: float(v) for k, v in planted.items()},
                              tuple(avoid), split, str(c.get("cluster") or "")))
    if not cases:
        raise EvalInputError(f"{path}: no cases")
    return cases


def builtin_sets() -> list[str]:
    return ["novels", *sorted(p.name for p in EVALSETS.iterdir() if (p / "cases.jsonl").exists())]


def load_set(name: str) -> tuple[list[dict[str, Any]], list[EvalCase]]:
    if name == "novels":
        from gpu_workers.evalset import build
        from tributary.sample import load_catalog

        return load_catalog()["works"], build()
    folder = EVALSETS / name
    if not (folder / "cases.jsonl").exists():
        raise EvalInputError(f"no built-in evaluation set {name!r} (have: {', '.join(builtin_sets())})")
    works = load_catalog_file(folder / "catalog.jsonl")
    return works, load_cases_file(folder / "cases.jsonl", {w["work_id"] for w in works})


@dataclass
class Prepared:
    """Everything the model and the index say about a set; decisions are re-run on it."""

    catalog: CatalogUnits
    cases: list[EvalCase]
    outputs: list[Output]
    matches: list[list[UnitMatch]]
    copied: list[list[Copied]]


def prepare(works: list[dict[str, Any]], cases: list[EvalCase], embedder: Embedder, top_k: int = 24,
            log: Callable[[str], None] = print, batch: int = 64) -> Prepared:
    with tempfile.TemporaryDirectory(prefix="tributary-eval-") as tmp:
        index = EdgeIndex(os.path.join(tmp, "shard"), dim=embedder.dim)
        log(f"indexing {len(works)} works with {embedder.name} ...")
        catalog = index_works(works, embedder, index, log)
        index.shard.optimize()
        log(f"scoring {len(cases)} cases ...")
        outputs: list[Output] = []
        matches: list[list[UnitMatch]] = []
        for start in range(0, len(cases), batch):
            requests = [{"output": {"text": c.text}} for c in cases[start:start + batch]]
            outs = output_units(requests)
            vectors, _ = output_vectors(requests, embedder, outs)
            outputs += outs
            matches += match_units(outs, vectors, index, catalog, top_k)
            if (start // batch) % 5 == 4:
                log(f"  {start + len(requests)}/{len(cases)} cases")
        index.close()
    copied = [catalog.spans.copied(o.tokens) for o in outputs]
    return Prepared(catalog, cases, outputs, matches, copied)


@dataclass
class Scored:
    case: EvalCase
    shares: dict[str, float]  # work id -> share of the whole pool
    unattributed: float
    ranking: list[str]


def decide(p: Prepared, calibration: cal.Calibration) -> list[Scored]:
    out = []
    for case, o, m, c in zip(p.cases, p.outputs, p.matches, p.copied, strict=True):
        shares, unattributed, _ = attribute(o.segments, o.units, m, c, calibration)
        by_work: dict[str, float] = {}
        for s in shares:
            by_work[s["work_id"]] = by_work.get(s["work_id"], 0.0) + s["share_ppm"] / 1e6
        best: dict[str, float] = {}
        for um in m:
            for cand in um.candidates:
                best[cand.work_id] = max(best.get(cand.work_id, -1.0), cand.score)
        for cp in c:
            best[cp.work_id] = 2.0 + cp.words / 1000
        out.append(Scored(case, by_work, unattributed / 1e6, sorted(best, key=lambda w: (-best[w], w))))
    return out


def _main_work(case: EvalCase) -> str:
    return max(sorted(case.planted), key=lambda w: case.planted[w])


def l1_whole_pool(s: Scored) -> float:
    works = set(s.shares) | set(s.case.planted)
    planted_rest = 1.0 - sum(s.case.planted.values())
    return sum(abs(s.shares.get(w, 0.0) - s.case.planted.get(w, 0.0)) for w in works) + abs(
        s.unattributed - planted_rest)


def _rate(hits: list[bool], clusters: list[str]) -> dict[str, float]:
    rate, lo, hi = cal.clustered_interval(hits, clusters)
    return {"value": rate, "low": lo, "high": hi, "n": len(hits)}


def metrics(scored: list[Scored]) -> dict[str, dict[str, Any]]:
    report: dict[str, dict[str, Any]] = {}
    for level in PLANTED_LEVELS + NULL_LEVELS:
        items = [s for s in scored if s.case.level == level]
        if not items:
            continue
        row: dict[str, Any] = {"cases": len(items)}
        if level in PLANTED_LEVELS:
            hits, clusters = [], []
            for s in items:
                for w in s.case.planted:
                    hits.append(w in s.shares)
                    clusters.append(s.case.group)
            row["attributed_recall"] = _rate(hits, clusters)
            paid = sum(len(s.shares) for s in items)
            row["attributed_precision"] = (sum(len(set(s.shares) & set(s.case.planted)) for s in items) / paid
                                           if paid else 0.0)
            row["recall@1"] = float(np.mean([s.ranking[:1] == [_main_work(s.case)] for s in items]))
            errors = [l1_whole_pool(s) for s in items]
            row["l1_whole_pool"] = {"value": float(np.mean(errors)), "p90": float(np.percentile(errors, 90))}
            row["pool_to_planted"] = float(np.mean([sum(s.shares.get(w, 0) for w in s.case.planted)
                                                    for s in items]))
            row["pool_to_others"] = float(np.mean([sum(v for w, v in s.shares.items() if w not in s.case.planted)
                                                   for s in items]))
        else:
            row["false_attribution"] = _rate([bool(s.shares) for s in items], [s.case.group for s in items])
            row["pool_to_others"] = float(np.mean([sum(s.shares.values()) for s in items]))
            if level == "same_topic":
                row["paid_an_avoided_work"] = float(np.mean([bool(set(s.case.avoid) & set(s.shares))
                                                             for s in items]))
        report[level] = row
    return report


def check_targets(report: dict[str, dict[str, Any]], heldout: bool = False) -> list[dict[str, Any]]:
    results = []
    for key, (metric, op, bound) in TARGETS.items():
        level = key.split(":")[0]
        if heldout and level in HELDOUT_TARGETS:
            bound = HELDOUT_TARGETS[level]
        cell = report.get(level, {}).get(metric)
        if cell is None:
            continue
        value = cell["value"]
        ok = value >= bound if op == ">=" else value <= bound
        results.append({"level": level, "metric": metric, "value": value, "bound": f"{op} {bound}", "met": ok})
    return results


def trade_off(p: Prepared, calibration: cal.Calibration, margins: list[float]) -> list[dict[str, float]]:
    """Paraphrase recall against false attribution as the margin moves (threshold kept)."""
    rows = []
    for m in margins:
        c = cal.Calibration(calibration.threshold, m, "sweep", "sweep")
        report = metrics(decide(p, c))
        row: dict[str, float] = {"margin": m}
        for lv in ("paraphrase", "same_topic", "unrelated"):
            if lv in report:
                row[lv] = (report[lv].get("attributed_recall") or report[lv]["false_attribution"])["value"]
        rows.append(row)
    return rows


def evaluate(p: Prepared, calibration: cal.Calibration) -> dict[str, Any]:
    scored = decide(p, calibration)
    splits = {"all": scored, "dev": [s for s in scored if s.case.split == "dev"],
              "heldout": [s for s in scored if s.case.split == "heldout"]}
    out: dict[str, Any] = {"calibration": calibration.describe(), "splits": {},
                           "cases": [{"case_id": s.case.case_id, "level": s.case.level, "split": s.case.split,
                                      "planted": s.case.planted, "paid": {w: round(v, 6) for w, v in s.shares.items()},
                                      "unattributed": round(s.unattributed, 6),
                                      "l1_whole_pool": round(l1_whole_pool(s), 6)} for s in scored]}
    for name, items in splits.items():
        if items:
            report = metrics(items)
            out["splits"][name] = {"levels": report, "targets": check_targets(report, heldout=name == "heldout")}
    grid = sorted({round(calibration.margin, 3), *(round(0.05 * k, 3) for k in range(0, 9))})
    out["trade_off"] = trade_off(p, calibration, grid)
    return out


def run(embedder: Embedder, *, sets: list[str] | None = None, catalog_file: Path | None = None,
        cases_file: Path | None = None, fixed: tuple[float, float] | None = None, top_k: int = 24,
        corpus_file: Path | None = None, trim: float = 0.0, log: Callable[[str], None] = print) -> dict[str, Any]:
    jobs: list[tuple[str, list[dict[str, Any]], list[EvalCase]]] = []
    if catalog_file is not None:
        works = load_catalog_file(catalog_file)
        if cases_file is None:
            raise EvalInputError("--catalog needs --cases")
        jobs.append((catalog_file.stem, works, load_cases_file(cases_file, {w["work_id"] for w in works})))
    for name in sets if sets is not None else ([] if catalog_file else builtin_sets()):
        jobs.append((name, *load_set(name)))
    result: dict[str, Any] = {"model_name": embedder.name, "model_revision": embedder.revision, "sets": {}}
    for name, works, cases in jobs:
        log(f"== {name}: {len(works)} works, {len(cases)} cases")
        p = prepare(works, cases, embedder, top_k, log)
        p.catalog.trim = trim
        if fixed is not None:
            p.catalog.fixed = fixed
        elif corpus_file is not None:
            try:
                p.catalog.set_corpus(load_corpus(corpus_file, embedder))
            except (OSError, ValueError) as exc:
                raise EvalInputError(f"--calibration-corpus: {exc}") from None
        calibration = p.catalog.calibration()
        log(f"calibration {calibration.version}: threshold {calibration.threshold:.3f}, margin "
            f"{calibration.margin:.3f} ({calibration.source}, {calibration.null_units} null units)")
        result["sets"][name] = {"works": len(works), "units": len(p.catalog), **evaluate(p, calibration)}
    return result


def _cell(row: dict[str, Any], key: str) -> str:
    v = row.get(key)
    if v is None:
        return "-"
    if isinstance(v, dict):
        return f"{v['value']:.3f} [{v['low']:.2f},{v['high']:.2f}]" if "low" in v else f"{v['value']:.3f}"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def render(result: dict[str, Any]) -> str:
    columns = ["cases", "attributed_recall", "false_attribution", "l1_whole_pool", "pool_to_planted",
               "pool_to_others"]
    lines = [f"model {result['model_name']} ({result['model_revision']})"]
    for name, res in result["sets"].items():
        c = res["calibration"]
        lines += ["", f"set {name}: {res['works']} works, {res['units']} units; calibration {c['version']}: "
                      f"threshold {c['threshold']:.3f}, margin {c['margin']:.3f} ({c['source']}; "
                      f"{c['null_units']} null units from {c['null_works']} works, "
                      f"{c['unit_rate']:.4f} pass, upper {c['unit_rate_upper']:.4f})"]
        for split, rep in res["splits"].items():
            lines += ["", f"  [{split}]  {'level':<11}" + "".join(f"{h:>24}" for h in columns)]
            for level in PLANTED_LEVELS + NULL_LEVELS:
                row = rep["levels"].get(level)
                if row is not None:
                    lines.append(f"  {'':<9}{level:<11}" + "".join(f"{_cell(row, h):>24}" for h in columns))
            for t in rep["targets"]:
                lines.append(f"    target {t['level']:<11} {t['metric']:<18} {t['value']:.3f} {t['bound']:<7} "
                             f"{'met' if t['met'] else 'NOT MET'}")
        lines += ["", "  trade-off (margin: paraphrase recall / same-topic FA / unrelated FA):"]
        for row in res["trade_off"]:
            lines.append(f"    {row['margin']:.3f}: {row.get('paraphrase', 0):.3f} / {row.get('same_topic', 0):.3f}"
                         f" / {row.get('unrelated', 0):.3f}")
    return "\n".join(lines)
