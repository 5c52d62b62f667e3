"""Executing one payout as a Connect transfer, exactly once in outcome.

Recovery points (in order):
  1. the payout already has a result (read from ``payout-results`` at start) -> skip;
  2. Stripe already has a transfer for it (``transfer_group`` = payout id) -> use it;
     Stripe prunes idempotency keys after 24 h, so this lookup, not the key, is what
     makes a late retry safe;
  3. create the transfer with idempotency key = payout id.
Each request is retried by stripe-python itself (``max_network_retries``, with its
backoff): connection errors, 409s and 5xx, and whatever Stripe's
``Stripe-Should-Retry`` header asks to retry (a lock timeout's 429), never what it
says not to; a retried create sends the same idempotency key. What still fails is
sorted into retryable (Stripe unreachable, rate limited or failing: the sink holds
the payout, nothing committed, and tries it again later) and permanent (invalid or
restricted account, insufficient platform balance, or anything Stripe says retrying
will not fix: the payout fails and its amount returns to the holder's balance
through a ledger reversal).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import stripe

from tributary.money import from_stripe_amount, payable_step_micros, to_stripe_amount

MAX_NETWORK_RETRIES = 3  # stripe-python's own retries per request (0.5 s .. 5 s apart)


class RetryableStripeError(RuntimeError):
    pass


@dataclass(frozen=True)
class Outcome:
    status: str  # "paid" | "failed"
    transfer_id: str | None
    destination: str | None
    error: str | None = None


@dataclass(frozen=True)
class FoundTransfer:
    id: str
    amount: int  # in the currency's Stripe minor units (cents, yen, fils)
    destination: str | None
    transfer_group: str | None
    payout_id: str | None  # from metadata
    created: int
    currency: str = "usd"

    @property
    def amount_micros(self) -> int:
        return from_stripe_amount(self.amount, self.currency)

    def describe(self) -> str:
        return f"{self.id} ({self.amount} {self.currency.upper()} minor units)"


class TransferApi(Protocol):
    def find(self, payout_id: str) -> FoundTransfer | None: ...
    def create(self, payout: dict[str, Any], destination: str) -> str: ...


class StripeTransfers:
    """The real Stripe API (or stripe-mock) through the official client."""

    def __init__(self, api_key: str, api_base: str | None = None, max_network_retries: int = MAX_NETWORK_RETRIES):
        self.client = stripe.StripeClient(api_key, base_addresses={"api": api_base} if api_base else None,
                                          max_network_retries=max_network_retries)

    def find(self, payout_id: str) -> FoundTransfer | None:
        listing = self.client.v1.transfers.list(params={"transfer_group": payout_id, "limit": 10})
        for transfer in listing.auto_paging_iter():
            if transfer.transfer_group == payout_id:
                return _found(transfer)
        return None

    def all_transfers(self, created_gte: int | None = None) -> list[FoundTransfer]:
        """Every transfer of the platform (newest first), across all of Stripe's pages."""
        params: dict[str, Any] = {"limit": 100}
        if created_gte is not None:
            params["created"] = {"gte": created_gte}
        listing = self.client.v1.transfers.list(params=params)  # type: ignore[arg-type]
        return [_found(t) for t in listing.auto_paging_iter()]

    def create(self, payout: dict[str, Any], destination: str) -> str:
        transfer = self.client.v1.transfers.create(
            params={
                "amount": to_stripe_amount(payout["amount_micros"], payout["currency"]),
                "currency": payout["currency"].lower(),
                "destination": destination,
                "transfer_group": payout["payout_id"],
                "metadata": {"payout_id": payout["payout_id"], "holder_id": payout["holder_id"],
                             "sequence": str(payout["sequence"]),
                             # the balance this payout settles: everything accrued up to then
                             "period": f"through {payout.get('requested_at') or ''}"},
            },
            options={"idempotency_key": payout["payout_id"]},
        )
        return str(transfer.id)


def _found(transfer: Any) -> FoundTransfer:
    raw = transfer.to_dict()
    metadata = raw.get("metadata") or {}
    destination = raw.get("destination")
    if isinstance(destination, dict):  # expanded
        destination = destination.get("id")
    return FoundTransfer(id=str(raw["id"]), amount=int(raw["amount"]), destination=destination,
                         transfer_group=raw.get("transfer_group"), payout_id=metadata.get("payout_id"),
                         created=int(raw.get("created") or 0), currency=str(raw.get("currency") or "usd"))


def should_retry_header(exc: stripe.StripeError) -> bool | None:
    """Stripe's own advice on retrying this request (``Stripe-Should-Retry``), if it gave any."""
    headers = {str(k).lower(): str(v).lower() for k, v in (exc.headers or {}).items()}
    return {"true": True, "false": False}.get(headers.get("stripe-should-retry", ""))


def is_retryable(exc: Exception) -> bool:
    """After the client's own retries: True to hold the payout and try it again later,
    False when it has failed for good."""
    if isinstance(exc, stripe.APIConnectionError):
        return True  # Stripe unreachable: maybe created, maybe not; the lookup will tell
    if isinstance(exc, stripe.StripeError):
        advice = should_retry_header(exc)
        if advice is not None:
            return advice  # e.g. false on a 500 whose result the idempotency key would replay
        status = getattr(exc, "http_status", None)
        return status is None or status >= 500 or status in (409, 429)
    return False


def execute(payout: dict[str, Any], destination: str | None, api: TransferApi) -> Outcome:
    """Pay ``payout`` once. Raises RetryableStripeError for transient failures."""
    currency = payout["currency"]
    if payout["amount_micros"] % payable_step_micros(currency):
        return Outcome("failed", None, destination, f"amount {payout['amount_micros']} micros is not payable in "
                                                    f"{currency} (a multiple of {payable_step_micros(currency)})")
    if not destination:
        return Outcome("failed", None, None,
                       f"holder {payout['holder_id']} has no Connect account: onboard it with "
                       "`tributary holders add`")
    try:
        existing = api.find(payout["payout_id"])
        if existing:
            if not _same_amount(existing, payout):
                # never report someone else's transfer as this payout: fail it loudly, its amount
                # returns to the holder's balance, and `tributary reconcile` lists the conflict
                return Outcome("failed", None, destination,
                               f"transfer {existing.describe()} already exists for payout id "
                               f"{payout['payout_id']}, not {payout['amount_micros']} micros {currency}")
            return Outcome("paid", existing.id, destination)
        return Outcome("paid", api.create(payout, destination), destination)
    except Exception as exc:
        if is_retryable(exc):
            raise RetryableStripeError(str(exc)) from exc
        if isinstance(exc, stripe.StripeError):
            if (getattr(exc, "http_status", None) or 0) >= 500:
                # a server error Stripe says not to retry: its outcome is Stripe's to tell, so
                # look once more before failing the payout (reconcile lists what slips through)
                created = _lookup(api, payout, destination)
                if created is not None:
                    return created
            return Outcome("failed", None, destination, f"{type(exc).__name__}: {exc.user_message or exc}")
        raise


def _lookup(api: TransferApi, payout: dict[str, Any], destination: str) -> Outcome | None:
    try:
        existing = api.find(payout["payout_id"])
    except stripe.StripeError as exc:
        raise RetryableStripeError(f"could not check whether the transfer was made: {exc}") from exc
    if existing and _same_amount(existing, payout):
        return Outcome("paid", existing.id, destination)
    return None


def _same_amount(transfer: FoundTransfer, payout: dict[str, Any]) -> bool:
    return (transfer.currency.upper(), transfer.amount_micros) == (payout["currency"], payout["amount_micros"])


def result_record(payout: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "payout_id": payout["payout_id"],
        "holder_id": payout["holder_id"],
        "status": outcome.status,
        "amount_micros": payout["amount_micros"],
        "transfer_id": outcome.transfer_id,
        "destination": outcome.destination,
        "error": outcome.error,
        "completed_at": datetime.now(UTC).isoformat(),
    }
