"""Payout policy: when a holder is paid. Per holder (``holder-policies`` topic) or the
defaults (``TRIBUTARY_PAYOUT_*``); amounts per currency where stated."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from tributary.money import BPS_DENOMINATOR

# the amounts a policy may state per currency
CURRENCY_AMOUNTS = ("min_payout_micros", "fee_fixed_micros")


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

    # per currency: {"JPY": {"min_payout_micros": ..., "fee_fixed_micros": ...}}; the amounts
    # above apply to a currency not listed (they are micros of whichever currency is paid)
    currencies: dict[str, dict[str, int]] = field(default_factory=dict)

    def for_currency(self, currency: str) -> PayoutPolicy:
        """This policy with the amounts stated for ``currency``, if any."""
        stated = self.currencies.get(currency) or {}
        return replace(self, min_payout_micros=stated.get("min_payout_micros", self.min_payout_micros),
                       fee_fixed_micros=stated.get("fee_fixed_micros", self.fee_fixed_micros))

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
        if "currencies" in known:  # a holder's amounts per currency add to (and override) the defaults'
            known["currencies"] = {**defaults.currencies, **known["currencies"]}
        return replace(defaults, **known)
