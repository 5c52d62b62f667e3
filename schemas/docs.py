"""Generate ``docs/topics.md`` from the topic manifests and JSON Schemas.

    python -m schemas.docs > docs/topics.md      (make docs)

A test fails when the committed page differs from what this prints.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from schemas import ROOT, schema, topic_manifests


def _type(spec: dict[str, Any]) -> str:
    if "const" in spec:
        return f"const {json.dumps(spec['const'])}"
    if "enum" in spec:
        return "one of " + ", ".join(f"`{v}`" for v in spec["enum"])
    kind = spec.get("type", "any")
    kind = " or ".join(kind) if isinstance(kind, list) else kind
    limits = [f"{k} {spec[k]:,}" if isinstance(spec[k], int) else f"{k} {spec[k]}"
              for k in ("minimum", "maximum", "minLength", "maxLength", "maxItems") if k in spec]
    if spec.get("format"):
        limits.append(spec["format"])
    return kind + (f" ({', '.join(limits)})" if limits else "")


def _fields(s: dict[str, Any], prefix: str = "") -> list[str]:
    rows = []
    required = set(s.get("required", []))
    for name, spec in s.get("properties", {}).items():
        path = f"{prefix}{name}"
        desc = spec.get("description", "").replace("|", "\\|")
        rows.append(f"| `{path}` | {_type(spec)} | {'yes' if name in required else ''} | {desc} |")
        if spec.get("type") == "object" and "properties" in spec:
            rows += _fields(spec, prefix=f"{path}.")
    return rows


def render() -> str:
    out = ["# Topics and event contracts", "",
           "Generated from `schemas/topics/*.json` and `schemas/json/*.json` by `make docs`; do not edit.",
           "Example payloads (valid and invalid) for each topic are in `schemas/examples/<topic>/`.", ""]
    manifests = topic_manifests()
    out += ["| topic | key | partitions | retention | cleanup | producers | consumers |", "|---|---|---|---|---|---|---|"]
    for m in manifests.values():
        retention = "forever" if m.retention_ms < 0 else f"{m.retention_ms // 86_400_000} days"
        out.append(f"| `{m.name}` | {m.key} | {m.partitions} | {retention} | {m.cleanup_policy} | "
                   f"{', '.join(m.producers)} | {', '.join(m.consumers)} |")
    for m in manifests.values():
        out += ["", f"## `{m.name}`", "", m.description, ""]
        for version, name in m.schemas.items():
            s = schema(name)
            out += [f"### {s.get('title', name)} (`{name}`, {version})", ""]
            if s.get("description"):
                out += [s["description"], ""]
            out += ["| field | type | required | meaning |", "|---|---|---|---|", *_fields(s)]
        names = sorted(p.name for p in (ROOT / "examples" / m.name).glob("*.json"))
        if names:
            out += ["", "Examples: " + ", ".join(f"`{n}`" for n in names)]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
