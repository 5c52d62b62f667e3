"""Topic contracts: JSON Schemas (versioned), topic manifests and example payloads."""

from __future__ import annotations

import json
from collections.abc import Callable
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


def _strict_integer(checker: Any, instance: Any) -> bool:
    """JSON Schema calls 25000.0 an "integer"; the ledger does not. A number counts as an
    integer only if it was written as one (decoders give ``int`` for ``25000``, ``float``
    for ``25000.0``), so a value that passed validation stays an integer all the way to
    ClickHouse's Int64 columns."""
    return isinstance(instance, int) and not isinstance(instance, bool)


@cache
def validator(name: str) -> jsonschema.protocols.Validator:
    s = schema(name)
    base = jsonschema.validators.validator_for(s)
    cls = jsonschema.validators.extend(base, type_checker=base.TYPE_CHECKER.redefine("integer", _strict_integer))
    return cls(s, format_checker=base.FORMAT_CHECKER)  # type: ignore[no-any-return]


class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice: the payload is ambiguous."""

    def __init__(self, path: str, parsed: Any = None):
        self.path = path
        self.parsed = parsed  # the document, each repeated key's value replaced by a marker
        super().__init__(f"the key {path.rsplit('/', 1)[-1]!r} appears more than once in the same object "
                         f"(at {path}); send each key once")


class _Duplicate:
    __slots__ = ()


_DUPLICATE = _Duplicate()


def strict_loads(raw: bytes | str, parse_constant: Any = None) -> Any:
    """``json.loads`` that rejects ambiguous input: a key twice in one object raises
    :class:`DuplicateKeyError` naming the key's path (``json`` would keep the last value,
    so ``{"revenue_micros": 1, "revenue_micros": 1000000}`` would be paid at the second)."""
    found = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal found
        obj: dict[str, Any] = {}
        for key, value in items:
            if key in obj:
                found = True
                value = _DUPLICATE
            obj[key] = value
        return obj

    value = json.loads(raw, object_pairs_hook=pairs, parse_constant=parse_constant)
    if found:
        raise DuplicateKeyError(first_path(value, lambda v: v is _DUPLICATE) or "(root)", value)
    return value


def first_path(value: Any, match: Callable[[Any], bool], path: str = "") -> str | None:
    """The JSON-pointer-like path (``a/b/0``) of the first key or value in ``value`` for
    which ``match`` is true, depth first in document order; None if there is none."""
    if match(value):
        return path
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}/{_display(key)}" if path else _display(key)
            if match(key):
                return where
            found = first_path(item, match, where)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = first_path(item, match, f"{path}/{i}")
            if found is not None:
                return found
    return None


def _display(key: Any) -> str:
    return str(key).encode("utf-8", "backslashreplace").decode()


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
