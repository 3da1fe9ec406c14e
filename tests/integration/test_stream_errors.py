"""Upstream failures in the middle of a stream as each client's SDK sees them.

Every provider family on the simulator, failing after some content (its own overload error
event, a cut connection, a silence), through the real ``openai`` SDK (Chat Completions and
Responses) and the real ``anthropic`` SDK: what each raises or sees, and that every stream
ends, never hangs. Then the error events OpenAI-format servers send (OpenAI's own, vLLM's,
OpenRouter's, Groq's, TGI's), classified by what they say: before the first content a failed
attempt like any other, after it the client API's own error event.

Each case has a model group of its own, so one case's failures never open another's circuit
or set its deployment aside.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest

from tests.conftest import BEDROCK_MODEL, UPSTREAM_KEY
from tests.support import CLIENT_KEY, running_gateway

FAMILIES = ("openai", "azure", "mistral", "anthropic", "gemini", "bedrock")
FAULTS = {"overloaded": "error-after:2", "cut": "stop-after:2", "silent": "hang-after:2"}
CLIENTS = ("chat", "messages", "responses")
HI: Any = [{"role": "user", "content": "hello there"}]
SILENCE = 1.0
"""The gateway's ``first_byte`` limit, which also bounds a silence between two events."""

# Error events of OpenAI-format servers (each the whole ``data:`` event).
SHAPES: dict[str, Any] = {
    # OpenAI's own words for an overload (the simulator's default event), and for others.
    "openai-overloaded": None,
    "openai-rate-limit": {"error": {"message": "Rate limit reached for requests",
                                    "type": "requests", "param": None,
                                    "code": "rate_limit_exceeded"}},
    "openai-server-error": {"error": {"message": "The server had an error while processing "
                                      "your request. Sorry about that!", "type": "server_error",
                                      "param": None, "code": None}},
    # vLLM: its exception's class name, and the HTTP status as the code.
    "vllm-unavailable": {"error": {"message": "The engine is overloaded",
                                   "type": "ServiceUnavailableError", "param": None,
                                   "code": 503}},
    # OpenRouter: the status as the code, in a chunk that also ends its choice with "error".
    "openrouter-rate-limit": {"id": "gen-1", "object": "chat.completion.chunk", "created": 1,
                              "model": "sim-chat", "provider": "Upstream",
                              "error": {"code": 429, "message": "Rate limit exceeded"},
                              "choices": [{"index": 0, "delta": {"content": ""},
                                           "finish_reason": "error"}]},
    # Groq: OpenAI's words, and the status beside them.
    "groq-tool-use-failed": {"error": {"message": "Failed to call a function.",
                                       "type": "invalid_request_error",
                                       "code": "tool_use_failed", "status_code": 400}},
    # Text Generation Inference: the error as words, its kind beside it.
    "tgi-overloaded": {"error": "Model is overloaded", "error_type": "overloaded"},
}  # fmt: skip
# What each shape is to an Anthropic client, and its type and code to an OpenAI client.
ANTHROPIC_TYPES = {
    "openai-overloaded": "overloaded_error",
    "openai-rate-limit": "rate_limit_error",
    "openai-server-error": "api_error",
    "vllm-unavailable": "overloaded_error",
    "openrouter-rate-limit": "rate_limit_error",
    "groq-tool-use-failed": "invalid_request_error",
    "tgi-overloaded": "overloaded_error",
}
OPENAI_ERRORS = {
    "openai-overloaded": ("service_unavailable_error", "server_is_overloaded"),
    "openai-rate-limit": ("requests", "rate_limit_exceeded"),
    "openai-server-error": ("server_error", None),
    "vllm-unavailable": ("service_unavailable_error", "server_is_overloaded"),
    "openrouter-rate-limit": ("rate_limit_error", "rate_limit_exceeded"),
    "groq-tool-use-failed": ("invalid_request_error", "tool_use_failed"),
    "tgi-overloaded": ("service_unavailable_error", "server_is_overloaded"),
}
KEY = "env:TEST_UPSTREAM_KEY"
# Bedrock refusing the request after its answer began (a model's own check of the input).
REFUSED_MID_STREAM = orjson.dumps(
    {"exception": "validationException", "message": "The model refused the input"}
).decode()


def deployment(family: str, simulator_url: str, headers: dict[str, str]) -> dict[str, Any]:
    """One deployment of ``family`` on the simulator, failing as ``headers`` ask."""
    if family == "openai":
        where = {"provider": "openai", "model": "sim-chat", "api_base": f"{simulator_url}/v1"}
    elif family == "mistral":
        where = {"provider": "mistral", "model": "sim-chat",
                 "api_base": f"{simulator_url}/mistral/v1"}  # fmt: skip
    elif family == "azure":
        where = {"provider": "azure_openai", "model": "sim-chat", "api_base": simulator_url,
                 "azure_deployment": "my-chat", "api_version": "2024-10-21"}  # fmt: skip
    elif family == "bedrock":
        where = {"provider": "bedrock", "model": BEDROCK_MODEL, "region": "us-east-1",
                 "api_base": simulator_url}  # fmt: skip
    else:
        where = {"provider": family, "model": "sim-chat", "api_base": simulator_url}
    return {**where, "api_key": KEY, "headers": headers}


def _group(name: str, family: str, simulator_url: str, headers: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "deployments": [deployment(family, simulator_url, headers)]}


def _shape_headers(shape: str, fault: str) -> dict[str, str]:
    headers = {"x-sim-fault": fault}
    if SHAPES[shape] is not None:
        headers["x-sim-stream-error"] = orjson.dumps(SHAPES[shape]).decode()
    return headers


@pytest.fixture(scope="module")
def gateway(log_dir: Path, simulator_url: str) -> Iterator[str]:
    groups = [
        _group(f"{failure}-{family}-{client}", family, simulator_url, {"x-sim-fault": fault})
        for family in FAMILIES
        for failure, fault in FAULTS.items()
        for client in CLIENTS
    ]
    for shape in SHAPES:
        for client in ("chat", "messages"):
            for when, fault in (("after-content", "error-after:2"), ("first", "error-after:0")):
                headers = _shape_headers(shape, fault)
                groups.append(_group(f"{shape}-{when}-{client}", "openai", simulator_url, headers))
    for client in CLIENTS:
        headers = {"x-sim-fault": "error-after:2", "x-sim-stream-error": REFUSED_MID_STREAM}
        groups.append(_group(f"refused-bedrock-{client}", "bedrock", simulator_url, headers))
    config = {
        "upstream": {"timeouts": {"connect": "2s", "first_byte": f"{SILENCE}s", "total": "20s"}},
        "models": groups,
    }
    with running_gateway(log_dir, config, {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}) as (url, _):
        yield url


@pytest.fixture(scope="module")
def gpt(gateway: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=gateway + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=15
    ) as client:
        yield client


@pytest.fixture(scope="module")
def claude(gateway: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=gateway, api_key=CLIENT_KEY, max_retries=0, timeout=15
    ) as client:
        yield client


def chat_failure(gpt: openai.OpenAI, model: str) -> tuple[str, openai.APIError]:
    """The text a Chat Completions stream gave before it failed, and what the SDK raised."""
    text = ""
    with pytest.raises(openai.APIError) as failed:
        for chunk in gpt.chat.completions.create(
            model=model, messages=HI, stream=True, max_tokens=8
        ):
            text += "".join(choice.delta.content or "" for choice in chunk.choices)
    return text, failed.value


def messages_failure(claude: anthropic.Anthropic, model: str) -> tuple[str, dict[str, Any]]:
    """The text a Messages stream gave before it failed, and the error event's ``error``."""
    text = ""
    with (
        pytest.raises(anthropic.APIStatusError) as failed,
        claude.messages.stream(model=model, messages=HI, max_tokens=8) as stream,
    ):
        for event in stream:
            if event.type == "text":
                text += event.text
    body = failed.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    return text, body["error"]


# --- every family, every client API: a failure after content -----------------------------------

# (OpenAI type, OpenAI code, Anthropic type) each failure reaches clients as.
AFTER_CONTENT = {
    "overloaded": ("service_unavailable_error", "server_is_overloaded", "overloaded_error"),
    "cut": ("upstream_error", None, "api_error"),
    "silent": ("timeout_error", "upstream_first_byte_timeout", "timeout_error"),
}


@pytest.mark.parametrize("failure", list(FAULTS))
@pytest.mark.parametrize("family", FAMILIES)
def test_a_chat_stream_failing_after_content_raises_the_sdks_api_error(
    gpt: openai.OpenAI, family: str, failure: str
) -> None:
    started = time.monotonic()
    text, error = chat_failure(gpt, f"{failure}-{family}-chat")
    assert text.startswith("Simulated reply")  # what came before the failure was relayed
    assert (error.type, error.code) == AFTER_CONTENT[failure][:2]
    assert error.message.startswith(f"deployment '{failure}-{family}-chat#0' ")
    assert time.monotonic() - started < SILENCE + 4  # it ended, not waited on the client's limit


@pytest.mark.parametrize("failure", list(FAULTS))
@pytest.mark.parametrize("family", FAMILIES)
def test_a_messages_stream_failing_after_content_ends_with_anthropics_error_event(
    claude: anthropic.Anthropic, family: str, failure: str
) -> None:
    started = time.monotonic()
    text, error = messages_failure(claude, f"{failure}-{family}-messages")
    assert text.startswith("Simulated reply")
    assert error["type"] == AFTER_CONTENT[failure][2]
    assert error["message"].startswith(f"deployment '{failure}-{family}-messages#0' ")
    assert time.monotonic() - started < SILENCE + 4


@pytest.mark.parametrize("failure", list(FAULTS))
@pytest.mark.parametrize("family", FAMILIES)
def test_a_responses_stream_failing_after_content_ends_with_error_then_response_failed(
    gpt: openai.OpenAI, family: str, failure: str
) -> None:
    started = time.monotonic()
    model = f"{failure}-{family}-responses"
    events = list(gpt.responses.create(model=model, input="hello there", stream=True))
    kinds = [event.type for event in events]
    assert "response.output_text.delta" in kinds
    assert kinds[-2:] == ["error", "response.failed"]
    error = events[-2]
    openai_type, code, _ = AFTER_CONTENT[failure]
    assert error.code == (code or openai_type)  # type: ignore[union-attr]
    assert error.message.startswith(f"deployment '{model}#0' ")  # type: ignore[union-attr]
    failed = events[-1].response  # type: ignore[union-attr]
    assert failed.status == "failed" and failed.error is not None
    assert time.monotonic() - started < SILENCE + 4


# A refusal of the request (Bedrock's validationException) after content is the request's
# fault: each client API's invalid-request error, as the same refusal before any byte would be.


def test_a_chat_stream_refused_after_content_is_an_invalid_request(gpt: openai.OpenAI) -> None:
    text, error = chat_failure(gpt, "refused-bedrock-chat")
    assert text.startswith("Simulated reply")
    assert error.type == "invalid_request_error"
    assert "The model refused the input" in error.message


def test_a_messages_stream_refused_after_content_is_an_invalid_request(
    claude: anthropic.Anthropic,
) -> None:
    text, error = messages_failure(claude, "refused-bedrock-messages")
    assert text.startswith("Simulated reply")
    assert error["type"] == "invalid_request_error"


def test_a_responses_stream_refused_after_content_fails_as_an_invalid_prompt(
    gpt: openai.OpenAI,
) -> None:
    events = list(gpt.responses.create(model="refused-bedrock-responses", input="hi", stream=True))
    assert [event.type for event in events][-2:] == ["error", "response.failed"]
    assert events[-2].code == "invalid_request_error"  # type: ignore[union-attr]
    failed = events[-1].response  # type: ignore[union-attr]
    # ResponseError's codes are OpenAI's own: the request's fault is invalid_prompt.
    assert failed.error is not None and failed.error.code == "invalid_prompt"
    assert "The model refused the input" in failed.error.message


# --- OpenAI-format error events, classified by what they say ------------------------------------


@pytest.mark.parametrize("shape", list(SHAPES))
def test_an_openai_format_error_event_after_content_is_anthropics_error_of_its_kind(
    claude: anthropic.Anthropic, shape: str
) -> None:
    text, error = messages_failure(claude, f"{shape}-after-content-messages")
    assert text.startswith("Simulated reply")
    assert error["type"] == ANTHROPIC_TYPES[shape]
    assert "upstream stream failed: " in error["message"]


@pytest.mark.parametrize("shape", list(SHAPES))
def test_an_openai_format_error_event_after_content_keeps_its_type_and_code(
    gpt: openai.OpenAI, shape: str
) -> None:
    text, error = chat_failure(gpt, f"{shape}-after-content-chat")
    assert text.startswith("Simulated reply")
    assert (error.type, error.code) == OPENAI_ERRORS[shape]
    assert "upstream stream failed: " in error.message


ANTHROPIC_CLASSES = {
    "overloaded_error": (anthropic.OverloadedError, 529),
    "rate_limit_error": (anthropic.RateLimitError, 429),
    "api_error": (anthropic.InternalServerError, 502),
    "invalid_request_error": (anthropic.BadRequestError, 400),
}
OPENAI_STATUSES = {
    "service_unavailable_error": 503,
    "requests": 429,
    "rate_limit_error": 429,
    "server_error": 502,
    "invalid_request_error": 400,
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_an_openai_format_error_event_before_content_is_a_failed_attempt_of_its_kind(
    gpt: openai.OpenAI, claude: anthropic.Anthropic, shape: str
) -> None:
    # Nothing was sent yet: the group's only deployment failed, and its failure is the answer
    # (with another candidate it would have been tried: tests/integration/test_stream_head.py).
    kind = ANTHROPIC_TYPES[shape]
    error_class, status = ANTHROPIC_CLASSES[kind]
    with (
        pytest.raises(error_class) as refused,
        claude.messages.stream(model=f"{shape}-first-messages", messages=HI, max_tokens=8),
    ):
        pass
    assert refused.value.status_code == status
    assert refused.value.body["error"]["type"] == kind  # type: ignore[index]
    with pytest.raises(openai.APIStatusError) as failed:
        gpt.chat.completions.create(model=f"{shape}-first-chat", messages=HI, stream=True)
    openai_type, code = OPENAI_ERRORS[shape]
    assert failed.value.status_code == OPENAI_STATUSES[openai_type]
    assert (failed.value.type, failed.value.code) == (openai_type, code)
