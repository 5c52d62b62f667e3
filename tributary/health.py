"""Health and metrics, one implementation for every process: ``/healthz`` (liveness: the
main loop ticked recently), ``/readyz`` (readiness: start-up finished, and whatever the
process's own ``ready_check`` says) and Prometheus ``/metrics``. The transactional
stages and the Stripe sink serve it with :meth:`Health.serve`; the ClickHouse sink's
query server, Faust's web server (ingest) and the portal's Starlette app answer those
paths with :meth:`Health.response`. Kubernetes probes and scrapers use them; so does
``tributary doctor``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


class Health:
    def __init__(self, stall_after_s: float = 120.0):
        self.stall_after_s = stall_after_s
        self.ready = False
        self.detail: dict[str, Any] = {}
        self._last_beat = time.monotonic()
        # readiness beyond start-up: None when ready, else why not (e.g. the ledger cannot be read)
        self.ready_check: Callable[[], str | None] | None = None

    def beat(self) -> None:
        """Called by the main loop on every iteration (cheap)."""
        self._last_beat = time.monotonic()

    def mark_ready(self, **detail: Any) -> None:
        self.ready = True
        self.detail.update(detail)
        self.beat()

    @property
    def alive(self) -> bool:
        return time.monotonic() - self._last_beat < self.stall_after_s

    def response(self, path: str) -> tuple[int, bytes, str] | None:
        """(status, body, content type) for /healthz, /readyz and /metrics; None otherwise.
        Shared by every stage's HTTP server, so each reports the same way."""
        if path == "/metrics":
            return 200, generate_latest(), CONTENT_TYPE_LATEST
        if path == "/healthz":
            ok = self.alive
            return (200 if ok else 503), json.dumps(
                {"alive": ok, "seconds_since_progress": round(time.monotonic() - self._last_beat, 1),
                 **self.detail}, default=str).encode(), "application/json"
        if path == "/readyz":
            reason = None if not self.ready or self.ready_check is None else self.ready_check()
            ready = self.ready and reason is None
            return (200 if ready else 503), json.dumps(
                {"ready": ready, **self.detail, **({"reason": reason} if reason else {})},
                default=str).encode(), "application/json"
        return None

    def serve(self, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
        health = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                answer = health.response(self.path)
                if answer is None:
                    self._send(404, b'{"error": "GET /healthz, /readyz or /metrics"}')
                else:
                    self._send(*answer)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        server = ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
        return server
