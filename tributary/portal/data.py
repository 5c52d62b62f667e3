"""What one holder may read, and nothing else: every function takes the signed-in holder
and binds it as a query parameter, so no page can name another holder's rows.

Amounts come from the ledger's own projections (the ``account_balances`` view over the
journal, ``holder_balances``, the statement of :mod:`tributary.reports`), so every figure
on a page is the figure ``tributary trial-balance``, ``statement`` and ``explain`` show.
All reads go through :func:`tributary.query.query` (the ClickHouse sink's read-only query
server or a read-only ClickHouse session), with fixed SQL and typed parameters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from gpu_workers.segment import word_spans, words
from tributary import ledger, reports
from tributary.policy import PayoutPolicy
from tributary.reports import Query

H = "{holder:String}"
# the holder's credits and their reversals (refunds, review decisions)
HOLDER_CREDITS = ("SELECT entry_type, event_id, work_id, currency, amount_micros FROM ledger_entries FINAL "
                  f"WHERE holder_id = {H} AND entry_type IN ('accrual', 'accrual_reversal')")


@dataclass
class Balance:
    """One currency of a holder's money. payable + reserved + paid == accrued (the holder's
    three accounts hold everything credited to them, net of reversals)."""

    currency: str
    accrued_micros: int = 0
    under_review_micros: int = 0
    payable_micros: int = 0
    reserved_micros: int = 0
    paid_micros: int = 0
    next_payout: str = ""


@dataclass
class Overview:
    holder_id: str
    name: str
    balances: list[Balance]
    account: dict[str, Any] | None  # the latest readiness record of the Connect account
    policy: PayoutPolicy
    disputes_open: int


def profile(run: Query, holder: str) -> tuple[str, str] | None:
    """(name, stripe account) of a holder in the catalog or the ledger; None if unknown."""
    _, rows = run(f"SELECT name, stripe_account FROM holders FINAL WHERE holder_id = {H}", {"holder": holder})
    if rows:
        return str(rows[0][0]), str(rows[0][1])
    _, rows = run(f"SELECT count() FROM ledger_entries FINAL WHERE holder_id = {H}", {"holder": holder})
    return ("", "") if rows and int(rows[0][0]) else None


def _policy_records(run: Query, holder: str) -> dict[str, dict[str, Any]]:
    _, rows = run(f"SELECT kind, body FROM holder_policies FINAL WHERE holder_id = {H}", {"holder": holder})
    return {str(kind): json.loads(body) for kind, body in rows}


def balances(run: Query, holder: str) -> list[Balance]:
    """Per currency: what was credited, what is held for review of probable matches to the
    holder's works, and the balances of the holder's payable, reserved and paid accounts."""
    p = {"holder": holder, "escrow": ledger.ESCROW_REVIEW,
         "accounts": [ledger.holder_payable(holder), ledger.holder_reserved(holder), ledger.holder_paid(holder)]}
    out: dict[str, Balance] = {}
    _, rows = run("SELECT account, currency, balance_micros FROM account_balances "
                  "WHERE has({accounts:Array(String)}, account)", p)
    for account, currency, micros in rows:
        b = out.setdefault(str(currency), Balance(str(currency)))
        kind, _ = ledger.account_kind(str(account))
        if kind is ledger.Kind.HOLDER_PAYABLE:
            b.payable_micros = int(micros)
        elif kind is ledger.Kind.HOLDER_RESERVED:
            b.reserved_micros = int(micros)
        else:
            b.paid_micros = int(micros)
    _, rows = run(f"SELECT currency, accrued_micros FROM holder_balances WHERE holder_id = {H}", p)
    for currency, micros in rows:
        out.setdefault(str(currency), Balance(str(currency))).accrued_micros = int(micros)
    _, rows = run(f"""SELECT currency, sum(if(entry_type = 'accrual_reversal', -amount_micros, amount_micros))
                      FROM ledger_entries FINAL WHERE holder_id = {{escrow:String}}
                        AND work_id IN (SELECT work_id FROM works FINAL WHERE holder_id = {H})
                      GROUP BY currency""", p)
    for currency, micros in rows:
        if int(micros):
            out.setdefault(str(currency), Balance(str(currency))).under_review_micros = int(micros)
    return [out[c] for c in sorted(out)]


def overview(run: Query, holder: str, defaults: PayoutPolicy, today: date | None = None) -> Overview:
    found = profile(run, holder)
    records = _policy_records(run, holder)
    policy = PayoutPolicy.from_json(records["policy"], defaults) if "policy" in records else defaults
    account = records.get("account")
    money = balances(run, holder)
    rates = daily_rates(run, holder, today or datetime.now(UTC).date())
    for b in money:
        b.next_payout = next_payout(b, policy.for_currency(b.currency), account, rates.get(b.currency, 0))
    _, rows = run(f"""SELECT count() FROM review_requests FINAL WHERE holder_id = {H}
                      AND (event_id, work_id) NOT IN (SELECT event_id, work_id FROM corrections FINAL
                                                          WHERE kind = 'review')""", {"holder": holder})
    return Overview(holder, found[0] if found else "", money, account, policy, int(rows[0][0]) if rows else 0)


def daily_rates(run: Query, holder: str, today: date, days: int = 7) -> dict[str, int]:
    """Average earnings per day over the last ``days`` days, per currency (micros)."""
    _, rows = run(f"""SELECT currency, sum(earned_micros) FROM {reports.rollups_database(run)}.holder_day
                      WHERE holder_id = {H} AND day > {{since:Date}} GROUP BY currency""",
                  {"holder": holder, "since": today - timedelta(days=days)})
    return {str(c): int(m) // days for c, m in rows}


def next_payout(b: Balance, policy: PayoutPolicy, account: dict[str, Any] | None, per_day: int) -> str:
    """In words: when the next payout of this currency should come, by the holder's policy."""
    from tributary.money import format_micros, payable

    if b.reserved_micros:
        return f"{format_micros(b.reserved_micros, b.currency)} is being paid now (awaiting Stripe's answer)."
    if account is not None and not account.get("transfers_ready", True):
        return ("Payouts wait until your Stripe account can receive transfers: "
                + (account.get("reason") or "Stripe has not enabled transfers yet") + ".")
    if policy.paused:
        return "Payouts are paused for your account; ask us to resume them."
    amount = payable(b.payable_micros, b.currency)
    threshold = payout_floor(policy)
    if amount >= threshold and policy.blocked(amount, None) is None:
        return (f"{format_micros(amount, b.currency)} is due: it is requested with your next royalty credit"
                + (f" (at most one payout every {policy.min_interval_s // 86_400} day(s))."
                   if policy.min_interval_s >= 86_400 else "."))
    short = max(threshold - b.payable_micros, 0)
    text = f"Paid once your payable balance reaches {format_micros(threshold, b.currency)}"
    if threshold > policy.min_payout_micros:
        text += (f" (your minimum is {format_micros(policy.min_payout_micros, b.currency)}, but below this amount "
                 f"the transfer fee would be more than {policy.max_fee_bps / 100:g}% of it)")
    if short and per_day > 0:
        days = -(-short // per_day)
        text += f"; at your last 7 days' pace ({format_micros(per_day, b.currency)} a day) in about {days} day(s)"
    elif short:
        text += "; nothing was earned in this currency in the last 7 days"
    return text + "."


def payout_floor(policy: PayoutPolicy) -> int:
    """The smallest amount the policy pays: its minimum, or more where the estimated fee
    (fixed + bps) would exceed the allowed share of a smaller amount."""
    room = policy.max_fee_bps - policy.fee_bps
    if room <= 0:
        return policy.min_payout_micros
    by_fee = -(-policy.fee_fixed_micros * 10_000 // room)
    while policy.estimated_fee(by_fee) * 10_000 > by_fee * policy.max_fee_bps:  # the fee's own rounding
        by_fee += 1
    return max(policy.min_payout_micros, by_fee)


# -- earnings over time -------------------------------------------------------------------
def earnings_by_work(run: Query, holder: str, since: date, until: date) -> list[list[Any]]:
    """(day, currency, work_id, title, earned_micros), net of reversals, from the rollups."""
    _, rows = run(f"""SELECT e.day, e.currency, e.work_id, any(w.title), sum(e.earned_micros)
                      FROM (SELECT * FROM {reports.rollups_database(run)}.work_day WHERE holder_id = {H}
                            AND day >= {{since:Date}} AND day <= {{until:Date}}) AS e
                      LEFT JOIN (SELECT work_id, title FROM works FINAL) AS w ON e.work_id = w.work_id
                      GROUP BY e.day, e.currency, e.work_id ORDER BY e.day, e.currency, e.work_id
                      SETTINGS join_use_nulls = 0""", {"holder": holder, "since": since, "until": until})
    return rows


def earnings_by_model(run: Query, holder: str, since: date, until: date) -> list[list[Any]]:
    """(day, currency, model_name, earned_micros), from the rollups."""
    _, rows = run(f"""SELECT day, currency, model_name, sum(earned_micros)
                      FROM {reports.rollups_database(run)}.holder_model_day WHERE holder_id = {H}
                        AND day >= {{since:Date}} AND day <= {{until:Date}}
                      GROUP BY day, currency, model_name ORDER BY day, currency, model_name""",
                  {"holder": holder, "since": since, "until": until})
    return rows


# -- payouts ---------------------------------------------------------------------------------
@dataclass
class Payout:
    payout_id: str
    currency: str
    amount_micros: int
    requested_at: str
    status: str
    transfer_id: str
    error: str
    entries: list[dict[str, Any]] = field(default_factory=list)


def payouts(run: Query, holder: str) -> list[Payout]:
    _, rows = reports.payouts(run, holder=holder)
    return [Payout(str(r[0]), str(r[3]), int(r[2]), str(r[4]), str(r[5]), str(r[6] or ""), str(r[7] or ""))
            for r in reversed(rows)]


def payout(run: Query, holder: str, payout_id: str) -> Payout | None:
    """One of this holder's payouts with its ledger entries; None if it is not theirs."""
    found = [p for p in payouts(run, holder) if p.payout_id == payout_id]
    if not found:
        return None
    p = found[0]
    _, rows = run(f"""SELECT entry_id, entry_type, debit_account, credit_account, amount_micros, created_at,
                             transfer_id
                      FROM ledger_entries FINAL WHERE payout_id = {{payout:String}} AND holder_id = {H}
                      ORDER BY created_at, entry_id""", {"payout": payout_id, "holder": holder})
    p.entries = [dict(zip(("entry_id", "entry_type", "debit", "credit", "amount_micros", "created_at",
                           "transfer_id"), r, strict=True)) for r in rows]
    return p


# -- credits and their evidence ---------------------------------------------------------------
CREDIT_COLUMNS = ("entry_id", "entry_type", "created_at", "currency", "amount_micros", "work_id", "title",
                  "event_id", "model", "contract_id", "contract_version")


def credits(run: Query, holder: str, limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
    """The holder's accruals and their reversals, newest first: (total, one page)."""
    h = {"holder": holder}
    _, total = run(f"""SELECT count() FROM ledger_entries FINAL WHERE holder_id = {H}
                       AND entry_type IN ('accrual', 'accrual_reversal')""", h)
    _, rows = run(f"""SELECT l.entry_id, l.entry_type, l.created_at, l.currency, l.amount_micros, l.work_id,
                             w.title, l.event_id, p.model_name, l.contract_id, l.contract_version
                      FROM (SELECT * FROM ledger_entries FINAL WHERE holder_id = {H}
                            AND entry_type IN ('accrual', 'accrual_reversal')
                            ORDER BY created_at DESC, entry_id LIMIT {{limit:UInt32}} OFFSET {{offset:UInt32}}) AS l
                      LEFT JOIN (SELECT work_id, title FROM works FINAL) AS w ON l.work_id = w.work_id
                      LEFT JOIN (SELECT event_id, model_name FROM priced_events FINAL) AS p
                        ON l.event_id = p.event_id
                      ORDER BY l.created_at DESC, l.entry_id SETTINGS join_use_nulls = 0""",
                  {**h, "limit": limit, "offset": offset})
    return int(total[0][0]), [dict(zip(CREDIT_COLUMNS, r, strict=True)) for r in rows]


@dataclass
class Pair:
    """One sentence of the output beside the passage of the holder's work it drew on."""

    sentence: int
    method: str
    tier: str
    words: int
    copied_words: int
    output: list[tuple[str, bool]]  # (text piece, copied?) so a page can mark copied words
    work: list[tuple[str, bool]]
    score: float | None
    runner_up: float | None
    altered: bool


@dataclass
class Evidence:
    credit: dict[str, Any]
    share: dict[str, Any] | None
    attribution: dict[str, Any]
    pairs: list[Pair]
    calibration: dict[str, Any]
    pool_micros: int
    provider: str
    decision: str  # a reviewer's decision on this (event, work), if any
    dispute: dict[str, Any] | None  # the holder's open or decided review request
    quotes_dropped: bool

    @property
    def disputable(self) -> bool:
        return (self.share is not None and self.share.get("tier") == "probable" and not self.decision
                and self.dispute is None and self.credit["entry_type"] == "accrual")


def credit(run: Query, holder: str, entry_id: str) -> dict[str, Any] | None:
    _, rows = run(f"""SELECT l.entry_id, l.entry_type, l.created_at, l.currency, l.amount_micros, l.work_id,
                             w.title, l.event_id, p.model_name, l.contract_id, l.contract_version
                      FROM (SELECT * FROM ledger_entries FINAL WHERE entry_id = {{entry:String}}
                            AND holder_id = {H} AND entry_type IN ('accrual', 'accrual_reversal')) AS l
                      LEFT JOIN (SELECT work_id, title FROM works FINAL) AS w ON l.work_id = w.work_id
                      LEFT JOIN (SELECT event_id, model_name FROM priced_events FINAL) AS p
                        ON l.event_id = p.event_id SETTINGS join_use_nulls = 0""",
                  {"entry": entry_id, "holder": holder})
    return dict(zip(CREDIT_COLUMNS, rows[0], strict=True)) if rows else None


def evidence(run: Query, holder: str, entry_id: str) -> Evidence | None:
    """Why a credit was paid: the attribution's share for the credited work, and each
    sentence of the output next to the work's passage, copied words marked. None if the
    credit is not this holder's."""
    c = credit(run, holder, entry_id)
    if c is None:
        return None
    e = {"event": c["event_id"]}
    _, rows = run("""SELECT attribution_id, shares, evidence, pool_micros, provider, attributed_ppm, threshold,
                            embed_model, embed_revision, catalog_version
                     FROM attributions FINAL WHERE event_id = {event:String}""", e)
    if not rows:
        return Evidence(c, None, {}, [], {}, 0, "", "", None, False)
    att_id, shares, ev_json, pool, provider, ppm, threshold, emb, emb_rev, catalog = rows[0]
    ev = json.loads(ev_json or "{}")
    share = entry_share(str(att_id), c["entry_id"], [s for s in json.loads(shares)
                                                     if s["work_id"] == c["work_id"] and s["holder_id"] == holder])
    attribution = {"attribution_id": att_id, "attributed_ppm": int(ppm), "threshold": threshold,
                   "embed_model": emb, "embed_revision": emb_rev, "catalog_version": int(catalog),
                   "margin": ev.get("margin")}
    _, decided = run("""SELECT decision FROM corrections FINAL WHERE kind = 'review' AND event_id = {event:String}
                        AND work_id = {work:String}""", {**e, "work": c["work_id"]})
    _, disputes = run(f"""SELECT request_id, reason, requested_at FROM review_requests FINAL
                          WHERE event_id = {{event:String}} AND work_id = {{work:String}} AND holder_id = {H}""",
                      {**e, "work": c["work_id"], "holder": holder})
    dispute = dict(zip(("request_id", "reason", "requested_at"), disputes[0], strict=True)) if disputes else None
    return Evidence(c, share, attribution, pairs(ev, c["work_id"]), ev.get("calibration") or {}, int(pool),
                    str(provider), str(decided[0][0]) if decided else "", dispute, bool(ev.get("quotes_dropped")))


def entry_share(attribution_id: str, entry_id: str, shares: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The share an accrual paid: a work may have a certain and a probable share in one
    output (copied sentences and paraphrased ones), and the entry id names which. A
    reversal (a refund) names its own source: then the work's only share, if one."""
    for share in shares:
        key = ledger.share_key(share["holder_id"], share["work_id"], share.get("tier", "certain"))
        if ledger.accrual_entry_id(attribution_id, key) == entry_id:
            return share
    return shares[0] if len(shares) == 1 else None


def pairs(ev: dict[str, Any], work_id: str) -> list[Pair]:
    """The evidence rows that credited ``work_id``, with copied words marked on both sides:
    on the output from the attribution's own copied spans (word positions), on the work's
    passage by the shingles the two quotes share (the same rule that found the spans)."""
    sentences = ev.get("sentences") or []
    copied_positions: set[int] = set()
    for c in ev.get("copied", []):
        if c["work_id"] == work_id:
            for start, end in c["spans"]:
                copied_positions.update(range(start, end))
    k = int((ev.get("span_rule") or {}).get("shingle_words", 8))
    out = []
    for m in ev.get("matches", []):
        first = sentences[m["sentence"]][0] if m["sentence"] < len(sentences) else 0
        marked = {i for i in range(m["words"]) if first + i in copied_positions}
        # a sentence credits this work if the work is its decision, or if words of it were
        # copied from this work (paid by the copied words although another work owns the sentence)
        if work_id not in m.get("works", []) and not marked:
            continue
        output_text = m.get("text", "")
        # only this work's own passage: a sentence credited to several works (a tie, a
        # phrase in two works) carries one passage per work; evidence from before that kept
        # one passage, shown only when this work was the sentence's only work
        work_text = (m["work_texts"].get(work_id, "") if "work_texts" in m
                     else m.get("work_text", "") if m.get("works") == [work_id] else "")
        work_marked = _shared_shingle_words(output_text, work_text, k) if marked else set()
        out.append(Pair(m["sentence"], m["method"], m["tier"], m["words"], len(marked), mark(output_text, marked),
                        mark(work_text, work_marked), m.get("score"), m.get("runner_up"), bool(m.get("altered"))))
    return out


def _shared_shingle_words(output: str, work: str, k: int) -> set[int]:
    """Positions of ``work``'s words inside a k-word run that ``output`` also contains."""
    a, b = words(output), words(work)
    if len(a) < k or len(b) < k:
        return set()
    grams = {tuple(a[i:i + k]) for i in range(len(a) - k + 1)}
    hit: set[int] = set()
    for i in range(len(b) - k + 1):
        if tuple(b[i:i + k]) in grams:
            hit.update(range(i, i + k))
    return hit


def mark(text: str, positions: set[int]) -> list[tuple[str, bool]]:
    """``text`` cut into pieces, the words at ``positions`` (word index, in the tokenisation
    attribution counts in) flagged; flagged words with nothing but spaces and punctuation
    between them form one piece."""
    pieces: list[tuple[str, bool]] = []
    at = 0
    for n, (start, end) in enumerate(word_spans(text)):
        if n in positions:
            if start > at:
                pieces.append((text[at:start], False))
            pieces.append((text[start:end], True))
            at = end
    if at < len(text):
        pieces.append((text[at:], False))
    out: list[tuple[str, bool]] = []
    for piece, flagged in pieces:
        if flagged and len(out) >= 2 and out[-2][1] and not word_spans(out[-1][0]):  # only spaces, punctuation
            gap = out.pop()[0]
            out[-1] = (out[-1][0] + gap + piece, True)
        elif out and out[-1][1] == flagged:
            out[-1] = (out[-1][0] + piece, flagged)
        else:
            out.append((piece, flagged))
    return out


# -- works ---------------------------------------------------------------------------------
def works(run: Query, holder: str) -> list[dict[str, Any]]:
    """The holder's registered works (withdrawn ones too: a withdrawal newer than the
    registration; a work registered again is back) with what each earned and in how many
    outputs it was found, per currency."""
    _, rows = run(f"""SELECT w.work_id, w.title, w.license, w.removed OR x.catalog_offset > w.catalog_offset,
                             e.currency, e.earned, e.outputs, e.first_day, e.last_day
                      FROM (SELECT * FROM works FINAL WHERE holder_id = {H}) AS w
                      LEFT JOIN (SELECT work_id, catalog_offset FROM work_withdrawals FINAL) AS x
                        ON w.work_id = x.work_id
                      LEFT JOIN (SELECT l.work_id AS work_id, l.currency AS currency,
                                        sum(if(l.entry_type = 'accrual_reversal', -l.amount_micros, l.amount_micros))
                                          AS earned,
                                        uniqExactIf(l.event_id, l.entry_type = 'accrual') AS outputs,
                                        min(toDate(p.occurred_at)) AS first_day, max(toDate(p.occurred_at)) AS last_day
                                 FROM ({HOLDER_CREDITS}) AS l
                                 INNER JOIN (SELECT event_id, occurred_at FROM priced_events FINAL) AS p
                                   ON l.event_id = p.event_id
                                 GROUP BY l.work_id, l.currency) AS e ON w.work_id = e.work_id
                      ORDER BY w.work_id, e.currency SETTINGS join_use_nulls = 0""", {"holder": holder})
    out: dict[str, dict[str, Any]] = {}
    for work_id, title, license_, removed, currency, earned, outputs, first, last in rows:
        w = out.setdefault(work_id, {"work_id": work_id, "title": title, "license": license_,
                                     "removed": bool(removed), "earnings": []})
        if currency:
            w["earnings"].append({"currency": currency, "earned_micros": int(earned), "outputs": int(outputs),
                                  "first_day": str(first), "last_day": str(last)})
    return list(out.values())


def coverage(run: Query, holder: str, since: date, until: date) -> list[list[Any]]:
    """(day, work_id, outputs) for the holder's works, from the rollups: how many outputs
    (inferences, by the day they happened) drew on each work and were credited to it."""
    _, rows = run(f"""SELECT day, work_id, uniqExactMerge(outputs) FROM {reports.rollups_database(run)}.work_day
                      WHERE holder_id = {H} AND day >= {{since:Date}} AND day <= {{until:Date}}
                      GROUP BY day, work_id ORDER BY day, work_id""",
                  {"holder": holder, "since": since, "until": until})
    return rows


def disputes(run: Query, holder: str) -> list[dict[str, Any]]:
    _, rows = run(f"""SELECT r.request_id, r.event_id, r.work_id, r.entry_id, r.reason, r.requested_at, c.decision,
                             c.reason
                      FROM (SELECT * FROM review_requests FINAL WHERE holder_id = {H}) AS r
                      LEFT JOIN (SELECT event_id, work_id, decision, reason FROM corrections FINAL
                                 WHERE kind = 'review') AS c ON r.event_id = c.event_id AND r.work_id = c.work_id
                      ORDER BY r.requested_at DESC SETTINGS join_use_nulls = 0""", {"holder": holder})
    return [dict(zip(("request_id", "event_id", "work_id", "entry_id", "reason", "requested_at", "decision",
                      "decision_reason"), r, strict=True)) for r in rows]
