"""Reading a Responses upstream's answers and events, and relaying its events to the client."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tollway.core.errors import RateLimited, UpstreamProtocolError, UpstreamStatusError
from tollway.core.types import ReasoningPart
from tollway.wire.responses_reasoning import seal as seal_thinking
from tollway.wire.responses_relay import EventRelay
from tollway.wire.responses_response import reasoning_id
from tollway.wire.responses_thought_signatures import END, Signed
from tollway.wire.responses_thought_signatures import seal as seal_signatures
from tollway.wire.responses_upstream import (
    WIRE_FORMAT,
    EventReader,
    response_from_wire,
    sendable,
    usage_from_wire,
)

USAGE = {
    "input_tokens": 30,
    "input_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 5},
    "output_tokens": 20,
    "output_tokens_details": {"reasoning_tokens": 12},
    "total_tokens": 50,
}
OUTPUT = [
    {"id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "hmm"}]},
    {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
     "content": [{"type": "output_text", "text": "Hello", "annotations": []}]},
    {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
]  # fmt: skip


def answer(**fields: Any) -> dict[str, Any]:
    body = {"id": "resp_1", "object": "response", "created_at": 7, "model": "o4-mini"}
    return {**body, "status": "completed", "output": OUTPUT, "usage": USAGE, **fields}


def test_usage_counts_cached_cache_written_and_reasoning_tokens() -> None:
    usage = usage_from_wire(USAGE)
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens) == (30, 20)
    assert (usage.cached_input_tokens, usage.cache_write_tokens, usage.reasoning_tokens) == (
        10, 5, 12,
    )  # fmt: skip
    with pytest.raises(UpstreamProtocolError):
        usage_from_wire({"input_tokens": "many"})


def test_an_answer_sent_as_it_came_is_read_only_for_its_usage() -> None:
    response = response_from_wire(answer(), whole=False)
    assert response.choices == [] and response.usage is not None
    assert (response.id, response.model, response.wire_format) == ("resp_1", "o4-mini", WIRE_FORMAT)


def test_an_answer_a_stage_reads_or_without_usage_is_read_whole() -> None:
    for response in (
        response_from_wire(answer(), whole=True),
        response_from_wire(answer(usage=None), whole=False),
    ):
        (choice,) = response.choices
        assert choice.finish_reason == "tool_calls"
        assert choice.message.text() == "Hello"
        assert isinstance(choice.message.content, list)
        assert choice.message.content[0] == ReasoningPart("hmm")
        assert [c.id for c in choice.message.tool_calls or ()] == ["call_1"]
    cut = answer(status="incomplete", incomplete_details={"reason": "max_output_tokens"})
    assert response_from_wire(cut, whole=True).choices[0].finish_reason == "length"


def test_an_answer_that_is_no_response_object_is_the_upstreams_protocol_error() -> None:
    with pytest.raises(UpstreamProtocolError) as caught:
        response_from_wire({"choices": []}, whole=False)
    assert caught.value.status == 502


def event(kind: str, number: int, **fields: Any) -> bytes:
    return orjson.dumps({"type": kind, "sequence_number": number, **fields})


def test_events_are_read_into_chunks_that_keep_them() -> None:
    reader = EventReader()
    opening = {"id": "resp_1", "model": "o4-mini", "created_at": 7, "status": "in_progress"}
    created = reader.chunk(event("response.created", 0, response=opening))
    assert created.choices == [] and created.raw is not None and created.id == "resp_1"
    delta = reader.chunk(event("response.output_text.delta", 1, delta="Hi", output_index=0))
    assert delta.choices[0].content == "Hi" and delta.model == "o4-mini"
    summary = reader.chunk(event("response.reasoning_summary_text.delta", 2, delta="so"))
    assert summary.choices[0].reasoning is not None and summary.choices[0].reasoning.text == "so"
    added = {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": ""}
    call = reader.chunk(event("response.output_item.added", 3, output_index=1, item=added))
    (delta_call,) = call.choices[0].tool_calls or ()
    assert (delta_call.index, delta_call.id, delta_call.name) == (1, "call_1", "f")
    assert not reader.finished
    done = reader.chunk(event("response.completed", 4, response=answer()))
    assert reader.finished and done.usage is not None and done.usage.output_tokens == 20
    assert done.choices[0].finish_reason == "tool_calls"


def test_an_error_or_failed_event_is_the_upstreams_failure_classified_by_its_code() -> None:
    reader = EventReader()
    overloaded = event("error", 3, code="server_is_overloaded", message="busy", param=None)
    with pytest.raises(UpstreamStatusError) as caught:
        reader.chunk(overloaded)
    assert (caught.value.status, caught.value.code) == (503, "server_is_overloaded")
    assert "busy" in caught.value.message and caught.value.retryable
    nested = event("error", 3, error={"type": "requests", "code": "rate_limit_exceeded"})
    with pytest.raises(UpstreamStatusError) as caught:
        reader.chunk(nested)
    assert (caught.value.status, caught.value.openai_type) == (429, "requests")
    limited = {"code": "rate_limit_exceeded", "message": "slow down"}
    failed = {"id": "resp_1", "status": "failed", "error": limited}
    with pytest.raises(UpstreamStatusError) as caught:
        reader.chunk(event("response.failed", 4, response=failed))
    assert (caught.value.status, caught.value.code) == (429, "rate_limit_exceeded")
    failed = {"id": "resp_1", "status": "failed", "error": {"code": "server_error", "message": "x"}}
    with pytest.raises(UpstreamStatusError) as caught:
        reader.chunk(event("response.failed", 4, response=failed))
    assert caught.value.status == 502
    with pytest.raises(UpstreamProtocolError):
        reader.chunk(event("response.failed", 4, response={"status": "failed"}))
    with pytest.raises(UpstreamProtocolError):
        reader.chunk(b'{"no": "type"}')


def test_the_relay_sends_events_as_they_came_and_numbers_its_own_after_them() -> None:
    reader, relay = EventReader(), EventRelay()
    opening = {"id": "resp_1", "model": "o4-mini", "status": "in_progress", "output": []}
    raw = event("response.created", 0, response=opening)
    assert relay.feed(reader.chunk(raw)) == b"event: response.created\ndata: " + raw + b"\n\n"
    item = OUTPUT[1]
    relay.feed(reader.chunk(event("response.output_item.done", 1, output_index=0, item=item)))
    changed = reader.chunk(event("response.output_text.delta", 2, delta="secret"))
    changed.choices[0].content, changed.raw = "[redacted]", None  # as a stage changes it
    written = relay.feed(changed)
    assert orjson.loads(written.split(b"data: ")[1])["delta"] == "[redacted]"
    frames = relay.error(RateLimited("slow down")).split(b"\n\n")
    error, failed = (orjson.loads(frame.split(b"data: ")[1]) for frame in frames[:2])
    assert (error["type"], error["sequence_number"]) == ("error", 3)
    assert (failed["type"], failed["sequence_number"]) == ("response.failed", 4)
    response = failed["response"]
    assert (response["id"], response["status"], response["output"]) == ("resp_1", "failed", [item])
    assert response["error"]["code"] == "rate_limit_exceeded"


def test_the_relay_closes_a_part_with_the_text_its_client_was_sent() -> None:
    # A stage dropped a delta (its on_chunk answered None: the relay never saw it): the
    # closing events say the text the client got, item and response included.
    reader, relay = EventReader(), EventRelay()
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}

    def sent(kind: str, number: int, **fields: Any) -> dict[str, Any]:
        written = relay.feed(reader.chunk(event(kind, number, **fields)))
        return orjson.loads(written.split(b"data: ")[1])  # type: ignore[no-any-return]

    sent("response.output_text.delta", 0, **where, delta="Hel")
    reader.chunk(event("response.output_text.delta", 1, **where, delta="lo"))  # dropped
    assert sent("response.output_text.done", 2, **where, text="Hello")["text"] == "Hel"
    part = {"type": "output_text", "text": "Hello", "annotations": []}
    assert sent("response.content_part.done", 3, **where, part=part)["part"]["text"] == "Hel"
    item = sent("response.output_item.done", 4, output_index=0, item=OUTPUT[1])["item"]
    assert item["content"][0] == {"type": "output_text", "text": "Hel", "annotations": []}
    done = sent("response.completed", 5, response=answer(output=[OUTPUT[1]]))["response"]
    assert done["output"][0]["content"][0]["text"] == "Hel"
    assert done["usage"] == USAGE and done["id"] == "resp_1"


def test_the_relay_sends_closing_events_as_they_came_when_nothing_changed() -> None:
    reader, relay = EventReader(), EventRelay()
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    relay.feed(reader.chunk(event("response.output_text.delta", 0, **where, delta="Hello")))
    raw = event("response.output_text.done", 1, **where, text="Hello")
    assert (
        relay.feed(reader.chunk(raw)) == b"event: response.output_text.done\ndata: " + raw + b"\n\n"
    )


def test_the_reasoning_the_gateway_sealed_is_not_sent_to_a_responses_upstream() -> None:
    claudes = seal_thinking([ReasoningPart("thought", signature="c2lnbmVk")])
    geminis = seal_signatures([Signed("gemini:c2lnbmVk", END)])
    user = {"role": "user", "content": "hi"}
    said = {"type": "message", "role": "assistant", "content": "hello"}
    openais = {"id": "rs_3", "type": "reasoning", "summary": [], "encrypted_content": "gAAAAAx"}
    body = {
        "model": "o4-mini",
        "input": [
            user,
            {"id": "rs_1", "type": "reasoning", "summary": [], "encrypted_content": claudes},
            {"id": "rs_2", "type": "reasoning", "summary": [], "encrypted_content": geminis},
            said,
            openais,
        ],
        "store": False,
    }
    assert sendable(body) == {**body, "input": [user, said, openais]}


def test_the_reasoning_the_gateway_made_up_unsealed_is_not_sent_to_a_responses_upstream() -> None:
    made_up = reasoning_id()
    assert made_up.startswith("rs_tw") and int(made_up.removeprefix("rs_tw"), 16) >= 0
    user = {"role": "user", "content": "hi"}
    ours = {"id": made_up, "type": "reasoning", "summary": [{"type": "summary_text", "text": "h"}]}
    stored = {"id": "rs_0ddf444cf00eca25", "type": "reasoning", "summary": []}  # OpenAI's
    theirs = {"id": "rs_tw1", "type": "reasoning", "summary": [], "encrypted_content": "gAAAAAx"}
    body = {"model": "o4-mini", "input": [user, ours, stored, theirs], "store": False}
    assert sendable(body) == {**body, "input": [user, stored, theirs]}


def test_a_body_without_the_gateways_seals_is_sent_as_it_came() -> None:
    quoted = {"role": "user", "content": "tollway.reasoning: is what it says"}
    body: dict[str, Any] = {"model": "o4-mini", "input": [quoted]}
    assert sendable(body) is body
    assert sendable({"model": "o4-mini", "input": "hi"}) == {"model": "o4-mini", "input": "hi"}
