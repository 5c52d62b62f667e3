"""Every `pip install 'tributary[...]'` hint names an extra that pyproject.toml defines."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HINT = re.compile(r"tributary\[([a-z0-9_,-]+)\]")
SOURCES = ("tributary", "producers", "streams", "gpu_workers", "sinks", "schemas", "deploy", "docs", "benchmarks")


def extras() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def hints() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    files = [ROOT / "README.md", ROOT / "Makefile"]
    for folder in SOURCES:
        files += [p for p in (ROOT / folder).rglob("*") if p.is_file() and p.suffix in (".py", ".md", ".yaml", ".txt", "")]
    for path in files:
        for match in HINT.finditer(path.read_text(errors="replace")):
            for extra in match.group(1).split(","):
                found.setdefault(extra, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_install_hint_names_an_existing_extra():
    named = hints()
    assert "all" in named  # the scan sees the hints at all
    unknown = {extra: sorted(where) for extra, where in named.items() if extra not in extras()}
    assert not unknown, f"hints name extras pyproject.toml does not define: {unknown}"


def test_the_onnx_backend_without_onnxruntime_names_the_attribution_extra(monkeypatch):
    from gpu_workers.embedder import load_embedder

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    with pytest.raises(SystemExit, match=re.escape("pip install 'tributary[attribution]'")):
        load_embedder("onnx")
