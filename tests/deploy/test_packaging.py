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
    # an evaluation set laid out as `tributary eval` reads one (EVALSETS/<name>/...), so the
    # package data is checked for the layout even where no built-in set is checked in yet
    from gpu_workers.evaluate import EVALSETS

    assert EVALSETS == ROOT / "gpu_workers" / "data" / "evalsets"
    probe = source / EVALSETS.relative_to(ROOT) / "probe-set"
    probe.mkdir(parents=True, exist_ok=True)
    for name in ("catalog.jsonl", "cases.jsonl", "README.md"):
        (probe / name).write_text("{}\n" if name.endswith(".jsonl") else "# probe\n")
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(source)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    wheel, = tmp_path.glob("tributary-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {"gpu_workers/data/unrelated_sentences.txt", "tributary/data/contracts.json",
              "tributary/data/sample_catalog.json"}
    wanted |= {f"gpu_workers/data/evalsets/probe-set/{n}" for n in ("catalog.jsonl", "cases.jsonl", "README.md")}
    wanted |= {str(p.relative_to(ROOT)) for p in (ROOT / "schemas").rglob("*.json")}
    # the portal's pages and stylesheet
    wanted |= {str(p.relative_to(ROOT)) for p in (ROOT / "tributary" / "portal").rglob("*")
               if p.suffix in (".html", ".css")}
    # every built-in evaluation set and every data file of the attribution workers
    wanted |= {str(p.relative_to(ROOT)) for p in (ROOT / "gpu_workers" / "data").rglob("*")
               if p.is_file() and p.suffix in (".txt", ".jsonl", ".md")}
    missing = sorted(wanted - names)
    assert not missing, f"not in the wheel: {missing}"
    # the calibration is made from each catalog now: no stored calibration file is shipped
    assert not any(n.endswith("calibration.json") for n in names)


def test_the_image_bakes_the_model_export_outside_the_pods_data_volume():
    """Pods mount an emptyDir over the data dir (/var/lib/tributary); a model cache under it
    would be empty in every pod, and each attribution and indexer pod would export the
    ONNX model again at start. The image keeps the cache elsewhere and exports at build."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    dockerfile = (root / "deploy" / "docker" / "Dockerfile").read_text()
    workload = (root / "deploy" / "helm" / "tributary" / "templates" / "_workload.tpl").read_text()
    mounted = re.search(r"mountPath: (\S+)", workload).group(1)
    cache = re.search(r"TRIBUTARY_CACHE_DIR=(\S+)", dockerfile).group(1)
    assert not cache.startswith(mounted), (cache, mounted)
    assert "export_onnx(False); export_onnx(True)" in dockerfile
