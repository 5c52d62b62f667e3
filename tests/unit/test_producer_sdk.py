"""The SDK's typed events, refunds and the OpenAI wrapper (real ``openai`` client
against a local endpoint; events captured by a stub producer here, sent to the real
broker in tests/integration/test_producer_kafka.py)."""

from __future__ import annotations

import logging

import openai
import pytest
from prometheus_client import REGISTRY

from producers.events import InferenceEvent, InferenceRefund, InvalidEvent
from producers.openai_wrapper import instrument
from tests.openai_server import ANSWER, OpenAIServer


class CapturingProducer:
    def __init__(self, fail: bool = False):
        self.events: list[InferenceEvent] = []
        self.fail = fail

    def emit(self, event: InferenceEvent) -> bool:
        if self.fail:
            raise RuntimeError("broker unreachable")
        event.validate()
        self.events.append(event)
        return True


@pytest.fixture()
def server():
    srv = OpenAIServer().start()
    yield srv
    srv.stop()


def test_invalid_events_name_the_field():
    with pytest.raises(InvalidEvent) as err:
        InferenceEvent(provider="acme", model_name="m", model_revision="r", contract_id="c",
                       output_text="x", revenue_micros=-1).encode()
    assert err.value.field == "billing/revenue_micros"
    with pytest.raises(InvalidEvent, match="event_id"):
        InferenceRefund(event_id="", provider="acme", reason="x").encode()


def test_each_completion_emits_one_event(server):
    producer = CapturingProducer()
    client = instrument(openai.OpenAI(api_key="sk-test", base_url=server.base_url), producer,
                        provider="acme-ai", contract_id="standard-2026")
    response = client.chat.completions.create(model="acme-chat", messages=[{"role": "user", "content": "hi"}])
    assert response.choices[0].message.content == ANSWER  # the caller sees the real response
    [event] = producer.events
    assert event.event_id == "acme-ai:chatcmpl-1" and event.model_name == "acme-chat"
    assert event.model_revision == "fp_test" and event.output_text == ANSWER
    assert (event.input_tokens, event.output_tokens) == (12, 18)
    assert client.models is not None  # everything else passes through


def test_streamed_completions_emit_once_at_the_end(server):
    producer = CapturingProducer()
    client = instrument(openai.OpenAI(api_key="sk-test", base_url=server.base_url), producer,
                        provider="acme-ai", contract_id="standard-2026", revenue_micros=lambda r: 4_000)
    stream = client.chat.completions.create(model="acme-chat", messages=[], stream=True)
    chunks = list(stream)
    assert len(chunks) == len(ANSWER.split(" ")) and producer.events[0].output_text == ANSWER
    assert producer.events[0].revenue_micros == 4_000 and len(producer.events) == 1


def test_emission_failures_never_reach_the_model_call(server):
    client = instrument(openai.OpenAI(api_key="sk-test", base_url=server.base_url),
                        CapturingProducer(fail=True), provider="acme-ai", contract_id="standard-2026")
    response = client.chat.completions.create(model="acme-chat", messages=[])
    assert response.id == "chatcmpl-1" and client.emit_errors == 1


def test_a_streamed_token_billed_completion_asks_for_usage_and_is_billed_by_it(server):
    producer = CapturingProducer()
    client = instrument(openai.OpenAI(api_key="sk-test", base_url=server.base_url), producer,
                        provider="acme-ai", contract_id="standard-2026")
    chunks = list(client.chat.completions.create(model="acme-chat", messages=[], stream=True))
    assert server.requests[0]["stream_options"] == {"include_usage": True}
    # the usage-only chunk the wrapper asked for is not shown to a caller who did not ask
    assert len(chunks) == len(ANSWER.split(" ")) and all(c.choices for c in chunks)
    [event] = producer.events
    assert (event.input_tokens, event.output_tokens) == (12, 18) and event.output_text == ANSWER


def test_the_callers_stream_options_are_kept_and_its_own_usage_chunk_passed_through(server):
    producer = CapturingProducer()
    client = instrument(openai.OpenAI(api_key="sk-test", base_url=server.base_url), producer,
                        provider="acme-ai", contract_id="standard-2026")
    list(client.chat.completions.create(model="acme-chat", messages=[], stream=True,
                                        stream_options={"include_obfuscation": False}))
    assert server.requests[0]["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    chunks = list(client.chat.completions.create(model="acme-chat", messages=[], stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 18  # asked for: shown
    assert [(e.input_tokens, e.output_tokens) for e in producer.events] == [(12, 18), (12, 18)]


def test_a_token_billed_completion_without_usage_is_never_published_with_zero_tokens(caplog):
    server = OpenAIServer(usage=False).start()  # a server that ignores include_usage
    try:
        producer = CapturingProducer()
        client = instrument(openai.OpenAI(api_key="sk-test", base_url=server.base_url), producer,
                            provider="acme-ai", contract_id="standard-2026")
        before = REGISTRY.get_sample_value("tributary_producer_events_unbilled_total") or 0
        with caplog.at_level(logging.ERROR, logger="tributary.producer.openai"):
            chunks = list(client.chat.completions.create(model="acme-chat", messages=[], stream=True))
            response = client.chat.completions.create(model="acme-chat", messages=[])
        assert len(chunks) == len(ANSWER.split(" ")) and response.choices[0].message.content == ANSWER
        assert producer.events == [] and client.unbilled == 2 and client.emit_errors == 0
        assert REGISTRY.get_sample_value("tributary_producer_events_unbilled_total") == before + 2
        assert "inference event for chatcmpl-1 not published" in caplog.text
        assert "no token usage" in caplog.text
        # billed by revenue, usage is not needed
        billed = instrument(openai.OpenAI(api_key="sk-test", base_url=server.base_url), producer,
                            provider="acme-ai", contract_id="standard-2026", revenue_micros=lambda r: 4_000)
        list(billed.chat.completions.create(model="acme-chat", messages=[], stream=True))
        assert [e.revenue_micros for e in producer.events] == [4_000] and billed.unbilled == 0
    finally:
        server.stop()
