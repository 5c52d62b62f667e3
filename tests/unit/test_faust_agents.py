"""The Faust agents, run with ``agent.test_context()`` and a memory store. The same
agents run on the real broker in tests/integration."""

import asyncio
import json
from unittest.mock import AsyncMock, patch

import streams.app as streams_app
from schemas import examples
from streams.balances import HolderBalance

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


def test_accrue_sends_entries_keyed_by_holder_that_sum_to_the_pool():
    attribution = {
        "schema_version": 1, "attribution_id": "at_x", "event_id": "e1", "provider": "acme",
        "contract": {"contract_id": "standard-2026", "version": 1, "royalty_rate_bps": 2000, "currency": "USD"},
        "pool_micros": 1001, "unattributed_ppm": 250_000, "evidence": {},
        "shares_ppm": [{"work_id": "w1", "holder_id": "h1", "share_ppm": 500_000},
                       {"work_id": "w2", "holder_id": "h2", "share_ppm": 250_000}],
    }

    async def scenario():
        with patch.object(streams_app.royalty_ledger, "send", AsyncMock()) as ledger:
            async with streams_app.accrue_agent.test_context() as agent:
                await agent.put(json.dumps(attribution).encode())
            return ledger.call_args_list

    calls = run(scenario())
    entries = [json.loads(c.kwargs["value"]) for c in calls]
    assert sum(e["amount_micros"] for e in entries) == 1001
    assert all(c.kwargs["key"] == e["holder_id"].encode() for c, e in zip(calls, entries, strict=True))


def test_balances_requests_a_payout_once_even_when_entries_are_replayed():
    entry = {"entry_id": "le_1", "entry_type": "accrual", "amount_micros": 5_000_000, "currency": "USD",
             "holder_id": "h-replay", "created_at": "2026-11-20T00:00:00+00:00"}
    escrow = {**entry, "entry_id": "le_2", "holder_id": "escrow:unattributed"}

    async def scenario():
        with patch.object(streams_app.payout_requests, "send", AsyncMock()) as payouts:
            async with streams_app.balances_agent.test_context() as agent:
                for value in (entry, entry, escrow):
                    await agent.put(json.dumps(value).encode())
                state = HolderBalance.from_json(streams_app.balances["h:h-replay"])
            return sent_values(payouts), state

    requests, state = run(scenario())
    assert len({r["payout_id"] for r in requests}) == 1
    assert requests[0]["amount_micros"] == 5_000_000
    assert state.accrued_micros == 5_000_000 and state.reserved_micros == 5_000_000


def test_policy_agent_stores_valid_policies_and_ignores_invalid_ones():
    async def scenario():
        async with streams_app.policy_agent.test_context() as agent:
            await agent.put(json.dumps({"schema_version": 1, "holder_id": "h-pol",
                                        "min_payout_micros": 5_000_000, "min_interval_s": 86_400}).encode())
            await agent.put(json.dumps({"schema_version": 1, "holder_id": "h-bad",
                                        "min_payout_micros": -1}).encode())
            await agent.put(b"not json")
            return streams_app.book.policy("h-pol"), streams_app.balances.get("pol:h-bad")

    policy, bad = run(scenario())
    assert policy.min_payout_micros == 5_000_000 and policy.min_interval_s == 86_400
    assert policy.fee_fixed_micros == streams_app.book.default_policy.fee_fixed_micros
    assert bad is None
