"""The Faust ingest agent, run with ``agent.test_context()`` and a memory store. The same
agent runs on the real broker in tests/integration; the money stages are
transactional loops (tests/unit/test_money_stages.py)."""

import asyncio
import json
from unittest.mock import AsyncMock, patch

import streams.app as streams_app
from schemas import examples

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
