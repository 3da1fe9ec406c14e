"""What a complete (non-streamed) call a time limit cut after its request was sent costs.

The simulator takes 5 s to answer; the gateway's limit (a deployment's first-byte timeout, a
latency threshold, the model group's deadline) cuts the call long before. The provider read
the prompt by then (prefill comes first) and bills it: the request is charged its prompt's
counted tokens at the deployment's input price, marked estimated, in the request log and the
key's budget; when it then fails over, the cut attempt's prompt besides the answer's usage.
A stream cut after its head is charged what the head reported (test_estimated_usage.py); a
call still connecting when it was cut reached no provider (test_client_disconnect.py).

Requests go over HTTP, with the real ``openai`` SDK, to a ``tollway serve`` process and on to
the simulator.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.support import CLIENT_KEY, admin_request, budgeted_key, logged_row, running_gateway
from tollway.core.types import ChatRequest, Message
from tollway.pricing.tokens import TokenCounter

ADMIN = {"Authorization": f"Bearer {CLIENT_KEY}"}
PRICE = {"input": 1000.0, "output": 4000.0}  # USD per 1M tokens: whole micro-dollars a token
PROMPT = "a question the provider read before the gateway stopped waiting"
SLOW = {"x-sim-ttft-ms": "5000"}  # far past every limit below


@pytest.fixture(scope="module")
def gateway(log_dir: Path, simulator_url: str) -> Iterator[str]:
    base = {"provider": "openai", "model": "sim-chat", "api_base": f"{simulator_url}/v1",
            "api_key": "env:TEST_UPSTREAM_KEY", "price": PRICE}  # fmt: skip
    stalling = {**base, "id": "stalling", "headers": SLOW, "timeouts": {"first_byte": "500ms"}}
    slow = {**base, "id": "slow", "headers": SLOW}
    config = {
        "upstream": {"timeouts": {"first_byte": "30s", "total": "60s"}},
        "models": [
            {"name": "stalls", "retries": 0, "deployments": [stalling]},
            {"name": "stalled-then-served", "strategy": "priority", "retries": 0,
             "deployments": [stalling, {**base, "id": "served"}]},
            {"name": "hurried-then-served", "strategy": "priority", "retries": 0,
             "latency_threshold": "500ms", "deployments": [slow, {**base, "id": "answers"}]},
            {"name": "overdue", "retries": 0, "deadline": "500ms", "deployments": [slow]},
        ],
        "limits": {"spend_flush_interval": "200ms"},
        "telemetry": {"request_log": {"flush_interval": "100ms"}},
    }  # fmt: skip
    with running_gateway(log_dir, config, {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}) as (url, _):
        yield url


def _charged(url: str, key_id: str, micros: int) -> None:
    """The key's budget was charged ``micros`` and holds no reservation."""
    deadline = time.monotonic() + 10
    while True:
        (row,) = admin_request(url, "GET", f"/admin/budgets?scope=key&scope_id={key_id}")["data"]
        spent = round(row["spent_usd"] * 1e6)
        if spent == micros or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert (row["reserved_usd"], spent) == (0, micros)


def _counted() -> int:
    """The prompt's tokens as the gateway counts them."""
    request = ChatRequest(model="stalls", messages=[Message("user", PROMPT)])
    return TokenCounter().chat(request, "openai", "sim-chat")


def _client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=30)


@pytest.mark.parametrize("model", ["stalls", "overdue"], ids=["first-byte", "deadline"])
def test_a_call_a_time_limit_cut_after_sending_is_charged_its_prompt(
    gateway: str, model: str
) -> None:
    # Charged nothing, a client could have every prompt read for free by asking for answers
    # that take longer than the gateway waits.
    key_id, key = budgeted_key(gateway, "cut")
    request_id = f"t-cut-{uuid.uuid4().hex[:12]}"
    with pytest.raises(openai.APIStatusError) as failed:
        _client(gateway, key).chat.completions.create(
            model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=20,
            extra_headers={"x-request-id": request_id},
        )  # fmt: skip
    assert failed.value.status_code == 504
    prompt = _counted()
    record = logged_row(gateway, request_id, ADMIN)
    assert record["status"] == 504
    assert (record["input_tokens"], record["output_tokens"]) == (prompt, 0)
    assert record["cost_micros"] == prompt * round(PRICE["input"])
    assert record["usage_estimated"] is True
    _charged(gateway, key_id, record["cost_micros"])


@pytest.mark.parametrize("budgeted", [True, False], ids=["budget", "no-limit"])
@pytest.mark.parametrize(
    "model", ["stalled-then-served", "hurried-then-served"], ids=["first-byte", "latency"]
)
def test_a_call_cut_after_sending_then_failed_over_is_charged_with_the_answer(
    gateway: str, model: str, budgeted: bool
) -> None:
    # Without a limit nothing counted the prompt before routing: it is counted off the event
    # loop while the next candidate answers.
    key_id, key = budgeted_key(gateway, "cut") if budgeted else ("", CLIENT_KEY)
    request_id = f"t-cut-over-{uuid.uuid4().hex[:12]}"
    answer = _client(gateway, key).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=20,
        extra_headers={"x-request-id": request_id},
    )  # fmt: skip
    usage = answer.parse().usage
    assert usage is not None
    prompt = _counted()
    record = logged_row(gateway, request_id, ADMIN)
    assert (record["status"], record["attempts"]) == (200, 2)
    # Both attempts read the prompt: the cut one as counted, the served one as it reported.
    assert record["input_tokens"] == prompt + usage.prompt_tokens
    assert record["output_tokens"] == usage.completion_tokens
    expected = (prompt + usage.prompt_tokens) * 1000 + usage.completion_tokens * 4000
    assert record["cost_micros"] == expected
    assert answer.headers["x-tollway-cost-usd"] == f"{expected / 1e6:.10f}".rstrip("0")
    assert record["usage_estimated"] is True
    if budgeted:
        _charged(gateway, key_id, expected)
