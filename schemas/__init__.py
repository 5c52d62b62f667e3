"""Topic contracts: JSON Schemas (versioned), topic manifests and example payloads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

ROOT = Path(__file__).resolve().parent


@dataclass(frozen=True)
class TopicManifest:
    name: str
    key: str
    partitions: int
    replication_factor: int
    retention_ms: int
    cleanup_policy: str
    schemas: dict[str, str]
    current_version: int
    producers: list[str]
    consumers: list[str]
    description: str = ""

    @property
    def config(self) -> dict[str, str]:
        return {"retention.ms": str(self.retention_ms), "cleanup.policy": self.cleanup_policy}


@cache
def topic_manifests() -> dict[str, TopicManifest]:
    manifests = {}
    for path in sorted((ROOT / "topics").glob("*.json")):
        manifest = TopicManifest(**json.loads(path.read_text()))
        manifests[manifest.name] = manifest
    return manifests


@cache
def schema(name: str) -> dict[str, Any]:
    """The JSON Schema ``name`` (e.g. ``inference-event.v1``)."""
    path = ROOT / "json" / f"{name}.json"
    if not path.exists():
        raise KeyError(f"no schema named {name!r} under {ROOT / 'json'}")
    return json.loads(path.read_text())  # type: ignore[no-any-return]


@cache
def validator(name: str) -> jsonschema.protocols.Validator:
    s = schema(name)
    cls = jsonschema.validators.validator_for(s)
    return cls(s, format_checker=cls.FORMAT_CHECKER)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class SchemaProblem:
    """The first problem found in a payload: which field, and why."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


def first_problem(name: str, payload: Any) -> SchemaProblem | None:
    """Validate ``payload`` against schema ``name``; None if valid."""
    errors = sorted(validator(name).iter_errors(payload), key=lambda e: (len(e.path), e.message))
    if not errors:
        return None
    err = errors[0]
    parts = [str(p) for p in err.absolute_path]
    message = err.message
    if err.validator == "required" and isinstance(err.instance, dict):
        missing = [k for k in err.validator_value if k not in err.instance]
        if missing:
            parts.append(missing[0])
            message = f"{missing[0]!r} is required but missing"
    elif err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = set(err.schema.get("properties", {}))
        extra = sorted(k for k in err.instance if k not in allowed)
        if extra:
            parts.append(extra[0])
            message = f"{extra[0]!r} is not a field of this schema version"
    path = "/".join(parts) or "(root)"
    if len(message) > 300:
        message = message[:300] + "..."
    return SchemaProblem(field=path, reason=message)


def examples(topic: str) -> list[tuple[str, bytes]]:
    """(file name, raw bytes) of every example payload for ``topic``."""
    folder = ROOT / "examples" / topic
    return [(p.name, p.read_bytes()) for p in sorted(folder.glob("*.json"))]
