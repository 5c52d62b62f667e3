"""Accrual: an attribution -> double-entry ledger entries that conserve the pool."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from streams.contracts import parse_time
from tributary import ledger
from tributary.ids import ledger_entry_id
from tributary.ledger import LedgerEntry
from tributary.money import BPS_DENOMINATOR, SHARE_DENOMINATOR, UNATTRIBUTED, split_pool

UNDER_REVIEW = ledger.ESCROW_REVIEW  # the held part of probable shares, until a review decides
PROBABLE = ledger.PROBABLE


@dataclass(frozen=True)
class Slice:
    """One (holder, work, tier) part of an event's pool, and how much of it is held."""

    key: str
    holder_id: str
    work_id: str | None
    tier: str
    amount: int
    held: int  # of ``amount``, the part credited to escrow:review instead of the holder


def slices(attribution: dict[str, Any]) -> list[Slice]:
    """The pool split by the attribution's shares (largest remainder), the unattributed
    part included; a probable share pays ``probable_weight_bps`` of itself at once (the
    contract's setting, default all of it) and holds the rest for review."""
    pool = int(attribution["pool_micros"])
    weights: dict[str, int] = {}
    owners: dict[str, tuple[str, str | None, str]] = {}
    for share in attribution["shares_ppm"]:
        tier = share.get("tier", "certain")
        key = ledger.share_key(share["holder_id"], share["work_id"], tier)
        weights[key] = weights.get(key, 0) + int(share["share_ppm"])
        owners[key] = (share["holder_id"], share["work_id"], tier)
    unattributed = SHARE_DENOMINATOR - sum(weights.values())
    if unattributed < 0:
        raise ValueError(f"attribution {attribution['attribution_id']} shares exceed 100%")
    weights[UNATTRIBUTED] = unattributed
    owners[UNATTRIBUTED] = (UNATTRIBUTED, None, "unattributed")
    weight_bps = int(attribution["contract"].get("probable_weight_bps", BPS_DENOMINATOR))
    out = []
    for key, amount in sorted(split_pool(pool, weights).items()):
        holder_id, work_id, tier = owners[key]
        held = amount - amount * weight_bps // BPS_DENOMINATOR if tier == PROBABLE else 0
        out.append(Slice(key, holder_id, work_id, tier, amount, held))
    return out


def accrue(attribution: dict[str, Any], created_at: str) -> list[LedgerEntry]:
    """Split the event's pool by its shares, one accrual entry per (holder, work) and tier,
    plus one per held part of a probable share (credited to escrow:review).

    sum(entries) == pool_micros exactly: the unattributed part is an entry credited
    to the escrow account. Entry ids are derived from the attribution id, so a replay
    yields the same ids.
    """
    source = attribution["attribution_id"]
    entries = []
    for s in slices(attribution):
        paid = s.amount - s.held
        if s.key == UNATTRIBUTED or paid:
            entries.append(ledger.accrual(attribution, ledger.accrual_entry_id(source, s.key), source,
                                          s.holder_id, s.work_id, paid, created_at))
        if s.held:
            entries.append(ledger.accrual(attribution, ledger.accrual_entry_id(source, s.key, "held"), source,
                                          UNDER_REVIEW, s.work_id, s.held, created_at))
    return entries


def review_entries(attribution: dict[str, Any], review: dict[str, Any], created_at: str) -> list[LedgerEntry]:
    """A review decision on a probable attribution to one work, as reversals and new
    accruals (never edits). accept: the held part moves from escrow:review to the holder.
    reject: what the holder was paid at once and what was held both go to escrow:unattributed."""
    rid = review["correction_id"]
    accept = review["decision"] == "accept"
    out: list[LedgerEntry] = []

    def move(s: Slice, amount: int, frm: str, to: str, tag: str) -> None:
        out.append(ledger.accrual(attribution, ledger_entry_id(rid, s.key, f"{tag}-out"), rid, frm, s.work_id,
                                  amount, created_at, reversal=True))
        out.append(ledger.accrual(attribution, ledger_entry_id(rid, s.key, f"{tag}-in"), rid, to, s.work_id,
                                  amount, created_at))

    for s in slices(attribution):
        if s.tier != PROBABLE or s.work_id != review["work_id"]:
            continue
        if accept and s.held:
            move(s, s.held, UNDER_REVIEW, s.holder_id, "release")
        if not accept:
            if s.amount - s.held:
                move(s, s.amount - s.held, s.holder_id, UNATTRIBUTED, "reject-paid")
            if s.held:
                move(s, s.held, UNDER_REVIEW, UNATTRIBUTED, "reject-held")
    return out


def reverse(entries: list[LedgerEntry], correction: dict[str, Any], created_at: str) -> list[LedgerEntry]:
    """Reversal entries that cancel ``entries`` exactly (a refund): same accounts and
    amounts, debit and credit swapped, new ids derived from the correction."""
    return [ledger.reversal_of(e, correction["correction_id"], created_at) for e in entries
            if e["entry_type"] in ("accrual", "accrual_reversal")]


# the fields of an attribution that determine its ledger entries
ACCRUAL_FIELDS = ("attribution_id", "event_id", "provider", "contract", "pool_micros", "shares_ppm")


def record_entries(record: dict[str, Any]) -> list[LedgerEntry]:
    """Every ledger entry an accrual record (``ac:<event_id>``) stands for: its accruals,
    its review decisions and, once refunded, the reversal of all of them."""
    entries: list[LedgerEntry] = []
    if record.get("attribution"):
        entries = accrue(record["attribution"], record["created_at"])
        for _, review in sorted((record.get("reviews") or {}).items()):
            entries += review_entries(record["attribution"], review, max(review["decided_at"], record["created_at"]))
    if record.get("refund") and record.get("refunded_at"):
        entries += reverse(entries, record["refund"], record["refunded_at"])
    return entries


class AccrualState(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...
    def __setitem__(self, key: str, value: Any) -> None: ...


@dataclass
class AccrualBook:
    """What the accrue stage remembers per event (``ac:<event_id>``): the attribution
    fields its entries derive from, when they were created, its review decisions and any
    refund. Each input yields exactly the entries its record did not stand for before, so
    with the record and the entries committed in one transaction (:mod:`tributary.txloop`)
    every entry is produced once. Records expire ``refund_window_s`` of event time behind
    the newest event of their partition; refunds after that are recorded on the
    corrections topic but reverse nothing.

    ``added`` collects (state, key, event time) of the records created since it was last
    read, for the stage's :class:`tributary.state.Expiry` (per partition: ``taken``)."""

    refund_window_s: float = 30 * 86_400
    added: list[tuple[AccrualState, str, float]] = field(default_factory=list)

    def taken(self, state: AccrualState) -> list[tuple[str, float]]:
        """The (key, event time) of records created in ``state`` since the last call for it."""
        mine = [(k, t) for s, k, t in self.added if s is state]
        self.added = [a for a in self.added if a[0] is not state]
        return mine

    def _changed(self, state: AccrualState, key: str, before: dict[str, Any], after: dict[str, Any],
                 t: float) -> list[LedgerEntry]:
        if after == before:
            return []
        # entries first: one the ledger refuses (InvalidEntry) leaves the state untouched
        known = {e["entry_id"] for e in record_entries(before)} if before else set()
        new = [e for e in record_entries(after) if e["entry_id"] not in known]
        state[key] = after
        if not before:
            self.added.append((state, key, t))
        return new

    def on_attribution(self, state: AccrualState, attribution: dict[str, Any], now: str) -> list[LedgerEntry]:
        key = f"ac:{attribution['event_id']}"
        record = state.get(key) or {}
        if record.get("attribution"):
            # the same event attributed again (e.g. after a catalog change): the first attribution
            # stands; a re-attribution is a correction, not a second accrual
            return []
        occurred = attribution.get("occurred_at")
        t = parse_time(occurred).timestamp() if occurred else record.get("t", 0.0)
        after = {**record, "attribution": {k: attribution[k] for k in ACCRUAL_FIELDS}, "created_at": now, "t": t}
        if after.get("refund") and not after.get("refunded_at"):
            after["refunded_at"] = now
        return self._changed(state, key, record, after, t)

    def on_correction(self, state: AccrualState, correction: dict[str, Any], now: str) -> list[LedgerEntry]:
        key = f"ac:{correction['event_id']}"
        record = state.get(key) or {}
        t = record.get("t", parse_time(correction["occurred_at"]).timestamp())
        after = {**record, "t": t}
        if correction["kind"] == "review":
            reviews = dict(record.get("reviews") or {})
            if correction["work_id"] in reviews:
                return []  # the first decision on a work stands
            reviews[correction["work_id"]] = {**correction, "decided_at": now}
            after["reviews"] = reviews
        elif record.get("refund"):
            return []  # ingest allows one refund per event; a second id is ignored here too
        else:
            after.update(refund=correction, refunded_at=now if record.get("attribution") else None)
        return self._changed(state, key, record, after, t)
