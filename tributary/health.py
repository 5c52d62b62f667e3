"""Health and metrics over HTTP for the non-Faust processes (attribution, indexer,
Stripe sink): ``/healthz`` (liveness: the main loop ticked recently), ``/readyz``
(readiness: start-up finished) and Prometheus ``/metrics``. Kubernetes probes and
scrapers use them; so does ``tributary doctor``."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


class Health:
    def __init__(self, stall_after_s: float = 120.0):
        self.stall_after_s = stall_after_s
        self.ready = False
        self.detail: dict[str, Any] = {}
        self._last_beat = time.monotonic()

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
                if self.path == "/metrics":
                    self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    ok = health.alive
                    self._send(200 if ok else 503, json.dumps(
                        {"alive": ok, "seconds_since_loop": round(time.monotonic() - health._last_beat, 1)}
                    ).encode())
                elif self.path == "/readyz":
                    self._send(200 if health.ready else 503,
                               json.dumps({"ready": health.ready, **health.detail}, default=str).encode())
                else:
                    self._send(404, b'{"error": "GET /healthz, /readyz or /metrics"}')

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        server = ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
        return server
