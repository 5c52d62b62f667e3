"""Contracts as data: parsing and validating a version, immutability of published
versions, and the built-in file being optional."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas import first_problem
from streams.contracts import ContractBook, contract_key, contract_record, parse_contract

ITEM = {"schema_version": 1, "contract_id": "press-2027", "version": 1, "currency": "EUR", "royalty_rate_bps": 1800,
        "price_per_1k_input_tokens_micros": 450, "price_per_1k_output_tokens_micros": 1400,
        "valid_from": "2027-01-01T00:00:00Z", "valid_to": "2028-01-01T00:00:00Z", "models": ["acme-*"]}


def test_a_version_round_trips_through_its_record():
    contract = parse_contract(ITEM)
    record = contract_record(contract)
    assert first_problem("contract.v1", record) is None
    assert parse_contract(record) == contract and contract_key(contract) == "press-2027@1"


@pytest.mark.parametrize("change,reason", [
    ({"valid_to": "2026-01-01T00:00:00Z"}, "valid_to must be after valid_from"),
    ({"probable_weight_bps": 20_000}, "probable_weight_bps must be an integer within 0..10000"),
    ({"valid_from": "2027-01-01T00:00:00"}, "time zone"),
])
def test_a_bad_version_is_refused_with_the_reason(change, reason):
    with pytest.raises(ValueError, match=reason):
        parse_contract({**ITEM, **change})


def test_published_versions_are_immutable_and_new_terms_are_a_new_version():
    book = ContractBook([])
    assert book.add(parse_contract(ITEM)) is None
    assert book.add(parse_contract(ITEM)) is None  # the same terms again: fine, nothing changes
    refused = book.add(parse_contract({**ITEM, "royalty_rate_bps": 2500}))
    assert refused and "already exists with other terms" in refused and "as v2" in refused
    assert book.add(parse_contract({**ITEM, "version": 2, "royalty_rate_bps": 2500,
                                    "valid_from": "2027-06-01T00:00:00Z"})) is None
    june = datetime(2027, 7, 1, tzinfo=UTC)
    assert book.find("press-2027", june).version == 2  # the newest version in force
    assert book.find("press-2027", datetime(2027, 2, 1, tzinfo=UTC)).version == 1
    assert [c.version for c in book.versions()] == [1, 2]


def test_an_unknown_contract_asks_the_feed_once_before_it_is_refused():
    book, asked = ContractBook([]), []

    def miss(contract_id: str) -> None:
        asked.append(contract_id)
        book.add(parse_contract(ITEM))  # what the feed would find on the topic

    book.on_miss = miss
    assert book.known("press-2027") and asked == ["press-2027"]
    assert book.find("press-2027", datetime(2027, 2, 1, tzinfo=UTC)) is not None and asked == ["press-2027"]


def test_the_built_in_contracts_can_be_left_out(monkeypatch):
    assert ContractBook.load().known("standard-eu-2026")
    monkeypatch.setenv("TRIBUTARY_CONTRACTS_FILE", "none")
    assert ContractBook.load().versions() == []


def test_a_flood_of_one_unknown_contract_asks_kafka_once_per_interval(monkeypatch):
    from streams import contracts as module

    clock = [100.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: clock[0])
    feed = module.ContractFeed.__new__(module.ContractFeed)
    feed.book, feed.min_interval_s, feed.floor_s, feed._last, feed._missed = ContractBook([]), 2.0, 0.05, 0.0, {}
    reads = []
    feed.refresh = lambda: (reads.append(clock[0]), setattr(feed, "_last", clock[0]))  # type: ignore[method-assign]
    for _ in range(400):  # the same unknown id, 1 ms apart
        feed.missed("no-such-contract")
        clock[0] += 0.001
    assert len(reads) == 1
    clock[0] += 0.1
    feed.missed("press-2027")  # another id: its first miss reads at once
    assert len(reads) == 2
    clock[0] += 2.0
    feed.missed("no-such-contract")
    assert len(reads) == 3
