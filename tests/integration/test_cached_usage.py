"""Cached input through a running gateway: every client dialect from every provider family.

The simulator reports ``READS`` prompt tokens read from the cache and ``WRITES`` written to it
(``x-sim-cached-tokens``, ``x-sim-cache-write-tokens``), each provider in its own fields and by
its own convention (OpenAI's and Gemini's prompt counts include them, Anthropic's and
Bedrock's do not). Each client must see them in its own dialect's fields with the same prompt
total as an uncached answer, the request log must keep them, and the cost must bill them at
the deployment's cache rates.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import BEDROCK_MODEL, UPSTREAM_KEY
from tests.support import CLIENT_KEY, running_gateway

READS, WRITES = 40, 8
KNOBS = {"x-sim-cached-tokens": str(READS), "x-sim-cache-write-tokens": str(WRITES)}
# USD per 1M tokens, each rate apart so a token billed at the wrong one shows.
PRICE = {"input": 10.0, "cached_input": 1.0, "cache_write": 25.0, "output": 40.0}
PROMPT = "a long shared context " * 20  # 80 words: more than READS + WRITES tokens
PROVIDERS = ["openai", "azure_openai", "anthropic", "gemini", "vertex_ai", "bedrock"]
DIALECTS = ["chat", "responses", "messages"]
ANTHROPIC_HEADERS = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"}


@pytest.fixture(scope="module")
def gateway(
    log_dir: Path, simulator_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    store_url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('cached')}/tollway.db"
    key = "env:TEST_UPSTREAM_KEY"
    bases = {"openai": simulator_url + "/v1",
             "vertex_ai": f"{simulator_url}/v1/projects/test/locations/europe-west4"}  # fmt: skip
    models = {"bedrock": BEDROCK_MODEL}

    def group(provider: str) -> dict[str, Any]:
        deployment = {"provider": provider, "model": models.get(provider, "sim-chat"),
                      "api_key": key, "api_base": bases.get(provider, simulator_url),
                      "price": PRICE}  # fmt: skip
        if provider == "bedrock":
            deployment["region"] = "us-east-1"
        elif provider == "azure_openai":
            deployment.update(azure_deployment="my-chat", api_version="2024-10-21")
        return {"name": f"cached-{provider}", "deployments": [deployment]}

    config = {
        "store": {"url": store_url},
        "upstream": {"forward_headers": ["x-sim-*"]},
        "models": [group(provider) for provider in PROVIDERS],
        "telemetry": {"request_log": {"flush_interval": "100ms"}},
    }
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_STORE_URL": store_url}
    with running_gateway(log_dir, config, env) as (url, _):
        yield url


def _sse(text: str) -> tuple[list[dict[str, Any]], float]:
    """A stream's JSON events and the cost its closing comment says."""
    events, cost = [], None
    for line in text.splitlines():
        if line.startswith("data: {"):
            events.append(json.loads(line[6:]))
        elif line.startswith(": x-tollway-cost-usd="):
            cost = float(line.split("=", 1)[1])
    assert cost is not None, text[-500:]
    return events, cost


def _ask(url: str, dialect: str, model: str, stream: bool, headers: dict[str, str]) -> Any:
    """(the client's usage object as JSON, the cost the gateway said) for one request."""
    if stream:
        return _ask_streamed(url, dialect, model, headers)
    if dialect == "chat":
        client = openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=16,
            extra_headers=headers,
        )  # fmt: skip
        usage = raw.parse().usage
    elif dialect == "responses":
        client = openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        raw = client.responses.with_raw_response.create(
            model=model, input=PROMPT, max_output_tokens=16, extra_headers=headers
        )
        usage = raw.parse().usage
    else:
        claude = anthropic.Anthropic(base_url=url, api_key=CLIENT_KEY, max_retries=0)
        raw = claude.messages.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=16,
            extra_headers=headers,
        )  # fmt: skip
        usage = raw.parse().usage
    assert usage is not None
    return usage.model_dump(), float(raw.headers["x-tollway-cost-usd"])


def _ask_streamed(url: str, dialect: str, model: str, headers: dict[str, str]) -> Any:
    messages = [{"role": "user", "content": PROMPT}]
    if dialect == "chat":
        body = {"model": model, "messages": messages, "max_tokens": 16, "stream": True,
                "stream_options": {"include_usage": True}}  # fmt: skip
        headers = {**headers, "Authorization": f"Bearer {CLIENT_KEY}"}
        path = "/v1/chat/completions"
    elif dialect == "responses":
        body = {"model": model, "input": PROMPT, "max_output_tokens": 16, "stream": True}
        headers = {**headers, "Authorization": f"Bearer {CLIENT_KEY}"}
        path = "/v1/responses"
    else:
        body = {"model": model, "messages": messages, "max_tokens": 16, "stream": True}
        headers = {**headers, **ANTHROPIC_HEADERS}
        path = "/v1/messages"
    answer = httpx.post(url + path, json=body, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    events, cost = _sse(answer.text)
    if dialect == "chat":
        (usage,) = [event["usage"] for event in events if event.get("usage")]
    elif dialect == "responses":
        (done,) = [event for event in events if event["type"] == "response.completed"]
        usage = done["response"]["usage"]
    else:
        # As the anthropic SDK reads a stream: message_start's usage, then what message_delta
        # says anew.
        (start,) = [event for event in events if event["type"] == "message_start"]
        usage = dict(start["message"]["usage"])
        for event in events:
            if event["type"] == "message_delta":
                usage.update({k: v for k, v in event["usage"].items() if v is not None})
    return usage, cost


def _split(dialect: str, usage: dict[str, Any]) -> tuple[int, int, int, int]:
    """(whole prompt, cache reads, cache writes, output) as a dialect's usage says them."""
    if dialect == "messages":
        reads = usage.get("cache_read_input_tokens") or 0
        writes = usage.get("cache_creation_input_tokens") or 0
        return usage["input_tokens"] + reads + writes, reads, writes, usage["output_tokens"]
    prompt, output, details = (
        ("prompt_tokens", "completion_tokens", "prompt_tokens_details")
        if dialect == "chat"
        else ("input_tokens", "output_tokens", "input_tokens_details")
    )
    found = usage.get(details) or {}
    reads, writes = found.get("cached_tokens") or 0, found.get("cache_write_tokens") or 0
    return usage[prompt], reads, writes, usage[output]


def _logged(url: str, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        rows = httpx.get(
            url + "/admin/logs",
            params={"limit": "500", "since": "10m"},
            headers={"Authorization": f"Bearer {CLIENT_KEY}"},
        ).json()["data"]
        found = [row for row in rows if row["request_id"] == request_id]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"not logged: {request_id}"
        time.sleep(0.1)


_uncached: dict[tuple[str, str], int] = {}


def _uncached_prompt(url: str, dialect: str, model: str) -> int:
    """The whole prompt as the dialect counts it when nothing comes from the cache."""
    if (dialect, model) not in _uncached:
        usage, _ = _ask(url, dialect, model, False, {})
        prompt, reads, writes, _ = _split(dialect, usage)
        assert (reads, writes) == (0, 0)
        _uncached[dialect, model] = prompt
    return _uncached[dialect, model]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_cached_input_reaches_each_client_dialect_the_log_and_the_bill(
    gateway: str, dialect: str, provider: str, stream: bool
) -> None:
    model = f"cached-{provider}"
    whole = _uncached_prompt(gateway, dialect, model)
    request_id = f"t-cached-{uuid.uuid4().hex[:12]}"
    usage, cost = _ask(gateway, dialect, model, stream, {**KNOBS, "x-request-id": request_id})
    # Gemini (on Vertex AI too) reports no cache writes.
    writes = 0 if provider in ("gemini", "vertex_ai") else WRITES
    prompt, *cache, output = _split(dialect, usage)
    assert (prompt, *cache) == (whole, READS, writes), usage
    fresh = whole - READS - writes
    expected = (
        fresh * PRICE["input"]
        + READS * PRICE["cached_input"]
        + writes * PRICE["cache_write"]
        + output * PRICE["output"]
    ) / 1e6
    assert cost == pytest.approx(expected, abs=1e-9)
    row = _logged(gateway, request_id)
    assert (row["input_tokens"], row["cached_tokens"], row["cache_write_tokens"]) == (
        whole, READS, writes,
    )  # fmt: skip
    assert row["output_tokens"] == output


def test_anthropic_streams_say_cache_reads_in_message_start(gateway: str) -> None:
    # Anthropic counts the prompt, cache reads and writes before the first token: clients
    # (and the gateway's own accounting of a cut stream) read them from message_start.
    body = {"model": "cached-anthropic", "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": 16, "stream": True}  # fmt: skip
    answer = httpx.post(
        gateway + "/v1/messages", json=body, headers={**KNOBS, **ANTHROPIC_HEADERS}, timeout=30
    )
    events, _ = _sse(answer.text)
    usage = events[0]["message"]["usage"]
    assert events[0]["type"] == "message_start"
    assert (usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]) == (
        READS, WRITES,
    )  # fmt: skip
