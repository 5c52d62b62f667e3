"""Structured logs for every process: one JSON object per line on stderr.

``{"ts": "...", "level": "INFO", "process": "accrue", "logger": "...", "msg": "..."}``, plus
the correlation fields a line carries (``event_id``, ``payout_id``, ``holder_id``,
``work_id``, ``request_id``, ``incident``), whether passed as ``extra={...}`` or written in
the message as ``event_id=...``; so one event can be followed across stages with a single
filter (``jq 'select(.event_id == "evt-1")'``). A traceback is one ``exc`` field, never
extra lines. The Faust worker (the streams stage) logs through the same formatter.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import Any

CORRELATION = ("event_id", "payout_id", "holder_id", "work_id", "request_id", "incident")
_IN_MESSAGE = re.compile(r"\b(" + "|".join(CORRELATION) + r")=([A-Za-z0-9._:@/#-]+)")


class JsonFormatter(logging.Formatter):
    def __init__(self, process_name: str = "", **kwargs: Any):
        super().__init__(**kwargs)
        self.process_name = process_name or os.environ.get("TRIBUTARY_PROCESS", "")

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname, "process": self.process_name, "logger": record.name, "msg": msg,
        }
        for key, value in _IN_MESSAGE.findall(msg):
            line.setdefault(key, value)
        for key in CORRELATION:
            value = getattr(record, key, None)
            if value is not None:
                line[key] = str(value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def config(process: str, level: str | None = None) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for ``process`` (what the Faust worker is given)."""
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "process_name": process}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": sys.stderr}},
        "root": {"level": level or os.environ.get("TRIBUTARY_LOG_LEVEL", "INFO"), "handlers": ["stderr"]},
    }


def setup(process: str, level: str | None = None) -> None:
    import logging.config

    os.environ["TRIBUTARY_PROCESS"] = process
    logging.config.dictConfig(config(process, level))
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("stripe").setLevel(logging.WARNING)
    logging.getLogger("fontTools").setLevel(logging.WARNING)  # the portal's PDF font subsetting
