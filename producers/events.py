"""The typed inference event (schema ``inference-event.v1``)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas import first_problem


class InvalidEvent(ValueError):
    """The event breaks its schema; ``field`` and ``reason`` say how."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"invalid inference event: {field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class InferenceEvent:
    provider: str
    model_name: str
    model_revision: str
    contract_id: str
    output_text: str | None = None
    output_embeddings: list[list[float]] | None = None
    revenue_micros: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # the registered works the answer was grounded on (RAG sources), weighed first by attribution
    grounded_on: tuple[str, ...] = ()
    event_id: str = field(default_factory=lambda: f"evt-{uuid.uuid4().hex}")
    occurred_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_dict(self) -> dict[str, Any]:
        billing: dict[str, int] = {}
        if self.revenue_micros is not None:
            billing["revenue_micros"] = self.revenue_micros
        if self.input_tokens is not None:
            billing["input_tokens"] = self.input_tokens
        if self.output_tokens is not None:
            billing["output_tokens"] = self.output_tokens
        output: dict[str, Any] = {}
        if self.output_text is not None:
            output["text"] = self.output_text
        if self.output_embeddings is not None:
            output["embeddings"] = self.output_embeddings
            output["embedding_model"] = "all-MiniLM-L6-v2"
        out: dict[str, Any] = {
            "schema_version": 1,
            "event_id": self.event_id,
            "occurred_at": self.occurred_at,
            "provider": self.provider,
            "model": {"name": self.model_name, "revision": self.model_revision},
            "contract_id": self.contract_id,
            "billing": billing,
            "output": output,
        }
        if self.grounded_on:
            out["grounded_on"] = list(self.grounded_on)
        if self.metadata:
            out["metadata"] = self.metadata
        return out

    def validate(self) -> None:
        problem = first_problem("inference-event.v1", self.to_dict())
        if problem is not None:
            raise InvalidEvent(problem.field, problem.reason)

    def encode(self) -> bytes:
        self.validate()
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()


@dataclass(frozen=True)
class InferenceRefund:
    """The provider refunded inference ``event_id``: its royalties are reversed."""

    event_id: str
    provider: str
    reason: str
    refund_id: str = field(default_factory=lambda: f"rfd-{uuid.uuid4().hex}")
    occurred_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": 1, "kind": "refund", "refund_id": self.refund_id,
                "event_id": self.event_id, "occurred_at": self.occurred_at,
                "provider": self.provider, "reason": self.reason}

    def encode(self) -> bytes:
        problem = first_problem("inference-refund.v1", self.to_dict())
        if problem is not None:
            raise InvalidEvent(problem.field, problem.reason)
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()
