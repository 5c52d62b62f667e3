"""A recording proxy in front of stripe-mock. stripe-mock is stateless and ignores
idempotency keys, so the tests count the transfer requests themselves: one per
payout, never two."""

from __future__ import annotations

import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Recorded:
    method: str
    path: str
    idempotency_key: str | None
    form: dict[str, str]
    status: int


@dataclass
class StripeRecorder:
    upstream: str
    calls: list[Recorded] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def transfers(self) -> list[Recorded]:
        return [c for c in self.calls if c.method == "POST" and c.path == "/v1/transfers" and c.status == 200]

    def start(self) -> StripeRecorder:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                req = urllib.request.Request(recorder.upstream + self.path, data=body or None,
                                             method=self.command)
                for name in ("Authorization", "Content-Type", "Idempotency-Key", "Stripe-Version"):
                    if self.headers.get(name):
                        req.add_header(name, self.headers[name])
                try:
                    with urllib.request.urlopen(req, timeout=30) as resp:
                        status, payload, ctype = resp.status, resp.read(), resp.headers.get("Content-Type")
                except urllib.error.HTTPError as exc:
                    status, payload, ctype = exc.code, exc.read(), exc.headers.get("Content-Type")
                form = dict(urllib.parse.parse_qsl(body.decode())) if body else {}
                recorder.calls.append(Recorded(self.command, self.path.split("?")[0],
                                               self.headers.get("Idempotency-Key"), form, status))
                self.send_response(status)
                self.send_header("Content-Type", ctype or "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _forward  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
