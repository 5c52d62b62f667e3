"""Royalty contracts: data, versioned, immutable per version."""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from schemas import first_problem
from tributary.kafka import TopicReader
from tributary.topics import Topic

log = logging.getLogger("tributary.contracts")

DEFAULT_CONTRACTS = Path(__file__).resolve().parents[1] / "tributary" / "data" / "contracts.json"


@dataclass(frozen=True)
class Contract:
    contract_id: str
    version: int
    currency: str
    royalty_rate_bps: int
    price_per_1k_input_tokens_micros: int
    price_per_1k_output_tokens_micros: int
    valid_from: datetime
    valid_to: datetime
    # the models this version prices (shell-style patterns); empty: every model
    models: tuple[str, ...] = ()
    # the part of a *probable* (semantic, not copied) share paid at once, in basis points;
    # the rest is held in escrow:review until `tributary review` accepts or rejects it.
    # Copied (certain) shares are always paid in full.
    probable_weight_bps: int = 10_000

    def covers(self, when: datetime) -> bool:
        return self.valid_from <= when < self.valid_to

    def covers_model(self, name: str) -> bool:
        return not self.models or any(fnmatch.fnmatchcase(name, pattern) for pattern in self.models)

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out["valid_from"] = self.valid_from.isoformat()
        out["valid_to"] = self.valid_to.isoformat()
        return out


def parse_time(value: str) -> datetime:
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError("timestamp has no time zone")
    return when


def _bps(value: Any, item: dict[str, Any]) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 10_000:
        raise ValueError(f"contract {item.get('contract_id')} v{item.get('version')}: probable_weight_bps must be "
                         f"an integer within 0..10000 (10000: probable shares paid in full, 0: held until "
                         f"reviewed), got {value!r}")
    return value


def parse_contract(item: dict[str, Any]) -> Contract:
    """A contract version from its JSON (contract.v1 fields); ValueError naming what is wrong."""
    try:
        contract = Contract(
            contract_id=str(item["contract_id"]),
            version=int(item["version"]),
            currency=str(item["currency"]),
            royalty_rate_bps=int(item["royalty_rate_bps"]),
            price_per_1k_input_tokens_micros=int(item["price_per_1k_input_tokens_micros"]),
            price_per_1k_output_tokens_micros=int(item["price_per_1k_output_tokens_micros"]),
            valid_from=parse_time(item["valid_from"]),
            valid_to=parse_time(item["valid_to"]),
            models=tuple(item.get("models", ())),
            probable_weight_bps=_bps(item.get("probable_weight_bps", 10_000), item),
        )
    except KeyError as exc:
        raise ValueError(f"contract {item.get('contract_id')} v{item.get('version')}: {exc.args[0]} is missing") from None
    if contract.valid_to <= contract.valid_from:
        raise ValueError(f"contract {contract.contract_id} v{contract.version}: valid_to must be after valid_from")
    return contract


def contract_key(contract: Contract) -> str:
    """Its key on the contracts topic (compacted: one record per version, forever)."""
    return f"{contract.contract_id}@{contract.version}"


def contract_record(contract: Contract) -> dict[str, Any]:
    return {"schema_version": 1, **contract.summary(), "models": list(contract.models)}


class ContractBook:
    """All contract versions; ``find`` picks the newest version in force at a time."""

    def __init__(self, contracts: list[Contract]):
        # asked before an event is refused for an unknown contract or version (the
        # contracts feed reads what was published since; rate-limited there)
        self.on_miss: Any = None
        self._by_id: dict[str, list[Contract]] = {}
        for c in contracts:
            self._by_id.setdefault(c.contract_id, []).append(c)
        for versions in self._by_id.values():
            versions.sort(key=lambda c: c.version, reverse=True)

    @classmethod
    def load(cls, path: Path | None = None) -> ContractBook:
        """The contracts of a file ({"contracts": [...]}): ``TRIBUTARY_CONTRACTS_FILE``, by
        default the built-in sample contracts; ``none`` for no file (the contracts topic only)."""
        setting = os.environ.get("TRIBUTARY_CONTRACTS_FILE", str(DEFAULT_CONTRACTS))
        if path is None and setting.lower() == "none":
            return cls([])
        raw = json.loads(Path(path or setting).read_text())
        return cls([parse_contract(item) for item in raw["contracts"]])

    def versions(self) -> list[Contract]:
        return sorted((c for cs in self._by_id.values() for c in cs), key=lambda c: (c.contract_id, c.version))

    def get(self, contract_id: str, version: int) -> Contract | None:
        return next((c for c in self._by_id.get(contract_id, []) if c.version == version), None)

    def add(self, contract: Contract) -> str | None:
        """Add a version; a version already known with other terms is refused (versions are
        immutable: new terms are a new version). Returns why it was refused, or None."""
        known = self.get(contract.contract_id, contract.version)
        if known is not None:
            return None if known == contract else (
                f"contract {contract.contract_id} v{contract.version} already exists with other terms; "
                f"publish the new terms as v{max(c.version for c in self._by_id[contract.contract_id]) + 1}")
        versions = self._by_id.setdefault(contract.contract_id, [])
        versions.append(contract)
        versions.sort(key=lambda c: c.version, reverse=True)
        return None

    def known(self, contract_id: str) -> bool:
        if contract_id not in self._by_id and self.on_miss is not None:
            self.on_miss(contract_id)
        return contract_id in self._by_id

    def find(self, contract_id: str, when: datetime) -> Contract | None:
        found = self._in_force(contract_id, when)
        if found is None and self.on_miss is not None:
            self.on_miss(contract_id)
            found = self._in_force(contract_id, when)
        return found

    def _in_force(self, contract_id: str, when: datetime) -> Contract | None:
        for contract in self._by_id.get(contract_id, []):
            if contract.covers(when):
                return contract
        return None


class ContractFeed:
    """Keeps a :class:`ContractBook` up to date with the contracts topic: everything on it
    at start, then what arrives (``refresh``). A record that fails its schema, or that
    redefines a known version, is logged and ignored: the first definition stands."""

    def __init__(self, bootstrap: str, book: ContractBook, min_interval_s: float = 2.0, floor_s: float = 0.05):
        self.book, self.min_interval_s, self.floor_s = book, min_interval_s, floor_s
        self._reader = TopicReader(bootstrap, Topic.CONTRACTS.value)
        self._last = 0.0
        self._missed: dict[str, float] = {}

    def _apply(self, msg: Any) -> None:
        try:
            item = json.loads(msg.value() or b"")
            problem = first_problem("contract.v1", item)
            if problem is not None:
                raise ValueError(str(problem))
            refused = self.book.add(parse_contract(item))
        except ValueError as exc:
            refused = str(exc)
        if refused:
            log.error("contract record %s ignored: %s", (msg.key() or b"").decode(errors="replace"), refused)

    def refresh(self) -> None:
        """Read what arrived on the topic."""
        self._last = time.monotonic()
        self._reader.read_to_end(self._apply)

    def missed(self, contract_id: str) -> None:
        """An event names a contract (or a time) no known version covers: read the topic
        first, unless this contract id missed within ``min_interval_s`` (its events arrived
        before it was published: a flood of them must not query Kafka per event) or any
        miss read it within ``floor_s``. The first event of a contract published before it
        always finds it."""
        now = time.monotonic()
        last = self._missed.get(contract_id)
        if (last is not None and now - last < self.min_interval_s) or now - self._last < self.floor_s:
            return
        if len(self._missed) > 10_000:  # a flood of made-up ids: forget, do not grow
            self._missed.clear()
        self._missed[contract_id] = now
        self.refresh()
