"""stripe-mock, Stripe's official OpenAPI-validated mock, built with ``go install``."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from tributary.config import PlatformConfig
from tributary.platform.procs import ManagedProcess, PlatformError, port_in_use, port_owner

STRIPE_MOCK_MODULE = "github.com/stripe/stripe-mock@v0.203.0"


def binary_path() -> Path | None:
    found = shutil.which("stripe-mock")
    if found:
        return Path(found)
    gobin = os.environ.get("GOBIN") or str(Path(os.environ.get("GOPATH", Path.home() / "go")) / "bin")
    candidate = Path(gobin) / "stripe-mock"
    return candidate if candidate.exists() else None


def ensure_binary(log=print) -> Path:  # type: ignore[no-untyped-def]
    path = binary_path()
    if path:
        return path
    if shutil.which("go") is None:
        raise PlatformError("Go is not installed: install Go >= 1.21 so stripe-mock can be built")
    log(f"building stripe-mock with go install {STRIPE_MOCK_MODULE} (first run only)")
    proc = subprocess.run(["go", "install", STRIPE_MOCK_MODULE], capture_output=True, text=True)
    if proc.returncode != 0:
        raise PlatformError(f"go install stripe-mock failed:\n{proc.stderr[-2000:]}")
    path = binary_path()
    if path is None:
        raise PlatformError("stripe-mock was built but is not on PATH or in $GOPATH/bin")
    return path


def process(cfg: PlatformConfig) -> ManagedProcess:
    return ManagedProcess("stripe-mock", cfg.run_dir, cfg.log_dir)


def answers(cfg: PlatformConfig) -> bool:
    req = urllib.request.Request(
        f"{cfg.stripe_api_base}/v1/balance", headers={"Authorization": "Bearer sk_test_123"}
    )
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def command(binary: Path, cfg: PlatformConfig) -> list[str]:
    """stripe-mock on loopback only. Given just ``-http-addr`` it also serves HTTPS on
    ``*:12112`` (every interface, a fixed port a second platform then cannot get), and it
    has no switch to turn HTTPS off next to ``-http-addr``: so HTTPS gets a loopback
    address too, on a port the system picks (nothing here uses it)."""
    return [str(binary), "-http-addr", f"127.0.0.1:{cfg.stripe_port}", "-https-addr", "127.0.0.1:0"]


def start(cfg: PlatformConfig, log=print) -> None:  # type: ignore[no-untyped-def]
    proc = process(cfg)
    if proc.running():
        log(f"stripe-mock already running (pid {proc.pid()}) on 127.0.0.1:{cfg.stripe_port}")
        return
    if port_in_use(cfg.stripe_port):
        raise PlatformError(
            f"port {cfg.stripe_port} is in use by {port_owner(cfg.stripe_port)}; stop it or pick "
            "another with --stripe-port (or TRIBUTARY_STRIPE_PORT)"
        )
    binary = ensure_binary(log)
    proc.start(command(binary, cfg))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not proc.running():
            raise PlatformError(f"stripe-mock exited during start-up:\n{proc.tail(20)}")
        if answers(cfg):
            log(f"stripe-mock ready on {cfg.stripe_api_base} (pid {proc.pid()})")
            return
        time.sleep(0.3)
    raise PlatformError("stripe-mock did not answer within 30s")


def stop(cfg: PlatformConfig) -> bool:
    return process(cfg).stop(timeout=10)
