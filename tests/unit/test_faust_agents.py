"""The Faust ingest agent, run with ``agent.test_context()`` and a memory store. The same
agent runs on the real broker in tests/integration; the money stages are
transactional loops (tests/unit/test_money_stages.py)."""

import asyncio
import json
import os
from unittest.mock import AsyncMock, patch

os.environ["TRIBUTARY_STREAMS_STORE"] = "memory://"  # before the app is made: no RocksDB files from unit tests

import streams.app as streams_app  # noqa: E402
from schemas import examples, first_problem

EXAMPLES = dict(examples("inference-events"))


def run(coro):
    return asyncio.new_event_loop().run_until_complete(coro)


def sent_values(mock: AsyncMock) -> list[dict]:
    return [json.loads(call.kwargs["value"]) for call in mock.call_args_list]


def test_ingest_prices_valid_events_and_dead_letters_the_rest():
    async def scenario():
        with patch.object(streams_app.attribution_requests, "send", AsyncMock()) as requests, \
             patch.object(streams_app.dlq, "send", AsyncMock()) as dlq:
            async with streams_app.ingest.test_context() as agent:
                await agent.put(EXAMPLES["valid-revenue.json"])
                await agent.put(EXAMPLES["invalid-unknown-contract.json"])
                await agent.put(EXAMPLES["valid-revenue.json"])  # same event_id again: duplicate
            return sent_values(requests), sent_values(dlq), dlq.call_args_list

    requests, dead, calls = run(scenario())
    assert [r["event_id"] for r in requests] == ["evt-example-0001"]
    assert requests[0]["pool_micros"] == 5_000
    assert [d["error_code"] for d in dead] == ["unknown_contract", "duplicate_event_id"]
    headers = dict(calls[0].kwargs["headers"])
    assert headers["error_code"] == b"unknown_contract" and headers["field"] == b"contract_id"
    assert "source_offset" in headers


def test_a_batch_record_yields_one_request_record_and_dead_letters_only_its_bad_events():
    events = [json.loads(EXAMPLES[n]) for n in ("valid-revenue.json", "invalid-unknown-contract.json",
                                                "valid-tokens.json", "valid-revenue.json")]
    for event in events:  # ids of their own: the app's table outlives each test
        event["event_id"] += "-in-batch"
    batch = json.dumps({"schema_version": 1, "kind": "batch", "events": events}).encode()

    async def scenario():
        with patch.object(streams_app.attribution_requests, "send", AsyncMock()) as requests, \
             patch.object(streams_app.dlq, "send", AsyncMock()) as dlq:
            async with streams_app.ingest.test_context() as agent:
                await agent.put(batch)
            return sent_values(requests), sent_values(dlq)

    [record], dead = run(scenario())
    assert record["kind"] == "batch" and first_problem("attribution-request-batch.v1", record) is None
    assert [r["event_id"] for r in record["requests"]] == [events[0]["event_id"], events[2]["event_id"]]
    assert [(d["error_code"], d["source"]["index"]) for d in dead] == [("unknown_contract", 1),
                                                                       ("duplicate_event_id", 3)]
    assert json.loads(dead[0]["payload"]) == events[1]  # the bad event alone, not the whole batch


def test_the_worker_consumer_waits_at_most_fetch_max_wait_ms_on_a_fetch():
    """Faust fixes fetch_max_wait_ms at 1,500 ms; with 12 partitions that long poll was
    most of the emit -> ingest latency (streams.app, FETCH_MAX_WAIT_MS)."""
    async def build():
        thread = streams_app.app.consumer._thread
        worker = thread._create_worker_consumer(streams_app.app.transport)
        client = thread._create_client_consumer(streams_app.app.transport)
        return worker._fetch_max_wait_ms, client._fetch_max_wait_ms

    worker_wait, client_wait = run(build())
    assert worker_wait == streams_app.FETCH_MAX_WAIT_MS == 50
    assert client_wait == 500  # aiokafka's default: other consumers are left alone
