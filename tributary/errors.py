"""Errors a user can fix. The CLI prints their message as one line and exits non-zero,
without a traceback; anything else is a bug and keeps its traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or a missing prerequisite: the message says what is wrong and what to do."""
