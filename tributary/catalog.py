"""Registering works and onboarding holders: records on ``catalog-updates``."""

from __future__ import annotations

from typing import Any

import stripe

from schemas import first_problem
from tributary import kafka
from tributary.platform.procs import PlatformError
from tributary.topics import Topic


class CatalogError(ValueError):
    pass


def onboard_holder(holder: dict[str, Any], stripe_key: str, stripe_api_base: str | None) -> str:
    """Create the holder's Connect account (custom, transfers capability); its id."""
    client = stripe.StripeClient(stripe_key, base_addresses={"api": stripe_api_base} if stripe_api_base else None)
    try:
        account = _create_account(client, holder)
    except stripe.StripeError as exc:
        raise PlatformError(
            f"Stripe refused to onboard holder {holder['holder_id']}: {exc.user_message or exc} "
            "(check STRIPE_API_KEY and that stripe-mock or Stripe is reachable)"
        ) from None
    return str(account.id)


def _create_account(client: stripe.StripeClient, holder: dict[str, Any]) -> Any:
    return client.v1.accounts.create(params={
        "type": "custom",
        "country": "US",
        "email": holder.get("email", f"{holder['holder_id']}@example.invalid"),
        "business_profile": {"name": holder.get("name", holder["holder_id"])},
        "capabilities": {"transfers": {"requested": True}},
        "metadata": {"holder_id": holder["holder_id"]},
    }, options={"idempotency_key": f"onboard-{holder['holder_id']}"})


def holder_record(holder: dict[str, Any], stripe_account: str) -> dict[str, Any]:
    return {"schema_version": 1, "kind": "holder", "holder_id": holder["holder_id"],
            "name": holder.get("name", holder["holder_id"]), "stripe_account": stripe_account}


def policy_record(holder_id: str, **settings: Any) -> dict[str, Any]:
    record = {"schema_version": 1, "holder_id": holder_id,
              **{k: v for k, v in settings.items() if v is not None}}
    problem = first_problem("holder-policy.v1", record)
    if problem is not None:
        raise CatalogError(f"payout policy for {holder_id!r}: {problem}")
    return record


def publish_policies(bootstrap: str, policies: list[dict[str, Any]]) -> None:
    producer = kafka.producer(bootstrap)
    for policy in policies:
        producer.produce(Topic.HOLDER_POLICIES.value, key=policy["holder_id"].encode(), value=kafka.dumps(policy))
    if producer.flush(30):
        raise PlatformError(f"payout policies were not acknowledged by Kafka at {bootstrap} within 30s")


def work_record(work: dict[str, Any]) -> dict[str, Any]:
    record = {"schema_version": 1, "kind": "work", "work_id": work.get("work_id"),
              "holder_id": work.get("holder_id"), "title": work.get("title", ""),
              "license": work.get("license", ""), "text": work.get("text")}
    problem = first_problem("catalog-update.v1", record)
    if problem is not None:
        raise CatalogError(f"work {work.get('work_id')!r}: {problem}")
    for field in ("work_id", "holder_id", "text"):
        if not record.get(field):
            raise CatalogError(f"work {work.get('work_id')!r}: {field} is required")
    return record


def publish(bootstrap: str, records: list[dict[str, Any]]) -> None:
    producer = kafka.producer(bootstrap)
    for rec in records:
        key = rec.get("work_id") if rec["kind"] != "holder" else f"holder:{rec['holder_id']}"
        producer.produce(Topic.CATALOG_UPDATES.value, key=str(key).encode(), value=kafka.dumps(rec))
    if producer.flush(30):
        raise PlatformError(f"catalog records were not acknowledged by Kafka at {bootstrap} within 30s: "
                            "is it running? (`tributary up`, `tributary status`)")
