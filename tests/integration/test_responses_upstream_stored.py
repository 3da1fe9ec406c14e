"""What lives on OpenAI's platform, not in the request (files by ``file_id`` or ``file_url``,
stored prompt templates), through the real ``openai`` SDK against a gateway process and the
simulator: a deployment that speaks the Responses API is sent it as the client sent it, and a
model without one refuses it naming the client's field, never a 400 for every model alike."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.integration.test_responses_upstream import question, received, upstream_config
from tests.support import CLIENT_KEY, running_gateway


@pytest.fixture(scope="module")
def client(log_dir: Path, simulator_url: str) -> Iterator[openai.OpenAI]:
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    with (
        running_gateway(log_dir, upstream_config(simulator_url), env) as (url, _),
        openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0) as c,
    ):
        yield c


def stored_parts(asked: str) -> list[Any]:
    """A question with an image and two files that only OpenAI's storage (or a URL) holds."""
    return [
        {"type": "input_text", "text": asked},
        {"type": "input_image", "file_id": "file-img123", "detail": "high"},
        {"type": "input_file", "file_id": "file-pdf123"},
        {"type": "input_file", "file_url": "https://example.com/report.pdf"},
    ]


def test_files_stored_on_openai_reach_a_responses_upstream_as_sent(
    client: openai.OpenAI, simulator_url: str
) -> None:
    asked = question("summarise the attachments")
    content = stored_parts(asked)
    response = client.responses.create(
        model="native-4o", input=[{"role": "user", "content": content}]
    )
    assert response.status == "completed" and asked in response.output_text
    (call,) = received(simulator_url, asked)
    assert call["json"]["input"] == [{"role": "user", "content": content}]


def test_a_tool_result_with_a_stored_image_reaches_a_responses_upstream(
    client: openai.OpenAI, simulator_url: str
) -> None:
    asked = question("describe the screenshot")
    output = [{"type": "input_image", "file_id": "file-shot1"}]
    items: Any = [
        {"role": "user", "content": asked},
        {"type": "function_call", "call_id": "c1", "name": "shot", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": output},
    ]
    response = client.responses.create(model="native-4o", input=items)
    assert response.status == "completed"
    (call,) = received(simulator_url, asked)
    assert call["json"]["input"][2]["output"] == output


@pytest.mark.parametrize(
    ("index", "param"),
    [
        (1, "input[0].content[1].file_id"),
        (2, "input[0].content[1]"),
        (3, "input[0].content[1]"),
    ],
)
def test_a_stored_file_is_refused_by_name_where_no_deployment_speaks_responses(
    client: openai.OpenAI, index: int, param: str
) -> None:
    content = [stored_parts("read this")[0], stored_parts("x")[index]]  # the part as [1]
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="compatible", input=[{"role": "user", "content": content}])
    body: Any = caught.value.body
    assert body["param"] == param
    assert "responses_api" in body["message"]


def test_a_stored_prompt_template_reaches_a_responses_upstream(
    client: openai.OpenAI, simulator_url: str
) -> None:
    asked = question("fill in the template")
    prompt: Any = {"id": "pmpt_abc123", "version": "2", "variables": {"city": "Paris"}}
    response = client.responses.create(model="native-4o", prompt=prompt, input=asked)
    assert response.status == "completed"
    (call,) = received(simulator_url, asked)
    assert call["json"]["prompt"] == prompt


def test_a_prompt_template_needs_no_input(client: openai.OpenAI, simulator_url: str) -> None:
    marker = question("pmpt")
    prompt: Any = {"id": marker.replace(" ", "_")}
    response = client.responses.create(model="native-4o", prompt=prompt)
    assert response.status == "completed"
    (call,) = received(simulator_url, prompt["id"])
    assert call["json"]["prompt"] == prompt and "input" not in call["json"]


def test_a_prompt_template_is_refused_by_name_where_no_deployment_speaks_responses(
    client: openai.OpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="compatible", prompt={"id": "pmpt_1"}, input="hi")
    body: Any = caught.value.body
    assert body["param"] == "prompt" and "responses_api" in body["message"]
