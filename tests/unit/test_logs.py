"""Every process logs one JSON object per line, with correlation fields."""

from __future__ import annotations

import json
import logging

from tributary.logs import JsonFormatter, config


def line(msg, *args, exc=None, **extra):
    record = logging.LogRecord("tributary.test", logging.WARNING, __file__, 1, msg, args, exc)
    for key, value in extra.items():
        setattr(record, key, value)
    return json.loads(JsonFormatter("accrue-0").format(record))


def test_a_line_is_one_json_object_whatever_the_message_holds():
    out = line('a "quoted" word,\nanother line, and msg="fake"')
    assert out["msg"] == 'a "quoted" word,\nanother line, and msg="fake"'
    assert (out["level"], out["process"], out["logger"]) == ("WARNING", "accrue-0", "tributary.test")
    assert out["ts"].endswith("Z")


def test_correlation_fields_come_from_extra_or_the_message():
    out = line("payout failed payout_id=%s for holder_id=%s", "po_1", "h-austen", event_id="evt-9")
    assert (out["payout_id"], out["holder_id"], out["event_id"]) == ("po_1", "h-austen", "evt-9")


def test_a_traceback_is_one_field():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        out = line("failed", exc=sys.exc_info())
    assert "ValueError: boom" in out["exc"] and "\n" not in json.dumps(out)


def test_the_faust_worker_gets_the_same_formatter():
    cfg = config("streams")
    assert cfg["formatters"]["json"]["()"] is JsonFormatter and cfg["formatters"]["json"]["process_name"] == "streams"
    assert cfg["root"]["handlers"] == ["stderr"]
