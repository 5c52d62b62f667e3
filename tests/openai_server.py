"""A local OpenAI-compatible endpoint for the real ``openai`` client (canned answers).

Like the OpenAI API, a stream reports token usage only when asked
(``stream_options.include_usage``), in a last chunk with no choices; ``usage=False``
makes a server that never reports usage."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = "Call me Ishmael. Some years ago, never mind how long precisely, I went to sea."
USAGE = {"prompt_tokens": 12, "completion_tokens": 18, "total_tokens": 30}


class OpenAIServer:
    def __init__(self, usage: bool = True) -> None:
        self.requests: list[dict] = []
        self.server: ThreadingHTTPServer | None = None
        self.usage = usage

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self) -> OpenAIServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                n = len(outer.requests)
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for i, word in enumerate(ANSWER.split(" ")):
                        chunk = {"id": f"chatcmpl-{n}", "object": "chat.completion.chunk", "created": 1795000000,
                                 "model": body["model"], "choices": [{"index": 0, "finish_reason": None,
                                 "delta": {"content": (" " if i else "") + word}}]}
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    if outer.usage and (body.get("stream_options") or {}).get("include_usage"):
                        chunk = {"id": f"chatcmpl-{n}", "object": "chat.completion.chunk", "created": 1795000000,
                                 "model": body["model"], "choices": [], "usage": USAGE}
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                    return
                payload = json.dumps({
                    "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 1795000000,
                    "model": body["model"], "system_fingerprint": "fp_test",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": ANSWER}}],
                    **({"usage": USAGE} if outer.usage else {}),
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
