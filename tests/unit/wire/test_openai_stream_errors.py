"""An OpenAI-format stream's error event, classified by what it says, in each server's shape."""

from __future__ import annotations

from typing import Any

import pytest

from tollway.wire.openai_stream_errors import is_error_event, stream_error

# (event, the status it stands for, Anthropic's type, OpenAI's type and code for it)
CASES: dict[str, tuple[dict[str, Any], int, str, str, str | None]] = {
    "openai overloaded": (
        {"error": {"message": "Our servers are currently overloaded.",
                   "type": "service_unavailable_error", "param": None,
                   "code": "server_is_overloaded"}},
        503, "overloaded_error", "service_unavailable_error", "server_is_overloaded",
    ),
    "openai overloaded as a server error": (
        {"error": {"message": "m", "type": "server_error", "code": "server_is_overloaded"}},
        503, "overloaded_error", "server_error", "server_is_overloaded",
    ),
    "openai rate limit": (
        {"error": {"message": "m", "type": "requests", "param": None,
                   "code": "rate_limit_exceeded"}},
        429, "rate_limit_error", "requests", "rate_limit_exceeded",
    ),
    "openai tokens per minute": (
        {"error": {"message": "m", "type": "tokens", "code": None}},
        429, "rate_limit_error", "tokens", "rate_limit_exceeded",
    ),
    "openai quota": (
        {"error": {"message": "m", "type": "insufficient_quota", "code": "insufficient_quota"}},
        429, "rate_limit_error", "insufficient_quota", "insufficient_quota",
    ),
    "openai server error": (
        {"error": {"message": "m", "type": "server_error", "param": None, "code": None}},
        500, "api_error", "server_error", None,
    ),
    "openai context length": (
        {"error": {"message": "m", "type": "invalid_request_error", "param": "messages",
                   "code": "context_length_exceeded"}},
        400, "invalid_request_error", "invalid_request_error", "context_length_exceeded",
    ),
    "anthropic's words through a compatible proxy": (
        {"error": {"message": "Overloaded", "type": "overloaded_error"}},
        503, "overloaded_error", "overloaded_error", "server_is_overloaded",
    ),
    "vllm unavailable": (
        {"error": {"message": "m", "type": "ServiceUnavailableError", "param": None,
                   "code": 503}},
        503, "overloaded_error", "service_unavailable_error", "server_is_overloaded",
    ),
    "vllm bad request": (
        {"error": {"message": "m", "type": "BadRequestError", "param": None, "code": 400}},
        400, "invalid_request_error", "invalid_request_error", None,
    ),
    "vllm internal error": (
        {"error": {"message": "m", "type": "InternalServerError", "code": 500}},
        500, "api_error", "upstream_error", None,
    ),
    "older vllm, the error object alone": (
        {"object": "error", "message": "m", "type": "BadRequestError", "code": 400},
        400, "invalid_request_error", "invalid_request_error", None,
    ),
    "openrouter rate limit in a chunk": (
        {"id": "gen-1", "object": "chat.completion.chunk", "provider": "Upstream",
         "error": {"code": 429, "message": "Rate limit exceeded"},
         "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]},
        429, "rate_limit_error", "rate_limit_error", "rate_limit_exceeded",
    ),
    "openrouter provider disconnected": (
        {"error": {"code": "server_error", "message": "Provider disconnected unexpectedly"},
         "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]},
        500, "api_error", "upstream_error", "server_error",
    ),
    "groq tool use failed": (
        {"error": {"message": "m", "type": "invalid_request_error", "code": "tool_use_failed",
                   "status_code": 400}},
        400, "invalid_request_error", "invalid_request_error", "tool_use_failed",
    ),
    "tgi overloaded, as words": (
        {"error": "Model is overloaded", "error_type": "overloaded"},
        503, "overloaded_error", "service_unavailable_error", "server_is_overloaded",
    ),
    "tgi validation, as words": (
        {"error": "Input validation error", "error_type": "validation"},
        400, "invalid_request_error", "invalid_request_error", None,
    ),
    "tgi with its status": (
        {"error": {"message": "Model is overloaded", "http_status_code": 429}},
        429, "rate_limit_error", "rate_limit_error", "rate_limit_exceeded",
    ),
    "azure, the status as a code": (
        {"error": {"code": "503", "message": "Service Unavailable"}},
        503, "overloaded_error", "service_unavailable_error", "server_is_overloaded",
    ),
    "litellm, the status as a code": (
        {"error": {"message": "m", "type": "None", "param": "None", "code": "429"}},
        429, "rate_limit_error", "rate_limit_error", "rate_limit_exceeded",
    ),
    "nothing said but words": (
        {"error": {"message": "something broke"}},
        500, "api_error", "upstream_error", None,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_an_error_event_is_classified_by_what_it_says(case: str) -> None:
    event, status, anthropic_type, openai_type, code = CASES[case]
    assert is_error_event(event)
    error = stream_error(event)
    assert error.upstream_status == status
    assert error.anthropic_type == anthropic_type
    assert (error.openai_type, error.code) == (openai_type, code)
    assert error.message.startswith("upstream stream failed: ")


@pytest.mark.parametrize(
    ("status", "anthropic_status", "client_status"),
    [(503, 529, 503), (429, None, 429), (400, None, 400), (500, None, 502)],
)
def test_an_error_events_status_is_each_apis_own(
    status: int, anthropic_status: int | None, client_status: int
) -> None:
    error = stream_error({"error": {"message": "m", "code": status}})
    assert (error.status, error.anthropic_status) == (client_status, anthropic_status)


@pytest.mark.parametrize("case", list(CASES))
def test_an_error_event_before_content_is_always_worth_another_candidate(case: str) -> None:
    # The upstream had accepted the request: even a refusal is about this attempt.
    assert stream_error(CASES[case][0]).retryable


def test_an_error_events_words_and_param_are_kept() -> None:
    error = stream_error(CASES["openai context length"][0])
    assert (error.message, error.param, error.kind) == (
        "upstream stream failed: m",
        "messages",
        "context_length_exceeded",
    )
    assert stream_error(CASES["tgi overloaded, as words"][0]).kind == "overloaded"


@pytest.mark.parametrize(
    "event",
    [
        {"id": "c", "choices": [{"index": 0, "delta": {"content": "hi"}}]},
        {"id": "c", "error": None, "choices": []},  # an empty field is no error
        {"id": "c", "error": {}, "choices": []},
    ],
)
def test_an_ordinary_chunk_is_no_error_event(event: dict[str, Any]) -> None:
    assert not is_error_event(event)
