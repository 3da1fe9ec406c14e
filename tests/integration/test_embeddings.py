"""``POST /v1/embeddings`` against what OpenAI's API does, through a gateway process, with the
real ``openai`` SDK: the inputs OpenAI refuses are refused before any provider is called, in
OpenAI's words, for every family."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from aiohttp import web

from tests.conftest import UPSTREAM_KEY
from tests.support import CLIENT_KEY, free_port, running_gateway

FAMILIES = pytest.mark.parametrize("model", ["test-embed", "test-gemini-embed"])


def _sent(simulator_url: str, marker: str) -> list[dict[str, Any]]:
    """The requests the simulator received whose body mentions ``marker``."""
    recorded = httpx.get(simulator_url + "/_sim/requests").json()
    return [request for request in recorded if marker in json.dumps(request["json"])]


@FAMILIES
@pytest.mark.parametrize("empty", ["", ["a text", ""], [[1, 2], []]], ids=["str", "list", "ids"])
def test_an_empty_input_is_openais_400(
    gpt: openai.OpenAI, simulator_url: str, model: str, empty: Any
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.embeddings.create(model=model, input=empty, user=f"empty-{model}")
    assert caught.value.status_code == 400
    assert caught.value.param == "input"
    assert "'$.input' is invalid" in caught.value.message
    assert not _sent(simulator_url, f"empty-{model}")


@FAMILIES
def test_a_boolean_is_no_token_id(gpt: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.embeddings.create(model=model, input=[[1, 2], [True, 3]])  # type: ignore[list-item]
    assert caught.value.param == "input"


@FAMILIES
def test_more_than_2048_inputs_is_openais_400_before_any_call(
    gpt: openai.OpenAI, simulator_url: str, model: str
) -> None:
    marker = f"too many for {model}"
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.embeddings.create(model=model, input=[marker] * 2049)
    assert caught.value.param == "input"
    assert "2048" in caught.value.message
    assert not _sent(simulator_url, marker)
    answer = gpt.embeddings.create(model=model, input=[marker] * 2048, encoding_format="float")
    assert len(answer.data) == 2048
