"""Holder balances and payout triggers, exact under crash and replay.

The balances stage (:mod:`streams.money`) reads ``royalty-ledger`` and
``holder-policies`` (both keyed by holder_id, co-partitioned), so all entries of one
holder arrive in order on one partition. Its state and the payout requests it issues
are committed in one Kafka transaction with its input offsets (:mod:`tributary.txloop`):
a crash loses or repeats nothing, so there are no marks to keep and nothing to re-send.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol

from tributary.ids import payout_id
from tributary.ledger import PAYOUT_OUTCOMES
from tributary.money import payable
from tributary.policy import PayoutPolicy

CREDITS = {"accrual": 1, "accrual_reversal": -1}


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
    amount = payable(state.unpaid_micros, state.currency)  # sub-cent (sub-yen) remainders stay on the balance
    if amount <= 0 or policy.blocked(amount, _seconds_between(state.last_payout_at, entry_time),
                                     _seconds_between(state.last_failure_at, entry_time)):
        return None
    request = {
        "schema_version": 1,
        "payout_id": payout_id(state.holder_id, state.payout_sequence, state.currency),
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


def balance_key(holder_id: str, currency: str) -> str:
    return f"h:{currency}:{holder_id}"


class BalanceState(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...
    def __setitem__(self, key: str, value: Any) -> None: ...
    def pop(self, key: str, default: Any = None) -> Any: ...


@dataclass
class BalanceBook:
    """The balances stage's logic over the state of one partition (``tributary.state``):

        h:<currency>:<holder_id>  the holder's balance in that currency (never summed
                                  across currencies; each has its own payouts)
        cur:<holder_id>           the currencies the holder has balances in
        acct:<holder_id>          whether the holder's Connect account can receive
                                  transfers, and why not (payouts wait while it cannot)
        p:<payout_id>             a payout requested and not yet settled
        pol:<holder_id>           the holder's payout policy (amounts per currency)

    Accruals arrive exactly once (accrue commits them in transactions). Payout outcomes
    come from the Stripe sink, which may write one twice after a crash: an outcome
    counts only while its payout is pending, and settles it. The requests this returns
    are produced in the same transaction as the state, so each is issued once."""

    default_policy: PayoutPolicy = field(default_factory=PayoutPolicy)
    _open: dict[tuple[str, str], HolderBalance] = field(default_factory=dict)
    _state: BalanceState | None = None

    def policy(self, state: BalanceState, holder_id: str) -> PayoutPolicy:
        raw = state.get(f"pol:{holder_id}")
        return PayoutPolicy.from_json(raw, self.default_policy) if raw else self.default_policy

    def set_policy(self, state: BalanceState, raw: dict[str, Any]) -> PayoutPolicy:
        policy = PayoutPolicy.from_json(raw, self.default_policy)
        state[f"pol:{raw['holder_id']}"] = asdict(policy)
        return policy

    def waiting_reason(self, state: BalanceState, holder_id: str) -> str | None:
        """Why this holder's payouts wait on their Connect account; None if they need not."""
        account = state.get(f"acct:{holder_id}")
        return None if account is None or account["ready"] else str(account["reason"] or "account not ready")

    def set_readiness(self, state: BalanceState, raw: dict[str, Any]) -> list[dict[str, Any]]:
        """Whether the holder's Connect account can receive transfers (holder-account.v1).
        While it cannot, no payout is requested; when it becomes ready, whatever is due in
        each of the holder's currencies is requested at once (returned)."""
        holder_id = raw["holder_id"]
        was_waiting = self.waiting_reason(state, holder_id) is not None
        state[f"acct:{holder_id}"] = {"ready": bool(raw["transfers_ready"]), "reason": raw["reason"],
                                      "account": raw["stripe_account"], "checked_at": raw["checked_at"]}
        if not raw["transfers_ready"]:
            return []
        out = []
        for currency in state.get(f"cur:{holder_id}") or []:
            balance = self.balance(state, holder_id, currency)
            if was_waiting:  # the payouts that failed on the account are not held back any more
                balance.last_failure_at = None
            request = payout_due(balance, self.policy(state, holder_id).for_currency(currency), raw["checked_at"])
            if request is not None:
                state[f"p:{request['payout_id']}"] = request
                out.append(request)
        return out

    def balance(self, state: BalanceState, holder_id: str, currency: str = "USD") -> HolderBalance:
        if self._state is not state:  # balances are cached per batch and per partition
            self.flush()
            self._state = state
        key = (holder_id, currency)
        if key not in self._open:
            raw = state.get(balance_key(holder_id, currency))
            if raw is None:  # a balance kept before balances were per currency (one per holder)
                legacy = state.get(f"h:{holder_id}")
                if legacy is not None and legacy.get("currency", "USD") == currency:
                    state.pop(f"h:{holder_id}")  # moves to its per-currency key at the next flush
                    raw = legacy
                # a new balance in this currency (or a legacy one moving): listed for set_readiness
                known = state.get(f"cur:{holder_id}") or []
                if currency not in known:
                    state[f"cur:{holder_id}"] = sorted([*known, currency])
            self._open[key] = HolderBalance.from_json(raw) if raw else HolderBalance(holder_id, currency)
        return self._open[key]

    def flush(self) -> None:
        """Write the balances changed since the last flush to their state (end of batch)."""
        if self._state is not None:
            for (holder_id, currency), balance in self._open.items():
                self._state[balance_key(holder_id, currency)] = balance.to_json()
        self._open.clear()
        self._state = None

    def apply(self, state: BalanceState, entry: dict[str, Any]) -> list[dict[str, Any]]:
        """Apply one ledger entry; the payout requests to issue (at most one). The caller
        posts each request's reservation (:func:`tributary.ledger.reservation`) with it."""
        holder_id = entry["holder_id"]
        kind = entry["entry_type"]
        if kind == "reservation":
            return []  # this stage's own posting, applied when it issued the request
        if kind in PAYOUT_OUTCOMES and state.pop(f"p:{entry['payout_id']}") is None:
            return []  # a repeated (or unknown) outcome: settled already
        balance = self.balance(state, holder_id, entry.get("currency", "USD"))
        apply_amount(balance, kind, int(entry["amount_micros"]), entry.get("created_at"))
        if kind not in ("accrual", "payout_reversal"):
            return []
        policy = self.policy(state, holder_id).for_currency(balance.currency)
        if payable(balance.unpaid_micros, balance.currency) < policy.min_payout_micros:
            return []  # the common case, decided without reading the holder's account state
        if self.waiting_reason(state, holder_id):
            return []  # no payout while the holder's Connect account cannot receive transfers
        request = payout_due(balance, policy, entry.get("created_at") or "")
        if request is None:
            return []
        state[f"p:{request['payout_id']}"] = request
        return [request]
