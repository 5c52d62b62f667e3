"""Royalty contracts: data, versioned, immutable per version."""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

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


class ContractBook:
    """All contract versions; ``find`` picks the newest version in force at a time."""

    def __init__(self, contracts: list[Contract]):
        self._by_id: dict[str, list[Contract]] = {}
        for c in contracts:
            self._by_id.setdefault(c.contract_id, []).append(c)
        for versions in self._by_id.values():
            versions.sort(key=lambda c: c.version, reverse=True)

    @classmethod
    def load(cls, path: Path | None = None) -> ContractBook:
        path = path or Path(os.environ.get("TRIBUTARY_CONTRACTS_FILE", DEFAULT_CONTRACTS))
        raw = json.loads(Path(path).read_text())
        contracts = []
        for item in raw["contracts"]:
            contracts.append(
                Contract(
                    contract_id=item["contract_id"],
                    version=int(item["version"]),
                    currency=item["currency"],
                    royalty_rate_bps=int(item["royalty_rate_bps"]),
                    price_per_1k_input_tokens_micros=int(item["price_per_1k_input_tokens_micros"]),
                    price_per_1k_output_tokens_micros=int(item["price_per_1k_output_tokens_micros"]),
                    valid_from=parse_time(item["valid_from"]),
                    valid_to=parse_time(item["valid_to"]),
                    models=tuple(item.get("models", ())),
                    probable_weight_bps=_bps(item.get("probable_weight_bps", 10_000), item),
                )
            )
        return cls(contracts)

    def known(self, contract_id: str) -> bool:
        return contract_id in self._by_id

    def find(self, contract_id: str, when: datetime) -> Contract | None:
        for contract in self._by_id.get(contract_id, []):
            if contract.covers(when):
                return contract
        return None
