"""Topic contracts: JSON Schemas (versioned), topic manifests and example payloads."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs

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


_STRICT_TYPE = "x-tributary-type"


class _StrictType:
    """A jsonschema-rs keyword, placed beside ``type`` in the fast validator's copy of a
    schema wherever the repo's types are stricter than JSON Schema's: a number written
    as a float (25000.0) is not an ``integer`` (:func:`_strict_integer`), and a tuple is
    not an ``array`` (the full validator's type checker wants a list). jsonschema-rs
    hands the keyword the Python object itself, so it can tell."""

    def __init__(self, parent_schema: dict[str, Any], value: Any, schema_path: list[str | int]):
        types = {value} if isinstance(value, str) else set(value)
        self.no_float = "integer" in types and "number" not in types
        self.no_tuple = "array" in types

    def validate(self, instance: Any) -> None:
        if self.no_float and isinstance(instance, float):
            raise ValueError(f"{instance!r} is written as a float, not an integer")
        if self.no_tuple and isinstance(instance, tuple):
            raise ValueError("a tuple is not a JSON array here")


_LITERALS = ("const", "enum", "default", "examples")  # values, not schemas: left as they are


def _with_strict_types(node: Any) -> Any:
    """``node`` with :data:`_STRICT_TYPE` beside every ``type`` naming integer or array."""
    if isinstance(node, list):
        return [_with_strict_types(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: value if key in _LITERALS else _with_strict_types(value) for key, value in node.items()}
    kind = node.get("type")
    names = {kind} if isinstance(kind, str) else set(kind) if isinstance(kind, list) else set()
    if names & {"integer", "array"}:
        out[_STRICT_TYPE] = kind
    return out


@cache
def _fast_validator(name: str) -> Any:
    full = validator(name)
    checker = full.format_checker
    # the formats the full validator checks, checked by the same functions; the others
    # jsonschema-rs knows (date-time) it checks itself, which can only refuse more
    formats = {fmt: (lambda value, fmt=fmt: checker.conforms(value, fmt)) for fmt in checker.checkers} \
        if checker is not None else {}
    return jsonschema_rs.validator_for(_with_strict_types(schema(name)), validate_formats=True, formats=formats,
                                       keywords={_STRICT_TYPE: _StrictType})


def fast_valid(name: str, instance: Any) -> bool:
    """Whether ``instance`` is valid under schema ``name``, by jsonschema-rs (~100x faster
    than :func:`validator`). True only where the full validator agrees: the repo's
    stricter types are added to the fast schema (:class:`_StrictType`), formats the full
    validator checks are checked by its functions, and what jsonschema-rs cannot read
    (lone surrogates, non-string keys, other Python types) is False. False is not
    "invalid": ask :func:`first_problem`, which runs the full validator then."""
    try:
        return bool(_fast_validator(name).is_valid(instance))
    except Exception:  # noqa: BLE001 - conversion errors of any kind: let the full validator judge
        return False


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
    """Validate ``payload`` against schema ``name``; None if valid. A valid payload costs
    only the fast validator (:func:`fast_valid`); the full one words the problem."""
    if fast_valid(name, payload):
        return None
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


def duplicate_path(value: Any) -> str | None:
    """In a document :func:`strict_loads` refused (``DuplicateKeyError.parsed``): the path
    of the first repeated key within ``value`` (a part of that document), if any."""
    return first_path(value, lambda v: v is _DUPLICATE)
