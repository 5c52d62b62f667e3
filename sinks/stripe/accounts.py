"""Rights holders' Stripe Connect accounts: Express accounts with Stripe-hosted
onboarding, so that they work in live mode (a custom account with no onboarding stays
restricted: no KYC, every transfer fails).

- :meth:`ConnectAccounts.create` makes the holder's Express account (transfers requested);
- :meth:`ConnectAccounts.onboarding_link` is the Account Link the holder opens to give
  Stripe what it needs (identity, bank account); links expire within minutes, so one is
  made each time it is asked for;
- :meth:`ConnectAccounts.login_link` opens the Express dashboard of an onboarded holder;
- :meth:`ConnectAccounts.readiness` says whether the account can receive transfers now
  and, if not, why (Stripe's ``requirements``).

A holder's readiness travels on ``holder-policies`` (``kind: "account"``, keyed by
holder id): the balances stage holds that holder's payouts while the account cannot
receive transfers, with the reason, and issues them once it can.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe

from schemas import topic_manifests
from tributary.partitioner import home_partition
from tributary.topics import Topic


def readiness_key(holder_id: str) -> tuple[bytes, int]:
    """The key and partition of a holder's readiness record on ``holder-policies``: its own
    key (the topic is compacted: it must not replace the holder's policy), on the holder's
    partition (balances reads both there)."""
    partitions = topic_manifests()[Topic.HOLDER_POLICIES.value].partitions
    return f"{holder_id}#account".encode(), home_partition(holder_id, partitions)


@dataclass(frozen=True)
class Readiness:
    account: str
    ready: bool  # the transfers capability is active
    reason: str  # why not ("" when ready)

    def record(self, holder_id: str) -> dict[str, Any]:
        """The ``holder-policies`` record (holder-account.v1) that tells balances."""
        return {"schema_version": 1, "kind": "account", "holder_id": holder_id, "stripe_account": self.account,
                "transfers_ready": self.ready, "reason": self.reason, "checked_at": datetime.now(UTC).isoformat()}


def readiness_of(account: Any) -> Readiness:
    """An account object's readiness, from its transfers capability and requirements."""
    raw = account if isinstance(account, dict) else account.to_dict()
    capabilities = raw.get("capabilities") or {}
    status = capabilities.get("transfers") if isinstance(capabilities, dict) else None
    if status == "active":
        return Readiness(str(raw["id"]), True, "")
    requirements = raw.get("requirements") or {}
    due = list(requirements.get("currently_due") or []) + list(requirements.get("past_due") or [])
    why = [f"transfers capability {status or 'not requested'}"]
    if requirements.get("disabled_reason"):
        why.append(f"disabled: {requirements['disabled_reason']}")
    if due:
        why.append("Stripe still needs: " + ", ".join(sorted(set(due))[:6]) + (" ..." if len(set(due)) > 6 else ""))
    if not raw.get("details_submitted", True):
        why.append("onboarding not finished: send the holder `tributary holders link`")
    return Readiness(str(raw["id"]), False, "; ".join(why))


class ConnectAccounts:
    def __init__(self, api_key: str, api_base: str | None = None, return_url: str = "", refresh_url: str = ""):
        self.client = stripe.StripeClient(api_key, base_addresses={"api": api_base} if api_base else None,
                                          max_network_retries=2)
        self.return_url, self.refresh_url = return_url, refresh_url or return_url

    def create(self, holder_id: str, name: str, email: str, country: str = "US") -> str:
        """The holder's Express account (one per holder: the idempotency key is the holder id)."""
        account = self.client.v1.accounts.create(params={
            "type": "express",
            "country": country,
            "email": email,
            "business_profile": {"name": name},
            "capabilities": {"transfers": {"requested": True}},
            "metadata": {"holder_id": holder_id},
        }, options={"idempotency_key": f"onboard-express-{holder_id}"})
        return str(account.id)

    def onboarding_link(self, account: str) -> str:
        link = self.client.v1.account_links.create(params={
            "account": account, "type": "account_onboarding",
            "refresh_url": self.refresh_url, "return_url": self.return_url})
        return str(link.url)

    def login_link(self, account: str) -> str:
        return str(self.client.v1.accounts.login_links.create(account).url)

    def readiness(self, account: str) -> Readiness:
        return readiness_of(self.client.v1.accounts.retrieve(account))
