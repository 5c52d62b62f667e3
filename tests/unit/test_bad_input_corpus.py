"""Every case of the bad-input corpus through the ingest logic: each is rejected with
its code, the field it names and a reason; valid events around them are accepted.
(The same corpus runs through the real broker and Faust worker in the e2e test.)"""

import json
from datetime import UTC, datetime

import orjson
import pytest

from streams.contracts import ContractBook
from streams.ingest import IngestBook, Source, dead_letter, dead_letter_headers
from tests.corpus import CASES, hostile_valid, preludes

NOW = datetime(2026, 11, 27, tzinfo=UTC)


def test_the_corpus_has_at_least_thirty_kinds():
    assert len({c.name for c in CASES}) == len(CASES) >= 30
    assert len({c.code for c in CASES}) >= 12


@pytest.fixture
def book():
    book = IngestBook({}, ContractBook.load())
    book.rebuild()
    for offset, raw in enumerate(preludes()):
        decision = book.handle(raw, Source("inference-events", 0, offset), NOW)
        assert decision.rejection is None, decision.rejection
    return book


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_bad_input_is_dead_lettered_with_its_code_field_and_a_reason(book, case):
    source = Source("inference-events", 0, 1_000)
    decision = book.handle(case.raw, source, NOW)
    rejection = decision.rejection
    assert rejection is not None and decision.request is None and decision.correction is None
    assert (rejection.code, rejection.field) == (case.code, case.field), rejection.reason
    assert rejection.event_id == case.event_id
    assert len(rejection.reason) > 15
    # the dead letter itself must be publishable: JSON-encodable, headers are bytes
    orjson.dumps(dead_letter(case.raw, rejection, source))
    assert all(isinstance(v, bytes) for _, v in dead_letter_headers(rejection, source))


def test_valid_traffic_between_bad_inputs_is_unaffected(book):
    accepted = 0
    for n, case in enumerate(CASES):
        book.handle(case.raw, Source("inference-events", 1, 2 * n), NOW)
        event = json.loads(json.dumps(hostile_valid(f"corpus-valid-{n}")))
        decision = book.handle(json.dumps(event).encode(), Source("inference-events", 1, 2 * n + 1), NOW)
        assert decision.rejection is None and decision.request["event_id"] == f"corpus-valid-{n}"
        accepted += 1
    assert accepted == len(CASES)
