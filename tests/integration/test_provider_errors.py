"""Provider errors as clients see them, over real ports with the real SDKs and raw HTTP.

Every provider family's error statuses through every client API; an overload (Anthropic's
529, a 503 from the others) as each SDK knows it; answers a provider ended as unusable
(Gemini's MALFORMED_FUNCTION_CALL, Bedrock's malformed_tool_use). A gateway of its own in
front of the session's simulator, so the health these failures teach it stays here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from tests.conftest import BEDROCK_MODEL, UPSTREAM_KEY
from tests.support import CLIENT_KEY, running_gateway

AUTH = {"Authorization": f"Bearer {CLIENT_KEY}", "anthropic-version": "2023-06-01"}
KEY = "env:TEST_UPSTREAM_KEY"
FAMILIES = ("openai", "azure", "anthropic", "gemini", "bedrock")
DIALECTS = ("chat", "messages", "responses")
PATHS = {"chat": "/v1/chat/completions", "messages": "/v1/messages", "responses": "/v1/responses"}


def deployment(family: str, simulator_url: str, **extra: Any) -> dict[str, Any]:
    """One deployment of ``family`` on the simulator."""
    if family == "openai":
        where = {"provider": "openai", "model": "sim-chat", "api_base": f"{simulator_url}/v1"}
    elif family == "azure":
        where = {"provider": "azure_openai", "model": "sim-chat", "api_base": simulator_url,
                 "azure_deployment": "my-chat", "api_version": "2024-10-21"}  # fmt: skip
    elif family == "bedrock":
        where = {"provider": "bedrock", "model": BEDROCK_MODEL, "region": "us-east-1",
                 "api_base": simulator_url}  # fmt: skip
    else:
        where = {"provider": family, "model": "sim-chat", "api_base": simulator_url}
    return {**where, "api_key": KEY, **extra}


@pytest.fixture(scope="module")
def gateway(log_dir: Path, simulator_url: str) -> Iterator[str]:
    def fails(header: str, value: str, ident: str, family: str) -> dict[str, Any]:
        # A deployment's own headers win over the client's: this one always fails so.
        return deployment(family, simulator_url, id=ident, headers={header: value})

    groups: list[dict[str, Any]] = [
        {"name": f"err-{family}", "deployments": [deployment(family, simulator_url)]}
        for family in FAMILIES
    ]
    groups += [
        {"name": "overloaded-then-ok", "deployments": [
            fails("x-sim-fault", "status:529", "overloaded-primary", "anthropic"),
            deployment("anthropic", simulator_url, id="overloaded-backup")]},
        {"name": "all-overloaded", "deployments": [
            fails("x-sim-fault", "status:529", "overloaded-1", "anthropic"),
            fails("x-sim-fault", "status:503", "overloaded-2", "gemini")]},
        {"name": "malformed-then-ok", "deployments": [
            fails("x-sim-finish-reason", "MALFORMED_FUNCTION_CALL", "malformed-primary", "gemini"),
            deployment("openai", simulator_url, id="malformed-backup")]},
        {"name": "unpaid-then-ok", "deployments": [
            fails("x-sim-fault", "status:402", "unpaid-primary", "gemini"),
            deployment("openai", simulator_url, id="unpaid-backup")]},
        {"name": "unbilled-then-ok", "deployments": [
            deployment("gemini", simulator_url, id="unbilled-primary", headers={
                "x-sim-fault": "status:400", "x-sim-error-type": "FAILED_PRECONDITION"}),
            deployment("openai", simulator_url, id="unbilled-backup")]},
        {"name": "unpaid", "deployments": [
            fails("x-sim-fault", "status:402", "unpaid-only", "gemini")]},
    ]  # fmt: skip
    config = {
        # The groups are shared by tests whose errors ask for a 7 s wait, which would rest
        # their deployments for the next tests (rests are test_routing_chaos.py's).
        "routing": {"retry_after_max": "1ms"},
        "upstream": {
            "timeouts": {"connect": "2s", "first_byte": "5s", "total": "20s"},
            "forward_headers": ["x-sim-*"],
        },
        "models": groups,
    }
    with running_gateway(log_dir, config, {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}) as (url, _):
        yield url


@pytest.fixture(scope="module")
def claude(gateway: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway, api_key=CLIENT_KEY, max_retries=0) as client:
        yield client


@pytest.fixture(scope="module")
def gpt(gateway: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway + "/v1", api_key=CLIENT_KEY, max_retries=0) as client:
        yield client


def body_for(dialect: str, model: str, stream: bool = False) -> dict[str, Any]:
    """The smallest request of ``dialect``."""
    if dialect == "responses":
        body: dict[str, Any] = {"model": model, "input": "hello there"}
    else:
        body = {"model": model, "messages": [{"role": "user", "content": "hello there"}]}
    if dialect == "messages":
        body["max_tokens"] = 32
    return {**body, "stream": True} if stream else body


def ask(
    gateway: str, dialect: str, model: str, headers: dict[str, str], stream: bool = False
) -> httpx.Response:
    return httpx.post(
        gateway + PATHS[dialect],
        json=body_for(dialect, model, stream),
        headers={**AUTH, **headers},
        timeout=30,
    )


def error_of(dialect: str, response: httpx.Response) -> dict[str, Any]:
    """The error object of a JSON error answer, checked to be in the dialect's shape."""
    payload = response.json()
    if dialect == "messages":
        assert payload["type"] == "error" and set(payload["error"]) == {"type", "message"}
        assert payload["request_id"] == response.headers["request-id"]
    else:
        assert set(payload) == {"error"}
        assert set(payload["error"]) == {"message", "type", "param", "code"}
    return dict(payload["error"])


# --- the matrix: every family's error statuses through every client API -----------------------

STATUSES = (400, 404, 413, 422, 429, 500, 503)
UPSTREAM_KINDS = {
    "openai": {500: "server_error", 503: "server_error"},
    "anthropic": {500: "api_error", 503: "api_error"},
    "gemini": {500: "INTERNAL", 503: "UNAVAILABLE"},
    "bedrock": {500: "InternalServerException", 503: "ServiceUnavailableException"},
}
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    404: "not_found_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
}
OPENAI_TYPES = {
    400: "invalid_request_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "upstream_error",
    503: "service_unavailable_error",
}


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("family", FAMILIES)
def test_an_upstream_error_reaches_each_client_api_with_its_status_type_and_words(
    gateway: str, family: str, dialect: str, status: int
) -> None:
    headers = {"x-sim-fault": f"status:{status}", "x-sim-retry-after": "7"}
    response = ask(gateway, dialect, f"err-{family}", headers)
    error = error_of(dialect, response)
    if status == 503:  # an overload: each API's own status for it
        assert response.status_code == (529 if dialect == "messages" else 503)
    else:
        assert response.status_code == (502 if status >= 500 else status)
    if dialect == "messages":
        assert error["type"] == ANTHROPIC_TYPES[status]
    elif family == "openai" and status == 429:
        assert error["type"] == "requests"  # an OpenAI-format upstream's own type, passed on
    else:
        assert error["type"] == OPENAI_TYPES[status]
    if dialect != "messages" and status in (429, 503):
        codes = {429: "rate_limit_exceeded", 503: "server_is_overloaded"}
        assert error["code"] == codes[status]
    message = error["message"]
    assert "(simulated fault)" in message  # the provider's own words
    if status >= 500:  # the gateway's failure to answer: which deployment, what it said
        group = f"err-{family}"
        assert message.startswith(f"deployment '{group}#0' (model group '{group}'): ")
        kind = UPSTREAM_KINDS.get(family, {}).get(status)  # the provider's name for it
        assert f"upstream answered {status}{f' {kind}' if kind else ''}: " in message
    else:
        assert not message.startswith("deployment")
    if status in (429, 503):  # Gemini says it in its body (RetryInfo): a header all the same
        assert response.headers["retry-after"] == "7"


# --- overloads ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "fault"),
    [("err-anthropic", "status:529"), ("err-gemini", "status:503"),
     ("err-bedrock", "status:503"), ("err-openai", "status:503")],
)  # fmt: skip
def test_an_overload_is_anthropics_overloaded_error_to_anthropic_clients(
    claude: anthropic.Anthropic, model: str, fault: str
) -> None:
    headers = {"x-sim-fault": fault}
    with pytest.raises(anthropic.OverloadedError) as caught:
        claude.messages.create(
            model=model, max_tokens=16, messages=[{"role": "user", "content": "hi"}],
            extra_headers=headers,
        )  # fmt: skip
    assert caught.value.status_code == 529
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "overloaded_error"
    stream = claude.messages.stream(
        model=model, max_tokens=16, messages=[{"role": "user", "content": "hi"}],
        extra_headers=headers,
    )  # fmt: skip
    with pytest.raises(anthropic.OverloadedError), stream:  # fails before its first byte
        pass


@pytest.mark.parametrize("fault", ["status:529", "status:503"])
def test_an_overload_is_openais_503_to_openai_clients(gpt: openai.OpenAI, fault: str) -> None:
    headers = {"x-sim-fault": fault}
    with pytest.raises(openai.InternalServerError) as caught:
        gpt.chat.completions.create(
            model="err-anthropic", messages=[{"role": "user", "content": "hi"}],
            extra_headers=headers,
        )  # fmt: skip
    assert caught.value.status_code == 503
    assert (caught.value.type, caught.value.code) == (
        "service_unavailable_error", "server_is_overloaded"
    )  # fmt: skip
    assert "upstream answered" in caught.value.message
    with pytest.raises(openai.InternalServerError) as responses:
        gpt.responses.create(model="err-anthropic", input="hi", extra_headers=headers)
    assert (responses.value.status_code, responses.value.code) == (503, "server_is_overloaded")


def test_an_overloaded_deployment_fails_over_and_counts_as_its_failure(
    claude: anthropic.Anthropic, gateway: str
) -> None:
    raw = claude.messages.with_raw_response.create(
        model="overloaded-then-ok", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.parse().stop_reason in ("end_turn", "max_tokens")
    assert raw.headers["x-tollway-deployment"] == "overloaded-backup"
    assert raw.headers["x-tollway-fallbacks"] == "1"
    rows = httpx.get(gateway + "/admin/deployments", headers=AUTH).json()["data"]
    primary = next(row for row in rows if row["id"] == "overloaded-primary")
    assert primary["failures"] >= 1 and primary["last_error"] == "overloaded_error"


def test_every_candidate_overloaded_is_an_overload(
    claude: anthropic.Anthropic, gpt: openai.OpenAI
) -> None:
    messages: Any = [{"role": "user", "content": "hi"}]
    with pytest.raises(anthropic.OverloadedError):
        claude.messages.create(model="all-overloaded", max_tokens=16, messages=messages)
    with pytest.raises(openai.InternalServerError) as caught:
        gpt.chat.completions.create(model="all-overloaded", messages=messages)
    assert (caught.value.status_code, caught.value.code) == (503, "server_is_overloaded")


# --- answers a provider ended as unusable ------------------------------------------------------

UNUSABLE = [
    ("err-gemini", "MALFORMED_FUNCTION_CALL"),
    ("err-gemini", "UNEXPECTED_TOOL_CALL"),
    ("err-gemini", "TOO_MANY_TOOL_CALLS"),
    ("err-bedrock", "malformed_tool_use"),
    ("err-bedrock", "malformed_model_output"),
]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("model", "reason"), UNUSABLE)
def test_an_answer_ended_as_unusable_is_a_502_naming_the_providers_reason(
    gateway: str, model: str, reason: str, dialect: str
) -> None:
    # Gemini's used to be an empty answer with finish_reason "stop", Bedrock's "error" (no
    # OpenAI finish reason) or Anthropic's end_turn: each read as a finished answer.
    response = ask(gateway, dialect, model, {"x-sim-finish-reason": reason})
    assert response.status_code == 502
    error = error_of(dialect, response)
    assert error["type"] == ("api_error" if dialect == "messages" else "upstream_error")
    if dialect != "messages":
        assert error["code"] == "invalid_model_output"
    assert f"ended it with {reason}" in error["message"]
    assert error["message"].startswith(f"deployment '{model}#0' (model group '{model}'): ")


def sse_events(response: httpx.Response) -> list[tuple[str | None, Any]]:
    """(event name, parsed data) of each server-sent event."""
    events = []
    for block in response.text.strip().split("\n\n"):
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        if data:
            joined = "\n".join(data)
            events.append((name, joined if joined == "[DONE]" else orjson.loads(joined)))
    return events


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("model", "reason"), [UNUSABLE[0], UNUSABLE[3]])
def test_a_stream_ended_as_unusable_fails_as_the_client_api_reports_failures(
    gateway: str, model: str, reason: str, dialect: str
) -> None:
    response = ask(gateway, dialect, model, {"x-sim-finish-reason": reason}, stream=True)
    if model == "err-gemini":
        # Gemini sends it as the stream's only event: a failure before the first byte, an
        # ordinary error answer (and another candidate's turn, had there been one).
        assert response.status_code == 502
        assert f"ended it with {reason}" in error_of(dialect, response)["message"]
        return
    # Bedrock's messageStop comes after the answer began: the API's error event ends it.
    assert response.status_code == 200
    events = sse_events(response)
    if dialect == "chat":
        assert events[-1][1]["error"]["code"] == "invalid_model_output"
        assert all(data != "[DONE]" for _, data in events)
        failure = events[-1][1]["error"]["message"]
    elif dialect == "messages":
        name, data = events[-1]
        assert (name, data["type"], data["error"]["type"]) == ("error", "error", "api_error")
        assert all(name != "message_stop" for name, _ in events)
        failure = data["error"]["message"]
    else:
        error = next(data for name, data in events if name == "error")
        assert error["code"] == "invalid_model_output"
        assert events[-1][0] == "response.failed"
        failure = error["message"]
    assert f"ended it with {reason}" in failure


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_ended_as_unusable_fails_over(gpt: openai.OpenAI, stream: bool) -> None:
    messages: Any = [{"role": "user", "content": "hello there"}]
    if stream:
        chunks = list(
            gpt.chat.completions.create(model="malformed-then-ok", messages=messages, stream=True)
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert "hello there" in text
        return
    raw = gpt.chat.completions.with_raw_response.create(
        model="malformed-then-ok", messages=messages
    )
    answer = raw.parse()
    assert answer.choices[0].finish_reason == "stop"
    assert "hello there" in (answer.choices[0].message.content or "")
    assert raw.headers["x-tollway-deployment"] == "malformed-backup"
    assert raw.headers["x-tollway-fallbacks"] == "1"


# --- the deployment's account, not the client's request -----------------------------------------


@pytest.mark.parametrize("model", ["unpaid-then-ok", "unbilled-then-ok"])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_deployment_whose_account_cannot_pay_fails_over(
    gateway: str, dialect: str, model: str
) -> None:
    # Gemini answers a depleted prepay balance with 402 RESOURCE_EXHAUSTED, and a project
    # whose free tier is unavailable without billing with 400 FAILED_PRECONDITION: both were
    # passed to the client as its own error (a 402, a 400 invalid_request_error) and never
    # tried on the group's other deployment, though the client's request was fine.
    response = ask(gateway, dialect, model, {})
    assert response.status_code == 200, response.text
    assert response.headers["x-tollway-deployment"] == model.replace("-then-ok", "-backup")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_deployment_that_cannot_pay_is_the_gateways_502_not_the_clients_402(
    gateway: str, dialect: str
) -> None:
    response = ask(gateway, dialect, "unpaid", {})
    error = error_of(dialect, response)
    assert response.status_code == 502
    assert "the client's own key was accepted" in error["message"]
    if dialect != "messages":
        assert error["code"] == "upstream_payment_required"
    else:
        assert error["type"] == "api_error"
