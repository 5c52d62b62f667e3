"""``tributary loadgen``: publish synthetic inference events at a steady rate.

Outputs are drawn from the sample catalog (quotes, edits, unrelated text) so the
attribution stage does real work; ``--invalid`` mixes in malformed events.
Progress is printed every second; the final line gives the achieved rate and the
delivery outcome.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime

from producers.sdk import EventProducer
from tributary.sample import load_catalog, plan_events


def run(bootstrap: str, rate: float, count: int, invalid_fraction: float = 0.0, seed: int = 1,
        out: Callable[[str], None] = print) -> dict[str, float]:
    planned = plan_events(load_catalog(), min(count, 5000), seed=seed)
    producer = EventProducer(bootstrap, on_full="block", block_timeout_s=5)
    started = time.monotonic()
    last_report = started
    sent = invalid = 0
    every = round(1 / invalid_fraction) if invalid_fraction > 0 else 0
    try:
        for i, item in zip(range(count), itertools.cycle(planned), strict=False):
            due = started + i / rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            if every and i % every == every - 1:
                producer.emit_raw(f"loadgen-bad-{seed}-{i}", b'{"schema_version": 1, "event_id": ')
                invalid += 1
            else:
                event = item.event
                producer.emit(type(event)(**{**event.__dict__, "event_id": f"loadgen-{seed}-{i:09d}",
                                             "occurred_at": datetime.now(UTC).isoformat()}))
            sent += 1
            if time.monotonic() - last_report >= 1:
                last_report = time.monotonic()
                elapsed = last_report - started
                out(f"  {sent}/{count} queued ({sent / elapsed:,.0f}/s)  delivered {producer.sent}  "
                    f"failed {producer.failed}  in buffer {producer.queued}")
        remaining = producer.close(60)
    finally:
        producer.flush(5)
    elapsed = time.monotonic() - started
    summary = {"sent": sent, "invalid": invalid, "delivered": producer.sent, "failed": producer.failed,
               "undelivered": remaining, "seconds": elapsed, "rate": sent / elapsed if elapsed else 0.0}
    out(f"published {sent} events ({invalid} invalid) in {elapsed:.1f}s = {summary['rate']:,.0f}/s; "
        f"delivered {producer.sent}, failed {producer.failed}, undelivered {remaining}")
    return summary
