"""A Responses client served by Azure OpenAI's Responses API (``responses_api: true``), through
the real ``openai`` SDK against a gateway process and the simulator: the v1 API
(``/openai/v1/responses``, no api-version) and the dated form (``/openai/responses?api-version=
...``, resource-wide: Azure's Responses API has no deployments path), each with the key in
``api-key`` (never ``Authorization``), the deployment's name as the body's ``model``, and the
answer and events as Azure sent them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.integration.test_responses_upstream import question, received
from tests.support import CLIENT_KEY, running_gateway

DATED = "2025-04-01-preview"


def azure_config(simulator_url: str) -> dict[str, Any]:
    azure = {
        "provider": "azure_openai", "model": "gpt-4o", "api_base": simulator_url,
        "api_key": "env:TEST_UPSTREAM_KEY", "responses_api": True,
    }  # fmt: skip
    return {
        "upstream": {"timeouts": {"connect": "2s", "first_byte": "5s", "total": "20s"}},
        "auth": {"reconcile_interval": "1h"},
        "models": [
            {"name": "azure-v1", "deployments": [
                {**azure, "azure_deployment": "resp-v1", "api_version": "v1"}]},
            {"name": "azure-dated", "deployments": [
                {**azure, "azure_deployment": "resp-dated", "api_version": DATED}]},
        ],
    }  # fmt: skip


@pytest.fixture(scope="module")
def client(log_dir: Path, simulator_url: str) -> Iterator[openai.OpenAI]:
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    with (
        running_gateway(log_dir, azure_config(simulator_url), env) as (url, _),
        openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0) as c,
    ):
        yield c


WHERE = {
    "azure-v1": ("/openai/v1/responses", {}, "resp-v1"),
    "azure-dated": ("/openai/responses", {"api-version": DATED}, "resp-dated"),
}


@pytest.mark.parametrize("model", sorted(WHERE))
def test_an_answer_comes_from_azures_responses_api(
    client: openai.OpenAI, simulator_url: str, model: str
) -> None:
    asked = question(f"azure responses {model}")
    raw = client.responses.with_raw_response.create(model=model, input=asked)
    response = raw.parse()
    assert raw.headers["x-tollway-provider"] == "azure_openai"
    assert response.output_text.startswith(f"Simulated reply to: {asked}")
    assert response.usage is not None and response.usage.output_tokens > 0
    (call,) = received(simulator_url, asked)
    path, query, deployment = WHERE[model]
    assert (call["path"], call["query"]) == (path, query)
    assert call["headers"]["api-key"] == UPSTREAM_KEY
    assert "authorization" not in call["headers"]  # never the client's key, nor a bearer
    assert call["json"] == {"model": deployment, "input": asked}


@pytest.mark.parametrize("model", sorted(WHERE))
def test_a_stream_comes_from_azures_responses_api_event_by_event(
    client: openai.OpenAI, simulator_url: str, model: str
) -> None:
    asked = question(f"azure responses stream {model}")
    events = list(client.responses.create(model=model, input=asked, stream=True))
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text.startswith(f"Simulated reply to: {asked}")
    assert [e.sequence_number for e in events] == list(range(len(events)))  # as Azure sent them
    (call,) = received(simulator_url, asked)
    path, query, deployment = WHERE[model]
    assert (call["path"], call["query"]) == (path, query)
    assert call["headers"]["api-key"] == UPSTREAM_KEY
    assert call["json"]["model"] == deployment and call["json"]["stream"] is True


def test_built_in_tools_are_served_by_azures_responses_api(
    client: openai.OpenAI, simulator_url: str
) -> None:
    # Only a deployment that speaks the Responses API can serve them: Azure's does.
    asked = question("azure search the web")
    response = client.responses.create(
        model="azure-dated", input=asked, tools=[{"type": "web_search"}]
    )
    assert [item.type for item in response.output] == ["web_search_call", "message"]
    (call,) = received(simulator_url, asked)
    assert call["json"]["tools"] == [{"type": "web_search"}]
