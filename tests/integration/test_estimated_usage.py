"""What a request costs when the upstream does not say (all of) its usage: a stream cut by
the simulator (``stop-after:N``) after it reported part of its usage, reasoning in answers
without usage, a fallback of another family. Each is flagged in the request log and the
usage report, and charged to the key's budget exactly as the request log costs it.

Requests go over HTTP to a ``tollway serve`` process (SQLite) and on to the simulator.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from tests.conftest import AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, BEDROCK_MODEL, UPSTREAM_KEY
from tests.support import CLIENT_KEY, free_port, running_gateway
from tollway.core.types import ChatRequest, Message
from tollway.pricing.tokens import TokenCounter

# USD per 1M tokens: whole micro-dollars a token, each kind its own rate.
PRICE = {"input": 1000.0, "output": 4000.0, "cache_write": 2000.0, "cached_input": 100.0}
THINKING = {"type": "enabled", "budget_tokens": 1024}
REASONING_RATE = 8000.0  # a price that bills reasoning apart from output


@pytest.fixture(scope="module")
def gateway(log_dir: Path, simulator_url: str) -> Iterator[str]:
    key = "env:TEST_UPSTREAM_KEY"
    bedrock = {
        "provider": "bedrock", "model": BEDROCK_MODEL, "region": "us-east-1",
        "api_base": simulator_url, "aws_access_key_id": "env:TEST_AWS_KEY_ID",
        "aws_secret_access_key": "env:TEST_AWS_SECRET_KEY", "price": PRICE,
    }  # fmt: skip
    # Its stream's head (message_start, the prompt written to the cache) and then silence:
    # the gateway's first-byte limit cuts it, and the request fails over (when it can).
    stalling_claude = {
        "provider": "anthropic", "model": "sim-chat", "api_base": simulator_url, "api_key": key,
        "price": PRICE, "headers": {"x-sim-fault": "keepalive-after:0"},
        "timeouts": {"first_byte": "500ms"},
    }  # fmt: skip
    # message_start (the prompt's usage), then an overloaded_error event.
    overloading_claude = {
        "provider": "anthropic", "model": "sim-chat", "api_base": simulator_url, "api_key": key,
        "price": PRICE, "headers": {"x-sim-fault": "error-after:0"},
    }  # fmt: skip
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: the primary fails at once
    config = {
        "upstream": {"forward_headers": ["x-sim-*"]},
        "models": [
            {"name": "gpt", "deployments": [{"provider": "openai", "model": "sim-chat",
             "api_base": f"{simulator_url}/v1", "api_key": key, "price": PRICE}]},
            {"name": "gpt-reasoning", "deployments": [{"provider": "openai", "model": "sim-chat",
             "api_base": f"{simulator_url}/v1", "api_key": key,
             "price": {**PRICE, "reasoning": REASONING_RATE}}]},
            {"name": "claude", "deployments": [{"provider": "anthropic", "model": "sim-chat",
             "api_base": simulator_url, "api_key": key, "price": PRICE}]},
            {"name": "gemini", "deployments": [{"provider": "gemini", "model": "sim-chat",
             "api_base": simulator_url, "api_key": key, "price": PRICE}]},
            {"name": "bedrock", "deployments": [bedrock]},
            {"name": "claude-stalls", "deployments": [stalling_claude]},
            {"name": "stalled-claude-then-claude", "strategy": "priority", "retries": 0,
             "deployments": [stalling_claude, {"provider": "anthropic", "model": "sim-chat",
             "api_base": simulator_url, "api_key": key, "price": PRICE}]},
            {"name": "claude-overloads", "retries": 0, "deployments": [overloading_claude]},
            {"name": "overloaded-claude-then-claude", "strategy": "priority", "retries": 0,
             "deployments": [overloading_claude, {"provider": "anthropic", "model": "sim-chat",
             "api_base": simulator_url, "api_key": key, "price": PRICE}]},
            {"name": "gpt-then-claude", "strategy": "priority", "retries": 0, "deployments": [
                {"provider": "openai", "model": "gpt-4o", "api_base": dead, "api_key": key,
                 "price": PRICE}, bedrock]},
        ],
        "limits": {"spend_flush_interval": "200ms"},
        "telemetry": {"request_log": {"flush_interval": "100ms"}},
    }  # fmt: skip
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TEST_AWS_KEY_ID": AWS_ACCESS_KEY_ID}
    env["TEST_AWS_SECRET_KEY"] = AWS_SECRET_ACCESS_KEY
    with running_gateway(log_dir, config, env) as (url, _):
        yield url


def admin(url: str, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    response = httpx.request(
        method, url + path, json=body, headers={"authorization": f"Bearer {CLIENT_KEY}"}
    )
    assert response.status_code == status, response.text
    return response.json()


def budgeted_key(url: str) -> tuple[str, str]:
    """A fresh key with a budget (so admission counts the input before routing)."""
    created = admin(url, "POST", "/admin/keys", {"name": f"est-{uuid.uuid4().hex[:6]}"}, 201)
    body = {"scope": "key", "scope_id": created["id"], "period": "day", "limit_usd": 1000.0}
    admin(url, "PUT", "/admin/budgets", body)
    return created["id"], created["key"]


def records(url: str, key_id: str, count: int) -> list[dict[str, Any]]:
    """The request log's records of ``key_id``, once ``count`` are written."""
    deadline = time.monotonic() + 15
    while True:
        rows = admin(url, "GET", f"/admin/logs?key={key_id}&limit=100&since=10m")["data"]
        if len(rows) >= count or time.monotonic() > deadline:
            assert len(rows) == count, rows
            return list(rows)
        time.sleep(0.1)


def settled(url: str, key_id: str, records: list[dict[str, Any]], estimated: bool = True) -> None:
    """The budget was charged what the request log says, and the usage report agrees (each
    record estimated, unless ``estimated`` is false: none is)."""
    total = sum(r["cost_micros"] for r in records)
    deadline = time.monotonic() + 10
    while True:
        (row,) = admin(url, "GET", f"/admin/budgets?scope=key&scope_id={key_id}")["data"]
        if round(row["spent_usd"] * 1e6) == total or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert round(row["spent_usd"] * 1e6) == total
    (report,) = admin(url, "GET", f"/admin/reports/usage?group_by=key&key={key_id}")["data"]
    assert report["estimated_requests"] == (len(records) if estimated else 0)
    assert round(report["cost_usd"] * 1e6) == total


def sse(body: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: {")]


def openai_chat(url: str, key: str, model: str, text: str, **extra: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}", **extra.pop("headers", {})}
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    return httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=30)


def full_usage(url: str, key: str, model: str, text: str) -> dict[str, Any]:
    """The usage the upstream reports for the same request answered whole."""
    answer = openai_chat(url, CLIENT_KEY, model, text)
    assert answer.status_code == 200, answer.text
    usage: dict[str, Any] = answer.json()["usage"]
    return usage


def test_a_cut_stream_is_costed_from_the_usage_reported_before_the_cut(gateway: str) -> None:
    key_id, key = budgeted_key(gateway)
    cut = {"x-sim-fault": "stop-after:3"}
    # Anthropic: message_start said the input, here all of it written to the cache.
    claude = httpx.post(
        gateway + "/v1/messages",
        json={"model": "claude", "max_tokens": 50, "stream": True,
              "cache_control": {"type": "ephemeral"},
              "messages": [{"role": "user", "content": "a cut claude stream of many words"}]},
        headers={"x-api-key": key, "anthropic-version": "2023-06-01", **cut}, timeout=30,
    )  # fmt: skip
    events = sse(claude.text)
    written = events[0]["message"]["usage"]["cache_creation_input_tokens"]
    assert written > 0
    claude_text = "".join(
        e["delta"]["text"] for e in events if e.get("delta", {}).get("type") == "text_delta"
    )
    # Gemini: every event said the tokens so far, the prompt's and the output's.
    text = "a cut gemini stream of many words"
    gemini = openai_chat(gateway, key, "gemini", text, stream=True, headers=cut)
    gemini_text = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in sse(gemini.text) if c.get("choices")
    )
    assert gemini_text and claude_text
    gemini_input = full_usage(gateway, key, "gemini", text)["prompt_tokens"]

    rows = {r["request_id"]: r for r in records(gateway, key_id, 2)}
    claude_row = rows[claude.headers["x-request-id"]]
    assert claude_row["usage_estimated"] is True
    assert claude_row["input_tokens"] == written  # exact: as message_start said it
    # message_start's output (1), then what came after it.
    output = 1 + math.ceil(len(claude_text) / 4)
    assert claude_row["output_tokens"] == output
    assert claude_row["cost_micros"] == written * 2000 + output * 4000
    gemini_row = rows[gemini.headers["x-request-id"]]
    assert gemini_row["usage_estimated"] is True
    assert gemini_row["input_tokens"] == gemini_input
    assert gemini_row["output_tokens"] == 3  # the last event's count: a token a chunk
    assert gemini_row["cost_micros"] == gemini_input * 1000 + 3 * 4000
    settled(gateway, key_id, list(rows.values()))


def test_reasoning_without_usage_is_costed_as_output(gateway: str) -> None:
    key_id, key = budgeted_key(gateway)
    reasoning = {"x-sim-reasoning": "reasoning_content", "x-sim-usage": "omit"}
    whole = openai_chat(gateway, key, "gpt", "reason then answer", headers=reasoning)
    message = whole.json()["choices"][0]["message"]
    whole_chars = len(message["reasoning_content"]) + len(message["content"])
    streamed = openai_chat(gateway, key, "gpt", "reason then stream", stream=True,
                           headers=reasoning)  # fmt: skip
    deltas = [c["choices"][0]["delta"] for c in sse(streamed.text) if c.get("choices")]
    stream_chars = sum(
        len(d.get("reasoning_content") or "") + len(d.get("content") or "") for d in deltas
    )
    # Claude's thinking on Bedrock, cut while it reasons: no usage came at all.
    bedrock = httpx.post(
        gateway + "/v1/messages",
        json={"model": "bedrock", "max_tokens": 2048, "stream": True, "thinking": THINKING,
              "messages": [{"role": "user", "content": "think about this for a while"}]},
        headers={"x-api-key": key, "anthropic-version": "2023-06-01",
                 "x-sim-fault": "stop-after:4"}, timeout=30,
    )  # fmt: skip
    thought = "".join(
        e["delta"].get("thinking") or e["delta"].get("text") or ""
        for e in sse(bedrock.text)
        if e.get("type") == "content_block_delta"
    )
    assert thought.startswith("Simulated reasoning")
    rows = {r["request_id"]: r for r in records(gateway, key_id, 3)}
    chars = {
        whole.headers["x-request-id"]: whole_chars,
        streamed.headers["x-request-id"]: stream_chars,
        bedrock.headers["x-request-id"]: len(thought),
    }
    for request_id, generated in chars.items():
        assert rows[request_id]["usage_estimated"] is True
        assert rows[request_id]["output_tokens"] == math.ceil(generated / 4)
    settled(gateway, key_id, list(rows.values()))


def test_reasoning_without_usage_is_costed_at_the_reasoning_rate(gateway: str) -> None:
    # A price with a reasoning rate bills reasoning tokens at it; when the upstream says no
    # usage (or a stream is cut before it does), the reasoning the gateway passed on was
    # counted as output and billed at the output rate, under the provider's bill.
    key_id, key = budgeted_key(gateway)
    reasoning = {"x-sim-reasoning": "reasoning_content", "x-sim-usage": "omit"}
    whole = openai_chat(gateway, key, "gpt-reasoning", "reason at a price", headers=reasoning)
    message = whole.json()["choices"][0]["message"]
    generated = {
        whole.headers["x-request-id"]: (len(message["reasoning_content"]), len(message["content"]))
    }
    streamed = openai_chat(gateway, key, "gpt-reasoning", "reason at a price, streamed",
                           stream=True, headers=reasoning)  # fmt: skip
    deltas = [c["choices"][0]["delta"] for c in sse(streamed.text) if c.get("choices")]
    generated[streamed.headers["x-request-id"]] = (
        sum(len(d.get("reasoning_content") or "") for d in deltas),
        sum(len(d.get("content") or "") for d in deltas),
    )
    rows = {r["request_id"]: r for r in records(gateway, key_id, 2)}
    for request_id, (thought, said) in generated.items():
        row = rows[request_id]
        assert thought > 0 and said > 0 and row["usage_estimated"] is True
        output = math.ceil((thought + said) / 4)
        reasoned = math.ceil(thought / 4)
        assert row["output_tokens"] == output
        expected = (
            row["input_tokens"] * PRICE["input"]
            + (output - reasoned) * PRICE["output"]
            + reasoned * REASONING_RATE
        )
        assert row["cost_micros"] == round(expected)
    settled(gateway, key_id, list(rows.values()))


def test_a_fallback_of_another_family_is_costed_with_its_own_input_count(gateway: str) -> None:
    key_id, key = budgeted_key(gateway)
    text = "the primary is down so a claude on bedrock answers this rather long question"
    answer = openai_chat(gateway, key, "gpt-then-claude", text, stream=True,
                         headers={"x-sim-fault": "stop-after:3"})  # fmt: skip
    assert answer.headers["x-tollway-provider"] == "bedrock"
    request = ChatRequest(model="gpt-then-claude", messages=[Message("user", text)])
    counter = TokenCounter()
    claude_count = counter.chat(request, "bedrock", BEDROCK_MODEL)
    assert claude_count != counter.chat(request, "openai", "gpt-4o")
    (row,) = records(gateway, key_id, 1)
    assert row["usage_estimated"] is True
    assert row["input_tokens"] == claude_count
    settled(gateway, key_id, [row])


def priced(row: dict[str, Any]) -> int:
    """What a request log row's token columns cost at ``PRICE``, in micro-dollars."""
    fresh = row["input_tokens"] - row["cached_tokens"] - row["cache_write_tokens"]
    return (
        fresh * 1000
        + row["cached_tokens"] * 100
        + row["cache_write_tokens"] * 2000
        + row["output_tokens"] * 4000
    )


def test_the_cache_writes_of_a_stalled_attempt_are_logged_with_its_cost(gateway: str) -> None:
    # The head of a stream the first-byte limit cut (message_start) reported the prompt
    # written to the cache: it is charged at the cache-write rate, and the request log
    # said those tokens as input only, its cache-write column short of what was billed.
    key_id, key = budgeted_key(gateway)
    client = anthropic.Anthropic(base_url=gateway, api_key=key, max_retries=0)
    cached = {"cache_control": {"type": "ephemeral"}}
    messages: Any = [{"role": "user", "content": "a prompt worth caching for later turns"}]
    with pytest.raises(anthropic.APIStatusError) as failed:
        client.messages.create(
            model="claude-stalls", max_tokens=50, messages=messages, stream=True, extra_body=cached
        )
    assert failed.value.status_code == 504
    raw = client.messages.with_raw_response.create(
        model="stalled-claude-then-claude", max_tokens=50, messages=messages, stream=True,
        extra_body=cached,
    )  # fmt: skip
    events = list(raw.parse())
    written = events[0].message.usage.cache_creation_input_tokens  # type: ignore[union-attr]
    assert written

    rows = {r["request_id"]: r for r in records(gateway, key_id, 2)}
    stalled = rows[failed.value.response.headers["x-request-id"]]
    assert (stalled["input_tokens"], stalled["cache_write_tokens"]) == (written, written)
    assert stalled["cost_micros"] == priced(stalled) == written * 2000 + 4000  # output: 1
    failed_over = rows[raw.headers["x-request-id"]]
    assert failed_over["attempts"] == 2
    # The answer's prompt and the stalled attempt's, each written to the cache.
    assert failed_over["cache_write_tokens"] == failed_over["input_tokens"] == 2 * written
    assert failed_over["cost_micros"] == priced(failed_over)
    # What message_start reported, not counted by the gateway: not estimated.
    settled(gateway, key_id, list(rows.values()), estimated=False)


def test_an_attempt_failing_after_its_head_reported_the_prompt_is_charged_it(
    gateway: str,
) -> None:
    # message_start said the prompt's tokens, then the stream failed (overloaded_error): the
    # provider read the prompt and bills it, as it does one a time limit cut after its head.
    key_id, key = budgeted_key(gateway)
    client = anthropic.Anthropic(base_url=gateway, api_key=key, max_retries=0)
    messages: Any = [{"role": "user", "content": "a prompt the overloaded model read first"}]
    with pytest.raises(anthropic.APIStatusError) as failed:
        list(client.messages.create(
            model="claude-overloads", max_tokens=50, messages=messages, stream=True
        ))  # fmt: skip
    raw = client.messages.with_raw_response.create(
        model="overloaded-claude-then-claude", max_tokens=50, messages=messages, stream=True
    )
    events = list(raw.parse())
    prompt = events[0].message.usage.input_tokens  # type: ignore[union-attr]
    assert prompt

    rows = {r["request_id"]: r for r in records(gateway, key_id, 2)}
    lone = rows[failed.value.response.headers["x-request-id"]]
    assert lone["input_tokens"] == prompt and lone["cost_micros"] == priced(lone) > 0
    assert lone["cost_micros"] >= prompt * 1000
    failed_over = rows[raw.headers["x-request-id"]]
    assert failed_over["attempts"] == 2
    # Both attempts read the prompt: both are charged it.
    assert failed_over["input_tokens"] == 2 * prompt
    assert failed_over["cost_micros"] == priced(failed_over)
    settled(gateway, key_id, list(rows.values()), estimated=False)
