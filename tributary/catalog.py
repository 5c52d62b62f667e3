"""Registering works and onboarding holders: records on ``catalog-updates``."""

from __future__ import annotations

import json
import re
from pathlib import Path
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


TEXT_SUFFIXES = (".txt", ".md", ".text")


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-").lower()
    return slug or "work"


def works_from_path(path: Path, holder_id: str | None = None, license_terms: str = "",
                    work_id: str | None = None, title: str | None = None) -> list[dict[str, Any]]:
    """Works to register from a JSON lines file (one {work_id, holder_id, title, license,
    text} per line), a text file (one work) or a folder of text files (one work each,
    work id from the file name). Text files need ``holder_id``."""
    if path.is_dir():
        files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise CatalogError(f"{path}: no {'/'.join(TEXT_SUFFIXES)} files in this folder")
        if work_id or title:
            raise CatalogError("--work-id and --title apply to a single file, not a folder")
        return [_text_work(f, holder_id, license_terms, None, None) for f in files]
    if not path.exists():
        raise CatalogError(f"{path}: no such file or folder")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        records = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    work = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CatalogError(f"{path}:{n}: not JSON: {exc}") from None
                if holder_id and not work.get("holder_id"):
                    work["holder_id"] = holder_id
                try:
                    records.append(work_record(work))
                except CatalogError as exc:
                    raise CatalogError(f"{path}:{n}: {exc}") from None
        return records
    return [_text_work(path, holder_id, license_terms, work_id, title)]


def _text_work(path: Path, holder_id: str | None, license_terms: str, work_id: str | None,
               title: str | None) -> dict[str, Any]:
    if not holder_id:
        raise CatalogError(f"{path}: a text file needs --holder (the rights holder's id)")
    text = path.read_text(encoding="utf-8", errors="strict")
    return work_record({"work_id": work_id or _slug(path.stem), "holder_id": holder_id,
                        "title": title or path.stem.replace("_", " ").replace("-", " "),
                        "license": license_terms, "text": text})


def removal_record(work_id: str, reason: str = "") -> dict[str, Any]:
    record = {"schema_version": 1, "kind": "work_removed", "work_id": work_id, "title": reason}
    problem = first_problem("catalog-update.v1", record)
    if problem is not None:
        raise CatalogError(f"work {work_id!r}: {problem}")
    return record


def publish(bootstrap: str, records: list[dict[str, Any]]) -> None:
    producer = kafka.producer(bootstrap)
    for rec in records:
        key = rec.get("work_id") if rec["kind"] != "holder" else f"holder:{rec['holder_id']}"
        producer.produce(Topic.CATALOG_UPDATES.value, key=str(key).encode(), value=kafka.dumps(rec))
    if producer.flush(30):
        raise PlatformError(f"catalog records were not acknowledged by Kafka at {bootstrap} within 30s: "
                            "is it running? (`tributary up`, `tributary status`)")
