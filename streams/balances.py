"""Holder balances and payout triggers, exact under crash and replay.

The balances agent reads ``royalty-ledger`` (key holder_id), so all entries of one
holder arrive in order on one partition. Its state lives in one table (one
changelog partition per ledger partition, written in order), under three kinds of
key, written in this order for each entry ``X`` at ledger offset ``o``:

    p:<payout_id>  the payout request X triggered (if any), with o
    e:<entry_id>   the mark: X was applied (holder, type, amount, o, payout id)
    h:<holder_id>  the holder's balance, folded up to offset o

A crash keeps a prefix of these writes. On recovery (``rebuild``) each holder's
balance is reconciled with the marks and payout records newer than its ``upto``
offset, so whatever prefix survived, the balance is exact; replaying X then finds
its mark and does nothing twice. A replayed entry that had triggered a payout
re-sends the *same* request (deterministic id), and every payout without an outcome
is re-sent after recovery: a request can be repeated, never lost, and the Stripe
sink pays each payout id once.

Marks are kept for ``dedupe_window`` ledger offsets per partition: a duplicate
entry (an upstream stage replaying after a crash) is recognised as long as it
arrives within that many offsets of the original. Upstream replays only re-send
their uncommitted tail (seconds of traffic), far inside the default window.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from streams.window import ExpiryIndex
from tributary.ids import payout_id
from tributary.money import BPS_DENOMINATOR, whole_cents

CREDITS = {"accrual": 1, "accrual_reversal": -1}


@dataclass(frozen=True)
class PayoutPolicy:
    """When a holder is paid. Per holder (``holder-policies`` topic) or the defaults."""

    min_payout_micros: int = 1_000_000
    # estimated Stripe Connect payout fee: fixed + bps of the amount
    fee_fixed_micros: int = 250_000
    fee_bps: int = 25
    # no payout while the estimated fee exceeds this share of the amount
    max_fee_bps: int = 1_000
    # at most one payout per this many seconds of ledger time (0: no cadence)
    min_interval_s: int = 0
    paused: bool = False
    # after a permanent failure (e.g. a restricted Connect account), wait this long
    # (ledger time) before trying again, instead of failing on every new accrual
    retry_failed_after_s: int = 86_400

    def estimated_fee(self, amount_micros: int) -> int:
        return self.fee_fixed_micros + -(-amount_micros * self.fee_bps // BPS_DENOMINATOR)

    def blocked(self, amount_micros: int, since_last_s: float | None,
                since_failure_s: float | None = None) -> str | None:
        """Why a payout of ``amount_micros`` may not be issued now; None if it may."""
        if self.paused:
            return "payouts paused for this holder"
        if since_failure_s is not None and since_failure_s < self.retry_failed_after_s:
            return "the last payout failed: waiting before the next attempt"
        if amount_micros < self.min_payout_micros:
            return "below the minimum payout"
        if self.estimated_fee(amount_micros) * BPS_DENOMINATOR > amount_micros * self.max_fee_bps:
            return "estimated fees exceed the allowed share"
        if self.min_interval_s and since_last_s is not None and since_last_s < self.min_interval_s:
            return "cadence: too soon after the last payout"
        return None

    @classmethod
    def from_json(cls, raw: dict[str, Any], defaults: PayoutPolicy) -> PayoutPolicy:
        known = {k: raw[k] for k in asdict(defaults) if k in raw}
        return replace(defaults, **known)


@dataclass
class HolderBalance:
    holder_id: str
    currency: str = "USD"
    accrued_micros: int = 0  # accruals minus accrual reversals
    reserved_micros: int = 0  # requested for payout, minus payouts that failed
    paid_micros: int = 0  # confirmed paid by Stripe
    payout_sequence: int = 0
    last_payout_at: str | None = None  # ledger time of the last payout request
    last_failure_at: str | None = None  # ledger time of the last permanently failed payout
    upto: int = -1  # ledger offset this balance is folded up to

    @property
    def unpaid_micros(self) -> int:
        return self.accrued_micros - self.reserved_micros

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> HolderBalance:
        return cls(**raw)


def _seconds_between(earlier: str | None, later: str) -> float | None:
    if earlier is None:
        return None
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def apply_amount(state: HolderBalance, entry_type: str, amount: int, at: str | None = None) -> None:
    """The effect of one ledger entry (created at ``at``) on a holder's balance."""
    if entry_type in CREDITS:
        state.accrued_micros += CREDITS[entry_type] * amount
    elif entry_type == "payout":
        state.paid_micros += amount
    elif entry_type == "payout_reversal":
        state.reserved_micros -= amount
        state.last_failure_at = max(filter(None, [state.last_failure_at, at]), default=None)
    else:
        raise ValueError(f"unknown entry_type {entry_type!r}")


def payout_due(state: HolderBalance, policy: PayoutPolicy, entry_time: str) -> dict[str, Any] | None:
    """The payout request to issue now, if the policy allows one. Reserves it."""
    amount = whole_cents(state.unpaid_micros)  # sub-cent remainders stay on the balance
    if amount <= 0 or policy.blocked(amount, _seconds_between(state.last_payout_at, entry_time),
                                     _seconds_between(state.last_failure_at, entry_time)):
        return None
    request = {
        "schema_version": 1,
        "payout_id": payout_id(state.holder_id, state.payout_sequence),
        "holder_id": state.holder_id,
        "amount_micros": amount,
        "currency": state.currency,
        "sequence": state.payout_sequence,
        "balance_after_micros": state.unpaid_micros - amount,
        "requested_at": entry_time,
        "estimated_fee_micros": policy.estimated_fee(amount),
    }
    reserve(state, request)
    return request


def reserve(state: HolderBalance, request: dict[str, Any]) -> None:
    state.reserved_micros += int(request["amount_micros"])
    state.payout_sequence = max(state.payout_sequence, int(request["sequence"]) + 1)
    state.last_payout_at = max(filter(None, [state.last_payout_at, request["requested_at"]]))


@dataclass
class BalanceBook:
    """The balances agent's logic over its table (a Faust table, or a dict in tests)."""

    table: MutableMapping[str, Any]
    default_policy: PayoutPolicy = field(default_factory=PayoutPolicy)
    dedupe_window: int = 1_000_000
    _marks: ExpiryIndex = field(init=False)
    _states: dict[str, HolderBalance] = field(default_factory=dict)
    needs_rebuild: bool = True

    def __post_init__(self) -> None:
        self._marks = ExpiryIndex(self.dedupe_window)

    def policy(self, holder_id: str) -> PayoutPolicy:
        raw = self.table.get(f"pol:{holder_id}")
        return PayoutPolicy.from_json(raw, self.default_policy) if raw else self.default_policy

    def state(self, holder_id: str, currency: str = "USD") -> HolderBalance:
        if holder_id not in self._states:
            raw = self.table.get(f"h:{holder_id}")
            self._states[holder_id] = HolderBalance.from_json(raw) if raw else HolderBalance(holder_id, currency)
        return self._states[holder_id]

    def rebuild(self) -> list[dict[str, Any]]:
        """Reconcile every holder with the marks and payouts newer than its balance;
        returns the payout requests that have no outcome yet (to re-send)."""
        states: dict[str, HolderBalance] = {}
        marks: list[tuple[str, dict[str, Any]]] = []
        payouts: dict[str, dict[str, Any]] = {}
        self._marks.clear()
        for key, value in list(self.table.items()):
            kind, _, ident = key.partition(":")
            if kind == "h":
                states[ident] = HolderBalance.from_json(value)
            elif kind == "e":
                marks.append((ident, value))
                self._marks.add(value["part"], value["o"], key)
            elif kind == "p":
                payouts[ident] = value
        completed = set()
        for _, mark in sorted(marks, key=lambda m: m[1]["o"]):
            if mark["t"] in ("payout", "payout_reversal"):
                completed.add(mark["pid"])
            state = states.setdefault(mark["h"], HolderBalance(mark["h"], mark.get("cur", "USD")))
            if mark["o"] > state.upto:
                apply_amount(state, mark["t"], mark["a"], mark.get("at"))
        for request in sorted(payouts.values(), key=lambda r: (r["holder_id"], r["sequence"])):
            state = states.setdefault(request["holder_id"], HolderBalance(request["holder_id"]))
            if request["o"] > state.upto and request["sequence"] >= state.payout_sequence:
                reserve(state, request)
        self._states = states
        self.needs_rebuild = False
        return [strip(r) for pid, r in sorted(payouts.items()) if pid not in completed]

    def apply(self, entry: dict[str, Any], partition: int, offset: int) -> list[dict[str, Any]]:
        """Apply one ledger entry read at (partition, offset); the payout requests to send.
        If applying fails half-way (a table write raising), the in-memory balances may be
        ahead of the table: they are rebuilt from the table before the next entry."""
        try:
            return self._apply(entry, partition, offset)
        except BaseException:
            self.needs_rebuild = True
            raise

    def _apply(self, entry: dict[str, Any], partition: int, offset: int) -> list[dict[str, Any]]:
        mark_key = f"e:{entry['entry_id']}"
        mark = self.table.get(mark_key)
        if mark is not None:  # a duplicate or a replay: nothing counts twice
            request = self.table.get(f"p:{mark['p']}") if mark.get("p") else None
            return [strip(request)] if request else []
        holder_id = entry["holder_id"]
        state = self.state(holder_id, entry.get("currency", "USD"))
        apply_amount(state, entry["entry_type"], int(entry["amount_micros"]), entry.get("created_at"))
        request = None
        if entry["entry_type"] in ("accrual", "payout_reversal"):
            request = payout_due(state, self.policy(holder_id), entry.get("created_at") or "")
        if request is not None:
            self.table[f"p:{request['payout_id']}"] = {**request, "o": offset}
        self.table[mark_key] = {
            "h": holder_id, "t": entry["entry_type"], "a": int(entry["amount_micros"]), "o": offset,
            "part": partition, "cur": state.currency, "pid": entry.get("payout_id"),
            "p": request["payout_id"] if request else None,
            **({"at": entry.get("created_at")} if entry["entry_type"] == "payout_reversal" else {}),
        }
        state.upto = offset
        self.table[f"h:{holder_id}"] = state.to_json()
        self._marks.add(partition, offset, mark_key)
        for expired in self._marks.expire(partition):
            self.table.pop(expired, None)
        return [request] if request else []


def strip(request: dict[str, Any]) -> dict[str, Any]:
    """A stored payout record without its bookkeeping fields."""
    return {k: v for k, v in request.items() if k != "o"}
