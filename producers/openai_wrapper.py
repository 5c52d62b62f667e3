"""Instrument an OpenAI-style client: every chat completion emits one inference event,
with no other change to the calling code.

    client = instrument(OpenAI(...), producer, provider="acme-ai", contract_id="standard-2026")
    client.chat.completions.create(model=..., messages=...)   # unchanged call sites

The event id is the completion id, so a re-emitted event is recognised downstream.
Billing is the response's token usage, priced by the contract (or ``revenue_micros``
when a callable computes revenue). Emission never raises into, or blocks, the model
call: failures are logged and counted in ``EventProducer`` metrics. Streaming
completions are passed through chunk by chunk and emitted when the stream ends.

Streamed completions carry no token usage unless asked for, so the wrapper asks
(``stream_options={"include_usage": True}``, merged into the caller's own
``stream_options``); the extra usage-only chunk this adds at the end is not shown to
a caller who did not ask for it. A token-billed completion that still comes without
usage (a server that ignores the option) is never published with 0 tokens, which
ingest would accept with a royalty pool of 0, paying nobody: it is not published, it is
logged as an error naming the completion, and counted in
``tributary_producer_events_unbilled_total`` and the client's ``unbilled``, so the
provider sees it and can bill such completions with ``revenue_micros`` instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter

from producers.events import InferenceEvent
from producers.sdk import EventProducer

log = logging.getLogger("tributary.producer.openai")

EVENTS_UNBILLED = Counter("tributary_producer_events_unbilled_total",
                          "Token-billed completions not published: the response carried no token usage")

RevenueFn = Callable[[Any], int | None]


class MissingUsage(ValueError):
    """A token-billed completion without token usage: it cannot be priced."""


class _Completions:
    def __init__(self, inner: Any, emit: Callable[[Any, dict[str, Any], str | None], None]):
        self._inner = inner
        self._emit = emit

    def create(self, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("stream"):
            response = self._inner.create(*args, **kwargs)
            self._emit(response, kwargs, None)
            return response
        options = kwargs.get("stream_options")
        options = dict(options) if isinstance(options, dict) else {}
        caller_wants_usage = bool(options.get("include_usage"))
        kwargs["stream_options"] = {**options, "include_usage": True}  # else the stream has no usage
        response = self._inner.create(*args, **kwargs)
        return _StreamTap(response, lambda text, last: self._emit(last, kwargs, text),
                          hide_usage_chunk=not caller_wants_usage)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _StreamTap:
    """Yields the stream's chunks unchanged; emits once with the joined text at the end.
    With ``hide_usage_chunk`` the usage-only chunk that ends a stream asked for usage
    (no choices) is kept from the caller, who did not ask for it."""

    def __init__(self, stream: Any, done: Callable[[str, Any], None], hide_usage_chunk: bool = False):
        self._stream = stream
        self._done = done
        self._hide_usage_chunk = hide_usage_chunk

    def __iter__(self) -> Iterator[Any]:
        parts: list[str] = []
        last = None
        for chunk in self._stream:
            last = chunk
            choices = getattr(chunk, "choices", None) or []
            for choice in choices:
                delta = getattr(choice, "delta", None)
                if delta is not None and getattr(delta, "content", None):
                    parts.append(delta.content)
            if self._hide_usage_chunk and not choices and getattr(chunk, "usage", None) is not None:
                continue
            yield chunk
        self._done("".join(parts), last)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _Chat:
    def __init__(self, inner: Any, completions: _Completions):
        self._inner = inner
        self.completions = completions

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class InstrumentedClient:
    """The client with ``chat.completions.create`` instrumented; everything else passes through."""

    def __init__(self, client: Any, producer: EventProducer, *, provider: str, contract_id: str,
                 revenue_micros: RevenueFn | None = None, model_revision: str | None = None):
        self._client = client
        self._producer = producer
        self._provider = provider
        self._contract_id = contract_id
        self._revenue = revenue_micros
        self._revision = model_revision
        self.chat = _Chat(client.chat, _Completions(client.chat.completions, self._emit))
        self.emit_errors = 0
        self.unbilled = 0  # token-billed completions without usage: not published

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def _emit(self, response: Any, request: dict[str, Any], streamed_text: str | None) -> None:
        try:
            self._producer.emit(self._event(response, request, streamed_text))
        except MissingUsage as exc:
            self.unbilled += 1
            EVENTS_UNBILLED.inc()
            log.error("inference event for %s not published: %s", getattr(response, "id", "?"), exc)
        except Exception as exc:  # noqa: BLE001 - never break the model call
            self.emit_errors += 1
            log.error("could not emit the inference event for %s: %s", getattr(response, "id", "?"), exc)

    def _event(self, response: Any, request: dict[str, Any], streamed_text: str | None) -> InferenceEvent:
        if streamed_text is None:
            texts = [getattr(c.message, "content", None) or "" for c in response.choices]
            text = "\n".join(t for t in texts if t)
        else:
            text = streamed_text
        usage = getattr(response, "usage", None)
        revenue = self._revenue(response) if self._revenue else None
        if revenue is None and usage is None:
            raise MissingUsage(
                "token-billed, but the response carries no token usage (a 0-token event would pay no "
                "royalties); streams request it with stream_options include_usage, so the server "
                "ignored that: bill these completions with revenue_micros")
        created = getattr(response, "created", None)
        return InferenceEvent(
            event_id=f"{self._provider}:{response.id}",
            occurred_at=(datetime.fromtimestamp(created, UTC) if created else datetime.now(UTC)).isoformat(),
            provider=self._provider,
            model_name=getattr(response, "model", None) or request.get("model") or "unknown",
            model_revision=self._revision or getattr(response, "system_fingerprint", None) or "unknown",
            contract_id=self._contract_id,
            output_text=text,  # may be empty (tool calls): the pool then goes to escrow
            revenue_micros=revenue,
            input_tokens=None if revenue is not None else getattr(usage, "prompt_tokens", 0) or 0,
            output_tokens=None if revenue is not None else getattr(usage, "completion_tokens", 0) or 0,
            metadata={"api": "chat.completions", "stream": bool(request.get("stream"))},
        )


def instrument(client: Any, producer: EventProducer, *, provider: str, contract_id: str,
               revenue_micros: RevenueFn | None = None, model_revision: str | None = None) -> InstrumentedClient:
    return InstrumentedClient(client, producer, provider=provider, contract_id=contract_id,
                              revenue_micros=revenue_micros, model_revision=model_revision)
