"""``tributary review``: the probable tier, decided by a person.

A probable attribution (a semantic match, nothing copied) is paid at the contract's
``probable_weight_bps`` and the rest is held in ``escrow:review``. ``review list``
shows each undecided one with the matched sentence pairs (the output's sentence beside
the work's passage, the score, the runner-up work's score and the calibrated bar);
``review accept|reject`` publishes the decision as a correction on the ``corrections``
topic, and the accrue stage posts it as reversals and new accruals, never edits:
accept releases the held part to the holder, reject moves the whole probable share
(paid and held) to ``escrow:unattributed``. The first decision on an (event, work)
stands; deciding again is refused here and ignored downstream.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from tributary import kafka
from tributary.errors import UserError
from tributary.reports import Params, Query
from tributary.topics import Topic


def reviewed(run: Query, event_ids: list[str]) -> dict[tuple[str, str], str]:
    """(event, work) -> decision, for the events given."""
    if not event_ids:
        return {}
    _, rows = run("""SELECT event_id, work_id, decision FROM corrections FINAL
                     WHERE kind = 'review' AND has({ids:Array(String)}, event_id)""", {"ids": event_ids})
    return {(r[0], r[1]): r[2] for r in rows}


def pending(run: Query, limit: int = 20, event_id: str | None = None) -> list[dict[str, Any]]:
    """Undecided probable shares, oldest first, with their evidence."""
    where = "position(shares, '\"probable\"') > 0"
    params: Params = {"limit": limit * 4 + 20}
    if event_id:
        where += " AND event_id = {event:String}"
        params["event"] = event_id
    _, rows = run(f"""SELECT event_id, attribution_id, occurred_at, pool_micros, shares, evidence
                      FROM attributions FINAL WHERE {where}
                      ORDER BY event_id IN (SELECT event_id FROM review_requests FINAL) DESC, occurred_at, event_id
                      LIMIT {{limit:UInt32}}""", params)
    decided = reviewed(run, [r[0] for r in rows])
    disputes = disputed(run, [r[0] for r in rows])
    out: list[dict[str, Any]] = []
    for event, attribution, occurred, pool, shares_json, evidence_json in rows:
        evidence = json.loads(evidence_json or "{}")
        for share in json.loads(shares_json):
            if share.get("tier") != "probable" or (event, share["work_id"]) in decided:
                continue
            pairs = [{"output": m.get("text", ""), "work": (m.get("work_texts") or {}).get(share["work_id"]) or m.get("work_text", ""), "score": m.get("score"),
                      "runner_up": m.get("runner_up"), "words": m["words"]}
                     for m in evidence.get("matches", [])
                     if m.get("tier") == "probable" and share["work_id"] in m.get("works", [])]
            out.append({"event_id": event, "attribution_id": attribution, "occurred_at": str(occurred),
                        "work_id": share["work_id"], "holder_id": share["holder_id"],
                        "share_ppm": share["share_ppm"], "pool_micros": int(pool),
                        "calibration": (evidence.get("calibration") or {}).get("version"),
                        "threshold": evidence.get("threshold"), "margin": evidence.get("margin"), "pairs": pairs,
                        "disputes": disputes.get((event, share["work_id"]), [])})
    out.sort(key=lambda it: not it["disputes"])  # what a holder disputed first (stable: oldest first within)
    return out[:limit]


def disputed(run: Query, event_ids: list[str]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(event, work) -> the holders' review requests (portal disputes) on it."""
    if not event_ids:
        return {}
    _, rows = run("""SELECT event_id, work_id, holder_id, reason, requested_at FROM review_requests FINAL
                     WHERE has({ids:Array(String)}, event_id) ORDER BY requested_at""", {"ids": event_ids})
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for event, work, holder, reason, at in rows:
        out.setdefault((event, work), []).append({"holder_id": holder, "reason": reason, "requested_at": str(at)})
    return out


def render(items: list[dict[str, Any]]) -> str:
    if not items:
        return "nothing to review: every probable attribution has a decision"
    lines = []
    for it in items:
        lines.append(f"event {it['event_id']}  work {it['work_id']} ({it['holder_id']})  "
                     f"{it['share_ppm'] / 10_000:.2f}% of a {it['pool_micros']} micros pool  "
                     f"[calibration {it['calibration']}: bar {it['threshold']}, margin {it['margin']}]")
        for d in it.get("disputes", []):
            lines.append(f"  DISPUTED by {d['holder_id']} on {d['requested_at']}: {d['reason']!r}")
        for p in it["pairs"]:
            lines.append(f"  score {p['score']}, runner-up work {p['runner_up']}, {p['words']} words")
            lines.append(f"    output: {p['output']}")
            lines.append(f"    work:   {p['work']}")
        lines.append(f"  decide: tributary review accept|reject {it['event_id']} --work {it['work_id']} "
                     "--reason '...'")
        lines.append("")
    return "\n".join(lines).rstrip()


def review_record(event_id: str, work_id: str, decision: str, reason: str, reviewer: str,
                  now: datetime | None = None) -> dict[str, Any]:
    digest = hashlib.sha256(f"{event_id}\x00{work_id}".encode()).hexdigest()[:24]
    return {"schema_version": 1, "kind": "review", "correction_id": f"rev_{digest}", "event_id": event_id,
            "work_id": work_id, "decision": decision, "reason": reason, "reviewer": reviewer,
            "occurred_at": (now or datetime.now(UTC)).isoformat().replace("+00:00", "Z")}


def decide(run: Query, bootstrap: str, event_id: str, work_id: str, decision: str, reason: str,
           reviewer: str) -> dict[str, Any]:
    """Check the (event, work) has an undecided probable share, then publish the decision."""
    if decision not in ("accept", "reject"):
        raise UserError(f"decision {decision!r}: expected accept or reject")
    if not reason.strip():
        raise UserError("--reason is required: the holder and the auditors read it")
    items = [it for it in pending(run, 1_000, event_id) if it["work_id"] == work_id]
    if not items:
        done = reviewed(run, [event_id]).get((event_id, work_id))
        if done:
            raise UserError(f"{event_id} / {work_id} was already decided ({done}); a decision is never edited")
        raise UserError(f"{event_id} has no probable share for work {work_id!r}; list the open ones with "
                        "`tributary review list`")
    record = review_record(event_id, work_id, decision, reason, reviewer)
    kafka.publish(bootstrap, Topic.CORRECTIONS.value, [(event_id, record)], "review decision")
    return record
