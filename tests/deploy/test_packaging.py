"""What a non-editable install (the Docker image, `pip install tributary`) gets: the
data files the code reads at run time must be in the wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_carries_every_data_file_the_code_reads(tmp_path):
    # built from a copy of the sources: a build/ folder left by an earlier build would hide
    # a file missing from the package data
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "node_modules"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(source)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    wheel, = tmp_path.glob("tributary-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {"gpu_workers/calibration.json", "gpu_workers/data/unrelated_sentences.txt",
              "tributary/data/contracts.json", "tributary/data/sample_catalog.json"}
    wanted |= {str(p.relative_to(ROOT)) for p in (ROOT / "schemas").rglob("*.json")}
    missing = sorted(wanted - names)
    assert not missing, f"not in the wheel: {missing}"
