"""Contracts as data on the real broker with the real Faust ingest worker: `tributary
contracts add` publishes validated versions to the compacted contracts topic and refuses
to change a published one; ingest prices events with a version published before it
started and with one published while it runs (its feed reads the topic before refusing
an unknown contract); an unknown contract is still dead-lettered with its reason."""

from __future__ import annotations

import json
import time

import pytest

from producers.events import InferenceEvent
from producers.sdk import EventProducer
from schemas.batches import items
from tests.conftest import reset_platform
from tests.integration.checks import cli_args, read_topic
from tributary import demo
from tributary.cli import main
from tributary.platform import local
from tributary.topics import Topic

pytestmark = [pytest.mark.kafka]

PRESS = {"contract_id": "press-2027", "version": 1, "currency": "EUR", "royalty_rate_bps": 1800,
         "price_per_1k_input_tokens_micros": 450, "price_per_1k_output_tokens_micros": 1400,
         "valid_from": "2026-01-01T00:00:00Z", "valid_to": "2028-01-01T00:00:00Z"}
LATE = {**PRESS, "contract_id": "late-2027", "currency": "JPY", "royalty_rate_bps": 1000}


def event(contract_id: str, n: int) -> InferenceEvent:
    return InferenceEvent(provider="acme-ai", model_name="acme-chat-large", model_revision="2026-10-01",
                          contract_id=contract_id, output_text="An answer that quotes nothing at all.",
                          revenue_micros=1_000_000, event_id=f"ev-contract-{contract_id}-{n}")


def priced(cfg) -> dict[str, dict]:
    out = {}
    for record in read_topic(cfg, Topic.ATTRIBUTION_REQUESTS):
        for request in items(record, "requests") or [record]:
            out[request["event_id"]] = request
    return out


@pytest.fixture(scope="module")
def contracts_platform(platform_cfg):
    cfg = platform_cfg
    reset_platform(cfg)
    yield cfg
    local.stage_process(cfg, "streams").stop(timeout=30)


def test_contracts_are_published_listed_and_immutable(contracts_platform, tmp_path, capsys):
    cfg, argv = contracts_platform, cli_args(contracts_platform)
    path = tmp_path / "contracts.json"
    path.write_text(json.dumps({"contracts": [PRESS]}))
    assert main([*argv, "contracts", "add", str(path)]) == 0
    assert "published 1 new contract version(s): press-2027 v1 (EUR)" in capsys.readouterr().out
    assert main([*argv, "contracts", "add", str(path)]) == 0  # the same terms again: nothing to do
    assert "already known" in capsys.readouterr().out
    path.write_text(json.dumps([{**PRESS, "royalty_rate_bps": 2500}]))
    assert main([*argv, "contracts", "add", str(path)]) == 2
    assert "already exists with other terms; publish the new terms as v2" in capsys.readouterr().err
    path.write_text(json.dumps({**PRESS, "version": 2, "royalty_rate_bps": -5}))
    assert main([*argv, "contracts", "add", str(path)]) == 2
    assert "royalty_rate_bps" in capsys.readouterr().err
    assert main([*argv, "contracts", "list", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    sources = {(r["contract_id"], r["version"]): r["source"] for r in rows}
    assert sources[("press-2027", 1)] == "contracts topic" and sources[("standard-2026", 1)] == "built-in"
    assert [r["contract_id"] for r in read_topic(cfg, Topic.CONTRACTS)] == ["press-2027"]


def test_ingest_prices_with_published_versions_even_ones_published_while_it_runs(contracts_platform, tmp_path,
                                                                                 capsys):
    cfg, argv = contracts_platform, cli_args(contracts_platform)
    demo.start_stage(cfg, "streams")
    with EventProducer(cfg.bootstrap_servers) as producer:
        producer.emit(event("press-2027", 0))
        assert producer.flush(30) == 0
    deadline = time.monotonic() + 120
    while "ev-contract-press-2027-0" not in priced(cfg) and time.monotonic() < deadline:
        time.sleep(1)
    # published while the worker runs, used at once (not dead-lettered as unknown)
    path = tmp_path / "late.json"
    path.write_text(json.dumps(LATE))
    assert main([*argv, "contracts", "add", str(path)]) == 0
    with EventProducer(cfg.bootstrap_servers) as producer:
        producer.emit(event("late-2027", 0))
        producer.emit(event("nobody-2027", 0))
        assert producer.flush(30) == 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = priced(cfg)
        dead = {d["event_id"]: d for d in read_topic(cfg, Topic.INFERENCE_EVENTS_DLQ)}
        if "ev-contract-late-2027-0" in found and "ev-contract-nobody-2027-0" in dead:
            break
        time.sleep(1)
    press, late = found["ev-contract-press-2027-0"], found["ev-contract-late-2027-0"]
    assert (press["contract"]["contract_id"], press["contract"]["currency"], press["pool_micros"]) == (
        "press-2027", "EUR", 180_000)
    assert (late["contract"]["contract_id"], late["contract"]["currency"], late["pool_micros"]) == (
        "late-2027", "JPY", 100_000)
    assert dead["ev-contract-nobody-2027-0"]["error_code"] == "unknown_contract"
