"""Analyst and rights-holder surfaces over ClickHouse: named reports, holder
statements and ``explain`` (payout -> ledger entries -> events -> matched chunks).

Everything reads through :func:`tributary.query.query` (the sink's query server
while the pipeline runs, the chdb directory read-only otherwise, or a ClickHouse
server), through the FINAL views, so retried inserts never count twice. User input
never becomes SQL text: it is bound by ClickHouse as typed query parameters
(``{holder:String}``, ``{since:Date}``, ``{ids:Array(String)}``).
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sinks.clickhouse.schema import ROLLUPS_DB_SQL, quoted
from tributary.config import PlatformConfig
from tributary.errors import UserError
from tributary.money import format_micros
from tributary.query import query

Params = dict[str, Any]
# run(sql, parameters): one read-only statement with {name:Type} placeholders
Query = Callable[[str, Params], tuple[list[str], list[list[Any]]]]


class ReportError(UserError, ValueError):
    pass


def parse_day(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ReportError(f"{name}={value!r}: expected a date like 2026-11-20") from None


# -- named reports ---------------------------------------------------------------
EARNINGS_BY = {"holder": "holder_id", "work": "work_id", "model": "model_name", "provider": "provider",
               "day": "day"}


# the rollups that can answer a grouping (sinks.clickhouse.schema.ROLLUPS), smallest first
ROLLUP_DIMS = (("holder_day", {"holder_id", "day"}), ("holder_model_day", {"holder_id", "model_name", "day"}),
               ("work_day", {"work_id", "holder_id", "day"}),
               ("earnings_day", {"holder_id", "work_id", "provider", "model_name", "day"}))


def rollups_database(run: Query) -> str:
    """The rollups' database, quoted for SQL text."""
    _, rows = run(f"SELECT {ROLLUPS_DB_SQL}", {})
    return quoted(str(rows[0][0]))


def earnings(run: Query, by: list[str], since: date | None = None, until: date | None = None,
             holder: str | None = None, live: bool = False) -> tuple[list[str], list[list[Any]]]:
    """Earnings (accruals net of refunds and review reversals) and the outputs credited
    (each output once per row), grouped by any of holder/work/model/provider/day, by the
    day the inference happened;
    ``until`` is inclusive. From the exact rollups (refreshed every 30 s from the
    deduplicated tables: milliseconds over any ledger size), or with ``live`` from the
    journal itself (exact to this moment, seconds at 10M entries)."""
    unknown = [b for b in by if b not in EARNINGS_BY]
    if unknown or not by:
        raise ReportError(f"--by {','.join(unknown) or '(nothing)'}: choose from {', '.join(EARNINGS_BY)}")
    dims = [EARNINGS_BY[b] for b in by]
    where, params = _where(since, until, "day", holder)
    holders_only = "holder_id NOT LIKE 'escrow:%'"
    where = f"{where} AND {holders_only}" if where else f"WHERE {holders_only}"
    if live:
        source, outputs = "accrual_lines", "uniqExactIf(event_id, entry_type = 'accrual')"
        measure = "sum(signed_micros)"
    else:
        name = next(r for r, have in ROLLUP_DIMS if set(dims) <= have)
        source, outputs, measure = f"{rollups_database(run)}.{name}", "uniqExactMerge(outputs)", "sum(earned_micros)"
    return run(f"""
        SELECT {', '.join(dims)}, currency, {measure} AS earned_micros, {outputs} AS outputs
        FROM {source} {where}
        GROUP BY {', '.join(dims)}, currency ORDER BY {', '.join(dims)}, currency""", params)


def escrow(run: Query, since: date | None = None, until: date | None = None) -> tuple[list[str], list[list[Any]]]:
    """Unattributed money held in escrow, per day, provider and model."""
    where, params = _where(since, until, "day")
    return run(f"""SELECT day, provider, model_name, currency, sum(escrow_micros) AS escrow_micros,
                          sum(events) AS events
                   FROM unattributed_escrow {where}
                   GROUP BY day, provider, model_name, currency ORDER BY day, provider, model_name, currency""",
               params)


def coverage(run: Query, since: date | None = None, until: date | None = None) -> tuple[list[str], list[list[Any]]]:
    """How much of the traffic (and of the pool) attribution explains, per day and model."""
    where, params = _where(since, until, "day")
    # columns qualified by the table: the output aliases shadow them inside the ratio
    # (ILLEGAL_AGGREGATION: an aggregate found inside another aggregate)
    return run(f"""SELECT day, model_name, sum(c.events) AS events, sum(c.events_attributed) AS events_attributed,
                          round(sum(c.events_attributed) / sum(c.events), 4) AS fraction_of_events
                   FROM attribution_coverage AS c {where}
                   GROUP BY day, model_name ORDER BY day, model_name""", params)


def payouts(run: Query, since: date | None = None, until: date | None = None,
            holder: str | None = None) -> tuple[list[str], list[list[Any]]]:
    """Every payout request with its outcome."""
    where, params = _where(since, until, "toDate(r.requested_at)", holder, holder_column="r.holder_id")
    return run(f"""
        SELECT r.payout_id, r.holder_id, r.amount_micros, r.currency, r.requested_at,
               if(s.payout_id = '', 'pending', s.status) AS status, s.transfer_id, s.error
        FROM (SELECT * FROM payout_requests FINAL) AS r
        LEFT JOIN (SELECT * FROM payout_results FINAL) AS s ON r.payout_id = s.payout_id
        {where} ORDER BY r.requested_at, r.payout_id SETTINGS join_use_nulls = 0""", params)


def trial_balance(run: Query) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    """Every account's balance (credits - debits) per currency, and the payout requests
    still awaiting an outcome per (holder, currency): what :func:`tributary.ledger.problems`
    judges."""
    _, rows = run("SELECT account, currency, balance_micros FROM account_balances", {})
    _, waiting = run("SELECT holder_id, currency, sum(amount_micros) FROM pending_payouts "
                     "GROUP BY holder_id, currency", {})
    return ({(str(a), str(c)): int(b) for a, c, b in rows}, {(str(h), str(c)): int(m) for h, c, m in waiting})


def _where(since: date | None, until: date | None, day_expr: str, holder: str | None = None,
           holder_column: str = "holder_id") -> tuple[str, Params]:
    """A WHERE clause over fixed column expressions, and the parameters it binds."""
    clauses: list[str] = []
    params: Params = {}
    if since:
        clauses.append(f"{day_expr} >= {{since:Date}}")
        params["since"] = since
    if until:
        clauses.append(f"{day_expr} <= {{until:Date}}")
        params["until"] = until
    if holder:
        clauses.append(f"{holder_column} = {{holder:String}}")
        params["holder"] = holder
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


# -- holder statement ------------------------------------------------------------
SIGNED = ("multiIf(entry_type = 'accrual', amount_micros, entry_type = 'accrual_reversal', -amount_micros, "
          "entry_type = 'payout', -amount_micros, 0)")


@dataclass
class Statement:
    holder_id: str
    name: str
    since: date | None
    until: date | None
    opening_micros: int
    lines: list[dict[str, Any]] = field(default_factory=list)
    currency: str = "USD"

    @property
    def accrued_micros(self) -> int:
        return sum(line["amount_micros"] for line in self.lines if line["kind"] == "accrual")

    @property
    def reversed_micros(self) -> int:
        return -sum(line["amount_micros"] for line in self.lines if line["kind"] == "refund")

    @property
    def paid_micros(self) -> int:
        return -sum(line["amount_micros"] for line in self.lines if line["kind"] == "payout")

    @property
    def closing_micros(self) -> int:
        return self.opening_micros + sum(line["amount_micros"] for line in self.lines)


def holder_currencies(run: Query, holder: str) -> list[str]:
    """The currencies a holder has ledger entries in."""
    _, rows = run("SELECT DISTINCT currency FROM ledger_entries FINAL WHERE holder_id = {holder:String} "
                  "ORDER BY currency", {"holder": holder})
    return [str(r[0]) for r in rows]


def statement(run: Query, holder: str, since: date | None, until: date | None,
              currency: str | None = None) -> Statement:
    """A holder's statement in one currency for [since, until] (ledger dates, inclusive):
    the unpaid balance brought forward, accruals per day/work/model, refunds, payouts
    with their Stripe transfers and failures, and the remainder carried forward. Without
    ``currency``: the holder's only currency (an error naming them if there are several:
    amounts in different currencies are never added up)."""
    h = {"holder": holder}
    _, names = run("SELECT name FROM holders FINAL WHERE holder_id = {holder:String}", h)
    currencies = holder_currencies(run, holder)
    if not names and not currencies:
        raise ReportError(f"no holder {holder!r} in the ledger or the catalog; list them with "
                          "`tributary sql \"SELECT holder_id, name FROM holders FINAL\"`")
    if currency is None:
        if len(currencies) > 1:
            raise ReportError(f"{holder} has earnings in {', '.join(currencies)}: a statement covers one currency, "
                              "pass --currency " + currencies[0])
        currency = currencies[0] if currencies else "USD"
    h["currency"] = currency
    before = "toDate(created_at) < {since:Date}" if since else "0"
    _, opening = run(f"SELECT sum({SIGNED}) FROM ledger_entries FINAL WHERE holder_id = {{holder:String}} "
                     f"AND currency = {{currency:String}} AND {before}", {**h, "since": since} if since else h)
    period, params = _where(since, until, "toDate(l.created_at)", holder, holder_column="l.holder_id")
    period = (period + " AND" if period else "WHERE") + " l.currency = {currency:String}"
    params["currency"] = currency
    _, accruals = run(f"""
        SELECT toDate(l.created_at) AS day, l.entry_type, l.work_id, any(w.title), p.model_name,
               sum(l.amount_micros), count()
        FROM (SELECT * FROM ledger_entries FINAL) AS l
        LEFT JOIN (SELECT work_id, title FROM works FINAL) AS w ON l.work_id = w.work_id
        LEFT JOIN (SELECT event_id, model_name FROM priced_events FINAL) AS p ON l.event_id = p.event_id
        {period} AND l.entry_type IN ('accrual', 'accrual_reversal')
        GROUP BY day, l.entry_type, l.work_id, p.model_name ORDER BY day, l.entry_type, l.work_id, p.model_name
        SETTINGS join_use_nulls = 0""", params)
    _, outcomes = run(f"""
        SELECT toDate(l.created_at) AS day, l.entry_type, l.payout_id, l.amount_micros, l.transfer_id, r.error
        FROM (SELECT * FROM ledger_entries FINAL) AS l
        LEFT JOIN (SELECT payout_id, error FROM payout_results FINAL) AS r ON l.payout_id = r.payout_id
        {period} AND l.entry_type IN ('payout', 'payout_reversal')
        ORDER BY l.created_at, l.payout_id SETTINGS join_use_nulls = 0""", params)
    st = Statement(holder, names[0][0] if names else "", since, until, int(opening[0][0] or 0), currency=currency)
    for day, kind, work, title, model, amount, entries in accruals:
        refund = kind == "accrual_reversal"
        st.lines.append({"day": str(day), "kind": "refund" if refund else "accrual",
                         "description": f"{'refunds of' if refund else 'royalties from'} {entries} "
                                        f"inference(s) of {model or '?'} drawing on {title or work}",
                         "work_id": work, "model": model, "reference": "",
                         "amount_micros": -int(amount) if refund else int(amount)})
    for day, kind, payout_id, amount, transfer, error in outcomes:
        if kind == "payout":
            st.lines.append({"day": str(day), "kind": "payout", "description": f"paid by Stripe transfer {transfer}",
                             "work_id": "", "model": "", "reference": payout_id, "amount_micros": -int(amount)})
        else:
            st.lines.append({"day": str(day), "kind": "failed_payout",
                             "description": f"payout of {format_micros(int(amount), currency)} failed "
                                            f"({error or 'see explain'}); "
                                            "the amount stays on the balance",
                             "work_id": "", "model": "", "reference": payout_id, "amount_micros": 0})
    st.lines.sort(key=lambda line: (line["day"], line["kind"] != "accrual", line["reference"]))
    return st


STATEMENT_COLUMNS = ["day", "kind", "description", "work_id", "model", "reference", "amount_micros", "amount"]


def statement_csv(st: Statement) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(STATEMENT_COLUMNS)
    writer.writerow(["", "opening", "unpaid balance brought forward", "", "", "", st.opening_micros,
                     format_micros(st.opening_micros, st.currency)])
    for line in st.lines:
        writer.writerow([*(line[c] for c in STATEMENT_COLUMNS[:-1]), format_micros(line["amount_micros"], st.currency)])
    writer.writerow(["", "closing", "unpaid balance carried forward (below the payout threshold or "
                     "awaiting payout)", "", "", "", st.closing_micros, format_micros(st.closing_micros, st.currency)])
    return out.getvalue()


def statement_summary(st: Statement) -> list[tuple[str, int]]:
    return [("Unpaid balance brought forward", st.opening_micros), ("Royalties accrued", st.accrued_micros),
            ("Refunds reversed", -st.reversed_micros), ("Paid out", -st.paid_micros),
            ("Unpaid balance carried forward", st.closing_micros)]


def _period(st: Statement) -> str:
    return f"{st.since or 'the beginning'} to {st.until or 'today'}"


def statement_text(st: Statement) -> str:
    lines = [f"Statement for {st.name or st.holder_id} ({st.holder_id})", f"Period: {_period(st)}", ""]
    lines += [f"  {label:<34} {format_micros(amount, st.currency):>18}" for label, amount in statement_summary(st)]
    lines += ["", f"  {'day':<10}  {'kind':<13}  {'amount':>16}  description"]
    for line in st.lines:
        lines.append(f"  {line['day']:<10}  {line['kind']:<13}  {format_micros(line['amount_micros'], st.currency):>16}  "
                     f"{line['description']}{'  [' + line['reference'] + ']' if line['reference'] else ''}")
    lines += ["", f"Amounts are exact to the micro-unit of {st.currency}; what a payout cannot move (below a cent, "
                  "a yen) stays on the balance. "
                  "`tributary explain <payout_id>` shows the inferences and matched passages behind a payout."]
    return "\n".join(lines) + "\n"


def statement_html(st: Statement) -> str:
    e = html.escape
    summary = "".join(f"<tr><th>{e(label)}</th><td class=num>{e(format_micros(a, st.currency))}</td></tr>"
                      for label, a in statement_summary(st))
    rows = "".join(
        f"<tr><td>{e(line['day'])}</td><td>{e(line['kind'])}</td><td>{e(line['description'])}</td>"
        f"<td>{e(line['reference'])}</td><td class=num>{e(format_micros(line['amount_micros'], st.currency))}</td></tr>"
        for line in st.lines)
    return (f"<!doctype html><html><head><meta charset=utf-8><title>Statement {e(st.holder_id)}</title>"
            "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}"
            ".num{text-align:right;font-variant-numeric:tabular-nums}</style></head><body>"
            f"<h1>Statement for {e(st.name or st.holder_id)}</h1><p>{e(st.holder_id)} &middot; {e(_period(st))}</p>"
            f"<table>{summary}</table><h2>Entries</h2><table><tr><th>Day</th><th>Kind</th><th>Description</th>"
            f"<th>Reference</th><th>Amount</th></tr>{rows}</table></body></html>\n")


# -- explain ---------------------------------------------------------------------
def _entries_of(run: Query, holder: str, currency: str) -> list[list[Any]]:
    _, rows = run("""SELECT entry_id, entry_type, amount_micros, event_id, work_id, payout_id, created_at
                     FROM ledger_entries FINAL WHERE holder_id = {holder:String} AND currency = {currency:String}
                     ORDER BY created_at, entry_id""", {"holder": holder, "currency": currency})
    return rows


def payout_coverage(entries: list[list[Any]], payout_order: list[tuple[str, int]]) -> dict[str, list[tuple[str, int]]]:
    """Which credits each payout settles, first in first out: payouts (in sequence
    order, failed ones left out: their amount went back) consume the holder's accruals
    (net of refunds) in ledger order. Returns payout_id -> [(entry_id, micros)]."""
    credits = [(r[0], int(r[2]) if r[1] == "accrual" else -int(r[2]))
               for r in entries if r[1] in ("accrual", "accrual_reversal")]
    out: dict[str, list[tuple[str, int]]] = {}
    i, left = 0, credits[0][1] if credits else 0
    for payout_id, amount in payout_order:
        need, parts = amount, []
        while need > 0 and i < len(credits):
            take = min(need, left) if left > 0 else left
            if take:
                parts.append((credits[i][0], take))
                need -= take
                left -= take
            if left <= 0:
                i += 1
                left = credits[i][1] if i < len(credits) else 0
        out[payout_id] = parts
    return out


def _payout_order(run: Query, holder: str, currency: str) -> list[tuple[str, int]]:
    _, rows = run("""
        SELECT r.payout_id, r.amount_micros FROM (SELECT * FROM payout_requests FINAL) AS r
        LEFT JOIN (SELECT payout_id, status FROM payout_results FINAL) AS s ON r.payout_id = s.payout_id
        WHERE r.holder_id = {holder:String} AND r.currency = {currency:String} AND s.status != 'failed'
        ORDER BY r.sequence SETTINGS join_use_nulls = 0""", {"holder": holder, "currency": currency})
    return [(str(r[0]), int(r[1])) for r in rows]


def _evidence_lines(evidence_json: str, work_id: str, indent: str) -> list[str]:
    """Why ``work_id`` was credited: each sentence of the output it was paid for, copied
    words (certain) or the semantic match with its score against the calibrated bar."""
    evidence = json.loads(evidence_json or "{}")
    lines = []
    for m in evidence.get("matches", []):
        if work_id not in m.get("works", []):
            continue
        copied = sum(c["words"] for c in m.get("copied", []) if c["work_id"] == work_id)
        where = f"{indent}sentence {m['sentence'] + 1} ({m['words']} words): "
        if m["method"] == "copied":
            lines.append(where + f"{copied} words copied verbatim, {m['tier']}"
                         + (" - copied with words changed (meaning may be altered)" if m.get("altered") else ""))
        else:
            lines.append(where + f"matched unit {m.get('chunk_id')} score {m.get('score', 0):.3f}, runner-up work "
                         f"{m.get('runner_up', 0):.3f} (bar {evidence.get('threshold')}, margin "
                         f"{evidence.get('margin')}), {m['tier']}"
                         + (f"; {copied} words copied" if copied else ""))
    return lines


def explain(run: Query, ident: str, limit: int = 20) -> list[str]:
    """Human-readable lines walking from a payout or an event down to the evidence."""
    _, payout = run("""SELECT r.payout_id, r.holder_id, r.amount_micros, r.sequence, r.requested_at,
                              s.status, s.transfer_id, s.destination, s.error, r.currency
                       FROM (SELECT * FROM payout_requests FINAL WHERE payout_id = {id:String}) AS r
                       LEFT JOIN (SELECT * FROM payout_results FINAL) AS s ON r.payout_id = s.payout_id
                       SETTINGS join_use_nulls = 0""", {"id": ident})
    if payout:
        return _explain_payout(run, payout[0], limit)
    _, event = run("SELECT event_id FROM priced_events FINAL WHERE event_id = {id:String}", {"id": ident})
    if event:
        return _explain_event(run, ident)
    raise ReportError(f"{ident!r} is neither a payout id nor an event id in the ledger "
                      "(payout ids look like po_...; list them with `tributary report payouts`)")


def _explain_payout(run: Query, row: list[Any], limit: int) -> list[str]:
    payout_id, holder, amount, sequence, requested_at, status, transfer, destination, error, currency = row
    lines = [f"payout {payout_id}: {format_micros(int(amount), currency)} to {holder} "
             f"(payout #{sequence} of this holder in {currency})",
             f"  requested {requested_at} when the unpaid balance crossed the holder's payout threshold",
             f"  outcome: {status or 'pending'}"
             + (f", Stripe transfer {transfer} to {destination}" if transfer else "")
             + (f" ({error})" if error else "")]
    _, posted = run("""SELECT entry_type, entry_id, debit_account, credit_account, amount_micros, created_at
                       FROM ledger_entries FINAL WHERE payout_id = {payout:String}
                       ORDER BY created_at, entry_id""", {"payout": payout_id})
    lines += [f"  ledger: {kind} {entry_id} {debit} -> {credit} {format_micros(int(micros), currency)} at {at}"
              for kind, entry_id, debit, credit, micros, at in posted]
    if status == "failed":
        return [*lines, "  the amount went back to the holder's balance and is paid by a later payout"]
    entries = _entries_of(run, holder, currency)
    cover = payout_coverage(entries, _payout_order(run, holder, currency)).get(payout_id, [])
    by_id = {r[0]: r for r in entries}
    total = sum(m for _, m in cover)
    lines.append(f"  settles {len(cover)} ledger credit(s) totalling {format_micros(total, currency)} "
                 "(first in, first out over the holder's accruals net of refunds):")
    event_ids = sorted({by_id[e][3] for e, _ in cover[:limit]})  # the events shown below
    evidence: dict[str, str] = {}
    if event_ids:
        _, rows = run("SELECT event_id, evidence FROM attributions FINAL WHERE has({ids:Array(String)}, event_id)",
                      {"ids": event_ids})
        evidence = {r[0]: r[1] for r in rows}
    for entry_id, micros in cover[:limit]:
        entry = by_id[entry_id]
        lines.append(f"    {format_micros(micros, currency):>14}  {entry[1]:<16} event {entry[3]}  work {entry[4]}  "
                     f"({entry_id})")
        lines += _evidence_lines(evidence.get(entry[3], ""), entry[4], " " * 20)[:3]
    if len(cover) > limit:
        lines.append(f"    ... and {len(cover) - limit} more credits")
    return lines


def _explain_event(run: Query, event_id: str) -> list[str]:
    e = {"event": event_id}
    _, ev = run("""SELECT provider, model_name, model_revision, contract_id, contract_version, currency,
                          revenue_micros, pool_micros, occurred_at FROM priced_events FINAL
                   WHERE event_id = {event:String}""", e)
    provider, model, revision, contract, version, currency, revenue, pool, occurred = ev[0]
    lines = [f"event {event_id}: {provider} / {model}@{revision} at {occurred}",
             f"  revenue {format_micros(int(revenue), currency)} x contract {contract} v{version} "
             f"-> royalty pool {format_micros(int(pool), currency)}"]
    _, at = run("""SELECT attribution_id, attributed_ppm, threshold, embed_model, embed_revision, catalog_version,
                          shares, evidence FROM attributions FINAL WHERE event_id = {event:String}""", e)
    if not at:
        lines.append("  not attributed yet")
    else:
        att_id, ppm, threshold, emb, emb_rev, catalog, shares, evidence = at[0]
        ev = json.loads(evidence or "{}")
        calibration = ev.get("calibration") or {}
        lines.append(f"  attribution {att_id}: {ppm / 10_000:.2f}% of the pool attributed by words "
                     f"({emb}@{emb_rev}, catalog v{catalog}, calibration {calibration.get('version', '?')}: "
                     f"bar {threshold}, margin {ev.get('margin', '?')})")
        if "units" in ev:
            from gpu_workers.scoring import recompute

            again, _ = recompute(ev)
            same = again == json.loads(shares)
            lines.append("  recomputed from the evidence: " + ("the same shares, exactly" if same else
                                                                "DIFFERENT shares - the evidence does not explain "
                                                                "this attribution"))
        for share in json.loads(shares):
            lines.append(f"    {share['share_ppm'] / 10_000:6.2f}%  {share['work_id']} ({share['holder_id']})"
                         + (f"  {share['tier']}, {share['words']} words" if "tier" in share else ""))
            lines += _evidence_lines(evidence, share["work_id"], " " * 13)
    _, entries = run("""SELECT entry_id, entry_type, holder_id, work_id, amount_micros, source_id
                        FROM ledger_entries FINAL WHERE event_id = {event:String}
                        ORDER BY entry_type, holder_id, work_id""", e)
    lines.append(f"  ledger ({len(entries)} entries; credits + escrow = pool exactly):")
    for entry_id, kind, holder, work, amount, _source in entries:
        lines.append(f"    {format_micros(int(amount), currency):>14}  {kind:<16} {holder:<22} {work or '':<24} "
                     f"{entry_id}")
    for holder in sorted({e[2] for e in entries if not e[2].startswith("escrow:")}):
        rows = _entries_of(run, holder, currency)
        ours = {e[0] for e in entries}
        settled = [pid for pid, parts in payout_coverage(rows, _payout_order(run, holder, currency)).items()
                   if any(entry_id in ours for entry_id, _ in parts)]
        lines.append(f"  {holder}: " + (f"paid in {', '.join(settled)}" if settled
                                        else "not paid out yet (still on the unpaid balance)"))
    return lines


def dates(since: str | None, until: str | None, last_days: int | None) -> tuple[date | None, date | None]:
    start, end = parse_day(since, "--since"), parse_day(until, "--until")
    if last_days is not None:
        if last_days < 1:
            raise ReportError("--last-days must be >= 1")
        end = end or date.today()
        try:
            start = end - timedelta(days=last_days - 1)
        except OverflowError:
            raise ReportError(f"--last-days {last_days}: reaches before year 1; use --since instead") from None
    if start and end and start > end:
        raise ReportError(f"--since {start} is after --until {end}")
    return start, end


def runner(cfg: PlatformConfig) -> Query:
    def run(sql: str, parameters: Params) -> tuple[list[str], list[list[Any]]]:
        return query(cfg, sql, parameters)
    return run
