"""Structured log lines (key=value, one event per line) for every process."""

from __future__ import annotations

import logging
import os
import sys


def setup(process: str, level: str | None = None) -> None:
    level = level or os.environ.get("TRIBUTARY_LOG_LEVEL", "INFO")
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format=f"ts=%(asctime)s level=%(levelname)s process={process} logger=%(name)s msg=\"%(message)s\"",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("stripe").setLevel(logging.WARNING)
    logging.getLogger("fontTools").setLevel(logging.WARNING)  # the portal's PDF font subsetting
