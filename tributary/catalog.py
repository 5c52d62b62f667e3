"""Registering works and onboarding holders: records on ``catalog-updates``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schemas import first_problem
from tributary import kafka
from tributary.errors import UserError
from tributary.platform.procs import PlatformError
from tributary.topics import Topic

if TYPE_CHECKING:
    from sinks.stripe.accounts import ConnectAccounts

# The largest catalog record (key + JSON value) we produce. librdkafka refuses a message
# over its ``message.max.bytes`` (1,000,000 by default; the broker's default limit is
# 1 MiB), counting its own framing, so this leaves headroom for that.
MAX_RECORD_BYTES = 990_000


class CatalogError(UserError, ValueError):
    pass


@dataclass(frozen=True)
class Onboarded:
    account: str
    onboarding_url: str  # Stripe's hosted onboarding (an Account Link: expires within minutes)
    ready: bool
    reason: str


def connect_accounts(stripe_key: str, stripe_api_base: str | None, return_url: str) -> ConnectAccounts:
    try:
        from sinks.stripe.accounts import ConnectAccounts  # the ``sinks`` extra
    except ImportError:
        raise PlatformError("onboarding a holder needs the Stripe client: pip install 'tributary[sinks]'") from None
    return ConnectAccounts(stripe_key, stripe_api_base, return_url=return_url)


def onboard_holder(holder: dict[str, Any], accounts: ConnectAccounts) -> Onboarded:
    """Create the holder's Express account (transfers requested) and its onboarding link."""
    import stripe

    try:
        account = accounts.create(holder["holder_id"], holder.get("name", holder["holder_id"]),
                                  holder.get("email") or f"{holder['holder_id']}@example.invalid")
        url = accounts.onboarding_link(account)
        readiness = accounts.readiness(account)
    except stripe.StripeError as exc:
        raise PlatformError(
            f"Stripe refused to onboard holder {holder['holder_id']}: {exc.user_message or exc} "
            "(check STRIPE_API_KEY and that stripe-mock or Stripe is reachable)"
        ) from None
    return Onboarded(account, url, readiness.ready, readiness.reason)


def readiness_record(holder_id: str, account: str, ready: bool, reason: str) -> dict[str, Any]:
    from sinks.stripe.accounts import Readiness

    return Readiness(account, ready, reason).record(holder_id)


def publish_readiness(bootstrap: str, records: list[dict[str, Any]]) -> None:
    """Tell balances whether each holder's account can receive transfers (their payouts wait until it can)."""
    from sinks.stripe.accounts import readiness_key

    kafka.publish(bootstrap, Topic.HOLDER_POLICIES.value, [(f"{r['holder_id']}#account", r) for r in records],
                  "account readiness", partition=lambda key: readiness_key(key.rsplit("#", 1)[0])[1])


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
    kafka.publish(bootstrap, Topic.HOLDER_POLICIES.value, [(p["holder_id"], p) for p in policies], "payout policies")


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
    size = len(kafka.dumps(record)) + len(str(record["work_id"]).encode())
    if size > MAX_RECORD_BYTES:
        raise CatalogError(_too_large(f"work {record['work_id']!r} is {size:,} bytes as a catalog record"))
    return record


def _too_large(what: str) -> str:
    return (f"{what}; a catalog record can be at most {MAX_RECORD_BYTES:,} bytes (Kafka's message size "
            "limit): split the work into several, e.g. one file per chapter")


def _read_text(path: Path) -> str:
    """The UTF-8 text of ``path``, or a CatalogError that says why not."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                           "register plain text (.txt/.md) or JSON lines, converting other formats "
                           "to UTF-8 text first") from None


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
        for n, line in enumerate(_read_text(path).splitlines(), 1):
            if line.strip():
                try:
                    work = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CatalogError(f"{path}:{n}: not JSON: {exc}") from None
                if not isinstance(work, dict):
                    raise CatalogError(f"{path}:{n}: expected a JSON object "
                                       "({\"work_id\": ..., \"holder_id\": ..., \"text\": ...}) per line")
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
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    if size > MAX_RECORD_BYTES:  # too large whatever it holds: say so before reading it
        raise CatalogError(_too_large(f"{path} is {size:,} bytes"))
    text = _read_text(path)
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
    keyed = [(str(r.get("work_id") if r["kind"] != "holder" else f"holder:{r['holder_id']}"), r) for r in records]
    kafka.publish(bootstrap, Topic.CATALOG_UPDATES.value, keyed, "catalog records")
