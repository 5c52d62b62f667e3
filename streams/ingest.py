"""Ingest: raw bytes -> a validated, priced attribution request, or a rejection.

Pure functions; the Faust agent in :mod:`streams.app` only moves bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas import DuplicateKeyError, duplicate_path, first_path, first_problem, strict_loads
from schemas.batches import BATCH_MAX_EVENTS, items
from streams.contracts import Contract, ContractBook, parse_time
from tributary.money import royalty_pool
from tributary.partitioner import home_partition
from tributary.state import Expiry

SUPPORTED_SCHEMA_VERSIONS = (1,)
EMBEDDING_MODEL = "all-MiniLM-L6-v2"
EMBEDDING_DIM = 384
# below Kafka's 1 MB so that what ingest derives from an event (the attribution request
# adds pricing fields; a forwarded copy adds a key and a header) still fits: a valid
# 999,990-byte event made a 1,000,234-byte request that the producer refused, and the
# worker crash-looped on it
MAX_EVENT_BYTES = 900_000
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)  # ClickHouse's DateTime64 columns hold 1900..2299


@dataclass(frozen=True)
class Rejection:
    """Why an input cannot be processed: a stable code, the field, a human reason."""

    code: str
    field: str | None
    reason: str
    event_id: str | None = None


@dataclass(frozen=True)
class Source:
    topic: str
    partition: int
    offset: int
    # for a record ingest forwarded to its home partition: where the producer's record
    # is ("topic/partition@offset"), the identity of the message for dedupe
    origin: str | None = None
    index: int | None = None  # the event's place in a batch record

    @property
    def identity(self) -> str:
        """Which producer message this is: forwarding it again (a replay of the partition
        it was read on) yields a new offset but the same identity."""
        if self.origin:
            return self.origin
        where = f"{self.topic}/{self.partition}@{self.offset}"
        return where if self.index is None else f"{where}#{self.index}"

    def item(self, index: int | None) -> Source:
        return Source(self.topic, self.partition, self.offset, self.origin, index)

    def as_dict(self) -> dict[str, Any]:
        where: dict[str, Any] = {"topic": self.topic, "partition": self.partition, "offset": self.offset}
        return where if self.index is None else {**where, "index": self.index}


# a JSON escape of a UTF-16 surrogate (or of a backslash before "ud8..": a harmless false alarm)
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def decode(raw: bytes) -> Any:
    """The JSON document in ``raw`` or a Rejection (ambiguous keys, NaN, bad UTF-8...)."""
    if len(raw) > MAX_EVENT_BYTES:
        return Rejection("too_large", None, f"record is {len(raw)} bytes; the limit is {MAX_EVENT_BYTES}")
    try:
        return strict_loads(raw, parse_constant=_no_constant)
    except DuplicateKeyError as exc:
        return exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Rejection("malformed_json", None, f"not valid JSON: {exc}")
    except ValueError as exc:  # NaN / Infinity: not JSON, and not a number we can price
        return Rejection("malformed_json", None, f"not valid JSON: {exc}")
    except RecursionError:
        return Rejection("malformed_json", None, "not valid JSON: nested too deeply")


def _duplicate(path: str, parsed: Any) -> Rejection:
    """A repeated key at ``path``: the event_id only if that key itself was given once."""
    parsed_id = parsed.get("event_id") if isinstance(parsed, dict) else None
    return Rejection("duplicate_key", path, str(DuplicateKeyError(path)), parsed_id if isinstance(parsed_id, str) else None)


def parse_event(raw: bytes, book: ContractBook) -> dict[str, Any] | Rejection:
    """Decode and validate one inference event (schema + semantics)."""
    event = decode(raw)
    if isinstance(event, DuplicateKeyError):
        return _duplicate(event.path, event.parsed)
    if isinstance(event, Rejection):
        return event
    return check_event(event, book, text_checked=SURROGATE_ESCAPE.search(raw) is None)


def parse_record(raw: bytes, book: ContractBook) -> list[tuple[int | None, dict[str, Any] | Rejection, Any]]:
    """One record of inference-events -> (index in its batch or None, the validated event or
    why not, the item as decoded) per event it carries: a single event, or each event of
    a batch record (inference-batch.v1), judged on its own."""
    doc = decode(raw)
    duplicate = isinstance(doc, DuplicateKeyError)
    parsed = doc.parsed if isinstance(doc, DuplicateKeyError) else doc
    events = items(parsed, "events")
    if events is None:
        return [(None, parse_event(raw, book), None)]
    if duplicate and duplicate_path({k: v for k, v in parsed.items() if k != "events"}) is not None:
        assert isinstance(doc, DuplicateKeyError)
        return [(None, _duplicate(doc.path, None), None)]
    problem = first_problem("inference-batch.v1", {**parsed, "events": events[:1]}) if events else None
    if problem is not None or not events or len(events) > BATCH_MAX_EVENTS:
        reason = problem.reason if problem else f"a batch carries 1 to {BATCH_MAX_EVENTS} events, not {len(events)}"
        return [(None, Rejection("schema_violation", problem.field if problem else "events", reason), None)]
    out: list[tuple[int | None, dict[str, Any] | Rejection, Any]] = []
    text_checked = SURROGATE_ESCAPE.search(raw) is None
    for i, item in enumerate(events):
        path = duplicate_path(item) if duplicate else None
        if path is not None:
            out.append((i, _duplicate(path, item), item))
        elif not isinstance(item, dict):
            out.append((i, Rejection("malformed_json", None, f"expected a JSON object, got {type(item).__name__}"),
                        item))
        else:
            out.append((i, check_event(item, book, text_checked), item))
    return out


def check_event(event: Any, book: ContractBook, text_checked: bool = False) -> dict[str, Any] | Rejection:
    """Validate one decoded inference event or refund (schema + semantics).
    ``text_checked``: the raw record holds no \\uD800-\\uDFFF escape, so no string in it
    can hold a lone surrogate (no need to walk the document for one)."""
    if not isinstance(event, dict):
        return Rejection("malformed_json", None, f"expected a JSON object, got {type(event).__name__}")
    event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
    bad_text = None if text_checked else _invalid_unicode(event)
    if bad_text is not None:
        return Rejection("bad_unicode", bad_text or None,
                         "contains a lone UTF-16 surrogate escape (\\ud800-\\udfff), which is not text; "
                         "encode the string as valid UTF-8", event_id if bad_text != "event_id" else None)
    if event.get("kind") == "refund":
        problem = first_problem("inference-refund.v1", event)
        if problem is not None:
            return Rejection("schema_violation", problem.field, problem.reason, event_id)
        when = _occurred_at(event["occurred_at"], event_id)
        return when if isinstance(when, Rejection) else event
    version = event.get("schema_version")
    if type(version) is not int or version not in SUPPORTED_SCHEMA_VERSIONS:  # 1.0 and true equal 1
        return Rejection(
            "unsupported_schema_version", "schema_version",
            f"schema_version {version!r} is not supported (supported: {list(SUPPORTED_SCHEMA_VERSIONS)})",
            event_id,
        )
    problem = first_problem("inference-event.v1", event)
    if problem is not None:
        return Rejection("schema_violation", problem.field, problem.reason, event_id)
    occurred_at = _occurred_at(event["occurred_at"], event_id)
    if isinstance(occurred_at, Rejection):
        return occurred_at
    billing = event["billing"]
    if "revenue_micros" not in billing and "output_tokens" not in billing:
        return Rejection("bad_billing", "billing", "needs revenue_micros or output_tokens", event_id)
    output = event["output"]
    if "embeddings" in output:
        if output["embedding_model"] != EMBEDDING_MODEL:
            return Rejection(
                "wrong_embedding_model", "output/embedding_model",
                f"embeddings must be made with {EMBEDDING_MODEL}, got {output['embedding_model']!r}", event_id,
            )
        for i, vector in enumerate(output["embeddings"]):
            if len(vector) != EMBEDDING_DIM:
                return Rejection(
                    "wrong_embedding_dimension", f"output/embeddings/{i}",
                    f"has {len(vector)} dimensions; {EMBEDDING_MODEL} gives {EMBEDDING_DIM}", event_id,
                )
    if not book.known(event["contract_id"]):
        return Rejection(
            "unknown_contract", "contract_id",
            f"contract {event['contract_id']!r} is not registered; register it or fix the producer", event_id,
        )
    contract = book.find(event["contract_id"], occurred_at)
    if contract is None:
        return Rejection(
            "contract_not_in_force", "occurred_at",
            f"contract {event['contract_id']!r} has no version in force at {event['occurred_at']}", event_id,
        )
    if not contract.covers_model(event["model"]["name"]):
        return Rejection(
            "unknown_model", "model/name",
            f"model {event['model']['name']!r} is not covered by contract {contract.contract_id} "
            f"v{contract.version} (it covers {', '.join(contract.models)}); use the contract that covers "
            "this model or register the model in a new contract version", event_id,
        )
    return event


def _occurred_at(value: str, event_id: str | None) -> datetime | Rejection:
    try:
        occurred_at = parse_time(value)
    except ValueError as exc:
        return Rejection("bad_timestamp", "occurred_at", f"not an RFC 3339 time with zone: {exc}", event_id)
    if occurred_at < EARLIEST:
        return Rejection("bad_timestamp", "occurred_at",
                         f"{value} is before {EARLIEST:%Y-%m-%d}; no inference happened then", event_id)
    return occurred_at


def _nth(identity: str) -> str:
    """" (event N of its batch)" for an event that came in a batch record, else ""."""
    _, hash_, index = identity.rpartition("#")
    return f" (event {index} of its batch)" if hash_ and index.isdigit() else ""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _invalid_unicode(value: Any) -> str | None:
    """The path of the first string (or key) holding a lone surrogate, if any."""
    return first_path(value, _not_text)


def _not_text(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def revenue_micros(billing: dict[str, int], contract: Contract) -> int:
    if "revenue_micros" in billing:
        return billing["revenue_micros"]
    return (
        billing.get("input_tokens", 0) * contract.price_per_1k_input_tokens_micros
        + billing.get("output_tokens", 0) * contract.price_per_1k_output_tokens_micros
    ) // 1000


def price_event(event: dict[str, Any], book: ContractBook, source: Source) -> dict[str, Any]:
    """A validated event -> the attribution request the GPU workers consume."""
    occurred_at: datetime = parse_time(event["occurred_at"])
    contract = book.find(event["contract_id"], occurred_at)
    assert contract is not None, "parse_event checked the contract"
    revenue = revenue_micros(event["billing"], contract)
    return {
        "schema_version": 1,
        "event_id": event["event_id"],
        "occurred_at": event["occurred_at"],
        "provider": event["provider"],
        "model": event["model"],
        "contract": {
            "contract_id": contract.contract_id,
            "version": contract.version,
            "royalty_rate_bps": contract.royalty_rate_bps,
            "currency": contract.currency,
            "probable_weight_bps": contract.probable_weight_bps,
        },
        "revenue_micros": revenue,
        "pool_micros": royalty_pool(revenue, contract.royalty_rate_bps),
        "output": event["output"],
        **({"grounded_on": event["grounded_on"]} if event.get("grounded_on") else {}),
        "metadata": event.get("metadata") or {},
        "source": source.as_dict(),
    }


def dead_letter(raw: bytes, rejection: Rejection, source: Source) -> dict[str, Any]:
    payload = raw[:4096].decode("utf-8", errors="replace")
    return {
        "schema_version": 1,
        "error_code": rejection.code,
        "field": rejection.field,
        "reason": rejection.reason,
        "event_id": rejection.event_id,
        "source": source.as_dict(),
        "payload": payload,
    }


def dead_letter_headers(rejection: Rejection, source: Source) -> list[tuple[str, bytes]]:
    return [
        ("error_code", rejection.code.encode()),
        ("field", (rejection.field or "").encode()),
        ("reason", rejection.reason.encode()[:1000]),
        ("source_topic", source.topic.encode()),
        ("source_partition", str(source.partition).encode()),
        ("source_offset", str(source.offset).encode()),
    ]


@dataclass(frozen=True)
class Decision:
    """What ingest does with one input: send a request, send a correction, reject, or
    forward it to its event's home partition (``reroute``: the partition to send it to)."""

    request: dict[str, Any] | None = None
    correction: dict[str, Any] | None = None
    rejection: Rejection | None = None
    reroute: int | None = None
    event_id: str | None = None  # with ``reroute``: the key to forward it under



def content_digest(event: dict[str, Any]) -> str:
    """A short digest of an event's content, to tell a resent copy from a conflicting one
    (keys sorted at every level; events with lone surrogates never get this far)."""
    return hashlib.sha256(orjson.dumps(event, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


@dataclass
class IngestBook:
    """Dedupe and refund bookkeeping over the ingest table (a Faust table, or a dict).

    ``ev:<event_id>`` marks an accepted event and ``rf:<event_id>`` its refund, each
    with the partition/offset it came from: a re-delivery of the same message is
    processed again (downstream ids are deterministic), a second copy at another
    offset is a duplicate. Marks expire ``window_s`` of event time behind the newest
    event of their partition; an event older than that cannot be checked for
    duplicates any more and is dead-lettered as late instead of risking a double credit.

    The first copy in the log wins. Every copy of an event must therefore be decided on
    one partition, the home partition of its ``event_id`` (``partitions`` is the input
    topic's partition count): a valid event read anywhere else (a producer that did not
    key by ``event_id``) is forwarded there (``Decision.reroute``) and decided when it is
    read again. A later copy with the same content is a ``duplicate_event_id``; one with
    different content (amounts, times, text) is a ``conflicting_duplicate`` naming both
    offsets: the first copy stands, whatever order the copies were produced or replayed in.
    """

    table: MutableMapping[str, Any]
    contracts: ContractBook
    window_s: float = 7 * 86_400
    max_future_s: float = 3_600
    partitions: int | None = None
    # expire after every event (True), or when the caller calls track() (the agent: once per take)
    autotrack: bool = True
    views: Callable[[int], Any] | None = None
    _expiry: Expiry = field(init=False)
    _added: dict[int, list[tuple[str, float]]] = field(default_factory=dict)
    needs_rebuild: bool = True

    def __post_init__(self) -> None:
        self._expiry = Expiry(self.window_s)

    def rebuild(self) -> None:
        """After a (re)assignment: nothing is kept in memory but marks not yet tracked."""
        self._added.clear()
        self.needs_rebuild = False

    def track(self, partition: int) -> list[str]:
        """List the marks added on ``partition`` for expiry and drop those that fell out of
        the window (state in the table itself: memory does not grow with the window)."""
        return self._expiry.track(self.marks(partition), self._added.pop(partition, []), scope=f"p{partition}:")

    def marks(self, partition: int) -> Any:
        """Where the marks of ``partition`` live: ``views(partition)`` (the worker's on-disk
        mark store, :mod:`streams.marks`) or ``table`` (a dict in unit tests)."""
        return self.views(partition) if self.views is not None else self.table

    def handle(self, raw: bytes, source: Source, received_at: datetime) -> Decision:
        """One single-event record. ``received_at``: the Kafka message timestamp, so a
        replay decides the same."""
        return self.decide(parse_event(raw, self.contracts), source, received_at)

    def handle_record(self, raw: bytes, source: Source, received_at: datetime
                      ) -> list[tuple[Source, Decision, Any]]:
        """Every event of one record (a single event or a batch): (its source, the
        decision, the item as decoded; None for a single-event record)."""
        out = []
        for index, parsed, item in parse_record(raw, self.contracts):
            where = source.item(index)
            out.append((where, self.decide(parsed, where, received_at), item))
        return out

    def decide(self, parsed: dict[str, Any] | Rejection, source: Source, received_at: datetime) -> Decision:
        if isinstance(parsed, Rejection):
            return Decision(rejection=parsed)
        occurred = parse_time(parsed["occurred_at"]).timestamp()
        if occurred > received_at.timestamp() + self.max_future_s:
            return Decision(rejection=Rejection(
                "occurred_at_in_future", "occurred_at",
                f"{parsed['occurred_at']} is more than {self.max_future_s:.0f}s after the event reached "
                "Kafka; fix the producer's clock", parsed.get("event_id")))
        if self.partitions is not None:
            home = home_partition(parsed["event_id"], self.partitions)
            if home != source.partition:
                return Decision(reroute=home, event_id=parsed["event_id"])
        if parsed.get("kind") == "refund":
            decision = self._refund(parsed, source, occurred)
        else:
            decision = self._event(parsed, source, occurred)
        if self.autotrack:
            self.track(source.partition)
        return decision

    def _seen(self, key: str, source: Source) -> tuple[bool, dict[str, Any] | None]:
        """(redelivery of the same producer message?, the first copy's mark)."""
        mark = self.marks(source.partition).get(key)
        if mark is None:
            return False, None
        if "id" in mark:
            return mark["id"] == source.identity, mark
        return (mark["part"], mark["o"]) == (source.partition, source.offset), mark  # marks written before ids

    def _mark(self, key: str, source: Source, occurred: float, **extra: Any) -> None:
        self.marks(source.partition)[key] = {"part": source.partition, "o": source.offset, "t": occurred, "id": source.identity,
                           **extra}
        self._added.setdefault(source.partition, []).append((key, occurred))

    def _event(self, event: dict[str, Any], source: Source, occurred: float) -> Decision:
        event_id = event["event_id"]
        key = f"ev:{event_id}"
        digest = content_digest(event)
        redelivery, mark = self._seen(key, source)
        if mark is not None and not redelivery:
            first = f"partition {mark['part']} offset {mark['o']}" + _nth(str(mark.get("id", "")))
            if mark.get("d", digest) != digest:
                return Decision(rejection=Rejection(
                    "conflicting_duplicate", "event_id",
                    f"event_id {event_id!r} was first accepted at {first} with different content; this copy "
                    f"at partition {source.partition} offset {source.offset}{_nth(source.identity)} conflicts with it and is not "
                    "credited (the first copy in the log stands). Send a correction as a refund plus a new "
                    "event_id", event_id))
            return Decision(rejection=Rejection(
                "duplicate_event_id", "event_id",
                f"event_id {event_id!r} was already accepted at {first}; this copy at partition "
                f"{source.partition} offset {source.offset}{_nth(source.identity)} has the same content and is not credited again",
                event_id))
        if mark is None:
            if self._expiry.too_old(self.marks(source.partition), occurred, scope=f"p{source.partition}:"):
                return Decision(rejection=Rejection(
                    "late_event", "occurred_at",
                    f"{event['occurred_at']} is more than {self.window_s / 86_400:g} days older than the newest "
                    "event on its partition, beyond the dedupe window; it cannot be checked for "
                    "duplicates. Re-send it with a new event_id after checking it was never billed", event_id))
            self._mark(key, source, occurred, d=digest)
        else:  # the same producer message again: the request names where it was first read
            # (listed for expiry again, in case the first pass ended before its marks were listed)
            self._added.setdefault(source.partition, []).append((key, mark["t"]))
            source = Source(source.topic, mark["part"], mark["o"], source.origin)
        return Decision(request=price_event(event, self.contracts, source))

    def _refund(self, refund: dict[str, Any], source: Source, occurred: float) -> Decision:
        event_id = refund["event_id"]
        event_mark = self.marks(source.partition).get(f"ev:{event_id}")
        if event_mark is None:
            return Decision(rejection=Rejection(
                "refund_for_unknown_event", "event_id",
                f"no accepted event {event_id!r} within the dedupe window; refunds must name an "
                "event this pipeline accepted", event_id))
        key = f"rf:{event_id}"
        redelivery, mark = self._seen(key, source)
        if mark is not None and not redelivery:
            return Decision(rejection=Rejection(
                "duplicate_refund", "event_id",
                f"event {event_id!r} was already refunded (refund {mark['refund_id']!r})", event_id))
        if mark is None:
            # expires with the event it refunds
            self._mark(key, source, event_mark["t"], refund_id=refund["refund_id"])
        return Decision(correction={
            "schema_version": 1, "kind": "refund", "correction_id": refund["refund_id"],
            "event_id": event_id, "provider": refund["provider"], "reason": refund["reason"],
            "occurred_at": refund["occurred_at"], "source": source.as_dict(),
        })
