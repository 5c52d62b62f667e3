"""The fast validator (jsonschema-rs) never accepts what the full one (jsonschema, with the
repo's stricter integers) refuses: every input of the bad-input corpus, every example
and every example with an integer written as a float or a list as a tuple, against
every schema. Valid inputs take the fast path (that is where the time goes)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from schemas import (
    examples,
    fast_valid,
    first_problem,
    schema,
    strict_loads,
    topic_manifests,
    validator,
)
from tests.corpus import CASES, hostile_valid, preludes

SCHEMAS = sorted({name for m in topic_manifests().values() for name in m.schemas.values()})


def decoded(raw: bytes) -> Any:
    """What ingest would hand the validator, or None if the bytes never get that far."""
    try:
        return strict_loads(raw)
    except (ValueError, RecursionError):  # not JSON, NaN, duplicate keys, too deep: refused before
        return None


def corpus() -> list[tuple[str, Any]]:
    inputs = [(f"corpus/{c.name}", decoded(c.raw)) for c in CASES]
    inputs += [(f"prelude/{n}", decoded(raw)) for n, raw in enumerate(preludes())]
    inputs += [("hostile-valid", hostile_valid())]
    inputs += [(f"{topic}/{name}", decoded(raw)) for topic in topic_manifests() for name, raw in examples(topic)]
    return [(label, value) for label, value in inputs if value is not None]


def variants(value: Any) -> Iterator[Any]:
    """``value`` with one integer written as a float, or one list as a tuple, at a time."""
    if isinstance(value, int) and not isinstance(value, bool):
        yield float(value)
    elif isinstance(value, list):
        yield tuple(value)
        for i, item in enumerate(value):
            for changed in variants(item):
                yield [*value[:i], changed, *value[i + 1:]]
    elif isinstance(value, dict):
        for key, item in value.items():
            for changed in variants(item):
                yield {**value, key: changed}


def full_valid(name: str, value: Any) -> bool:
    return not any(True for _ in validator(name).iter_errors(value))


INPUTS = corpus()


@pytest.mark.parametrize("name", SCHEMAS)
def test_the_fast_validator_never_accepts_what_the_full_one_refuses(name):
    checked = refused = 0
    for label, value in INPUTS:
        for candidate in [value, *variants(value)]:
            full = full_valid(name, candidate)
            assert not (fast_valid(name, candidate) and not full), (label, name, candidate)
            assert (first_problem(name, candidate) is None) == full, (label, name)
            checked += 1
            refused += not full
    assert refused > 0 and checked > refused


def test_every_valid_input_takes_the_fast_path():
    """Valid examples and the corpus's valid events are accepted by the fast validator
    alone; only what the fast one refuses pays for the full one."""
    by_topic = {t: m.schemas for t, m in topic_manifests().items()}
    for topic, names in by_topic.items():
        for file, raw in examples(topic):
            if file.startswith("valid-"):
                value = json.loads(raw)
                assert any(fast_valid(name, value) for name in names.values()), (topic, file)
    for value in [hostile_valid(), *map(decoded, preludes())]:
        assert fast_valid("inference-event.v1", value) or fast_valid("inference-refund.v1", value)


def test_where_the_two_differ_the_full_validator_decides():
    """jsonschema-rs checks date-time (the full validator has no checker for it) and its
    ``$`` does not match before a trailing newline as Python's does: it refuses these,
    so first_problem asks the full validator, whose verdict stands."""
    event = hostile_valid("fast-path-differs")
    for field, value in [("occurred_at", "2026-11-20T12:00:00"), ("event_id", "fast-path-differs\n")]:
        changed = {**event, field: value}
        assert not fast_valid("inference-event.v1", changed)
        assert first_problem("inference-event.v1", changed) is None
    assert schema("inference-event.v1")["properties"]["occurred_at"]["format"] == "date-time"


def test_what_jsonschema_rs_cannot_read_goes_to_the_full_validator():
    """It reads values only where the schema looks: a lone surrogate or a non-string key
    under free-form ``metadata`` is valid to both; where the schema looks, the fast one
    refuses and the full one judges."""
    event = hostile_valid("unreadable")
    for free_form in [{"\udc00": 1}, {1: "x"}, {"at": object()}]:
        assert fast_valid("inference-event.v1", {**event, "metadata": free_form})
        assert full_valid("inference-event.v1", {**event, "metadata": free_form})
    for changed in [{**event, "provider": "acme\udc00"}, {**event, "billing": {"revenue_micros": 1.5}},
                    {**event, "billing": {"revenue_micros": object()}}]:
        assert not fast_valid("inference-event.v1", changed)
        assert first_problem("inference-event.v1", changed) is not None
