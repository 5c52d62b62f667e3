"""A bounded three-stage pipeline: the caller's thread prepares items (poll, decode,
chunk, tokenize) and ``submit``s them; a model thread runs ``model_step``; a post
thread runs ``post_step`` (search, shares, produce, commit) in submission order.

Queues between the stages hold at most ``depth`` items, so a slow model blocks
``submit`` and with it the poll loop: memory stays bounded and the consumer slows
down instead of reading ahead (at most ``2 * depth + 2`` items are in flight). The
first exception in a stage stops the pipeline and is raised to the caller by
``submit`` / ``check`` / ``close``: the worker then exits unacknowledged and is
restarted, which Kafka transactions make safe.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

_DONE = object()


class PipelineFailed(RuntimeError):
    pass


class Pipeline:
    def __init__(self, model_step: Callable[[Any], Any], post_step: Callable[[Any], None], depth: int = 2,
                 name: str = "pipeline"):
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self._to_model: queue.Queue[Any] = queue.Queue(depth)
        self._to_post: queue.Queue[Any] = queue.Queue(depth)
        self._model_step = model_step
        self._post_step = post_step
        self._failed = threading.Event()
        self.error: BaseException | None = None
        self._threads = [
            threading.Thread(target=self._run, args=(self._to_model, self._model_step, self._to_post),
                             name=f"{name}-model", daemon=True),
            threading.Thread(target=self._run, args=(self._to_post, self._post_step, None),
                             name=f"{name}-post", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _put(self, q: queue.Queue[Any], item: Any) -> bool:
        while not self._failed.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, inbox: queue.Queue[Any], step: Callable[[Any], Any], outbox: queue.Queue[Any] | None) -> None:
        while not self._failed.is_set():
            try:
                item = inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is _DONE:
                if outbox is not None:
                    self._put(outbox, _DONE)
                return
            try:
                result = step(item)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                self.error = exc
                self._failed.set()
                return
            if outbox is not None and not self._put(outbox, result):
                return

    def check(self) -> None:
        if self._failed.is_set():
            raise PipelineFailed(f"attribution pipeline stage failed: {self.error!r}") from self.error

    def submit(self, item: Any, stop: threading.Event | None = None) -> bool:
        """Hand ``item`` to the model thread, blocking while the pipeline is full.
        False if ``stop`` was set while waiting (the item was not taken)."""
        while True:
            self.check()
            try:
                self._to_model.put(item, timeout=0.2)
                return True
            except queue.Full:
                if stop is not None and stop.is_set():
                    return False

    def close(self, timeout: float = 60.0) -> None:
        """Finish everything submitted, then stop the threads."""
        if not self._failed.is_set():
            self._put(self._to_model, _DONE)
        for t in self._threads:
            t.join(timeout)
        self.check()
        if any(t.is_alive() for t in self._threads):
            raise PipelineFailed(f"attribution pipeline did not finish within {timeout:.0f} s")
