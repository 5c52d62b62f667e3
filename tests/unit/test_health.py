"""tributary.health: the one liveness/readiness/metrics answer every process serves."""

from __future__ import annotations

import json
import time

from tributary.health import Health


def test_liveness_follows_the_beat_and_readiness_the_start_and_the_check():
    health = Health(stall_after_s=0.2)
    status, body, _ = health.response("/readyz")
    assert status == 503 and json.loads(body)["ready"] is False  # still starting
    health.mark_ready(partitions=[0, 1])
    assert health.response("/readyz")[0] == 200
    reason: list[str | None] = ["the ledger cannot be read"]
    health.ready_check = lambda: reason[0]
    status, body, _ = health.response("/readyz")
    assert status == 503 and json.loads(body) == {"ready": False, "partitions": [0, 1],
                                                  "reason": "the ledger cannot be read"}
    reason[0] = None
    assert health.response("/readyz")[0] == 200
    assert health.response("/healthz")[0] == 200
    time.sleep(0.3)  # no beat: the main loop is stuck
    status, body, _ = health.response("/healthz")
    assert status == 503 and json.loads(body)["alive"] is False
    health.beat()
    assert health.response("/healthz")[0] == 200
    status, body, content_type = health.response("/metrics")
    assert status == 200 and content_type.startswith("text/plain") and b"python_info" in body
    assert health.response("/elsewhere") is None
