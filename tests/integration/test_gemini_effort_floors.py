"""An OpenAI client's ``reasoning_effort`` on Gemini models that take only part of the range:
``minimal`` is the smallest budget the model thinks within (Gemini 2.5 Pro and Flash 128, Flash-
Lite 512) or the least level it takes (Gemini 3 Pro has no ``MINIMAL``), and ``none`` on a
model that cannot stop thinking (2.5 Pro) its smallest budget. The simulator refuses a budget
outside a model's range and a level the model lacks, as Gemini does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.integration.sdk import sent_upstream
from tests.support import CLIENT_KEY, running_gateway

MODELS = ("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-3-pro-preview",
          "gemini-3-flash-preview")  # fmt: skip


@pytest.fixture(scope="module")
def gpt(log_dir: Path, simulator_url: str) -> Iterator[openai.OpenAI]:
    config = {
        "models": [
            {"name": model, "deployments": [{"provider": "gemini", "model": model,
             "api_base": simulator_url, "api_key": "env:TEST_UPSTREAM_KEY"}]}
            for model in MODELS
        ]
    }  # fmt: skip
    with running_gateway(log_dir, config, {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}) as (url, _):
        yield openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)


@pytest.mark.parametrize(
    ("model", "effort", "thinking"),
    [("gemini-2.5-pro", "minimal", {"thinkingBudget": 128}),
     ("gemini-2.5-pro", "none", {"thinkingBudget": 128}),
     ("gemini-2.5-flash", "minimal", {"thinkingBudget": 128}),
     ("gemini-2.5-flash", "none", {"thinkingBudget": 0}),
     ("gemini-2.5-flash-lite", "minimal", {"thinkingBudget": 512}),
     ("gemini-2.5-flash-lite", "none", {"thinkingBudget": 0}),
     ("gemini-3-pro-preview", "minimal", {"thinkingLevel": "LOW"}),
     ("gemini-3-flash-preview", "minimal", {"thinkingLevel": "MINIMAL"})],
)  # fmt: skip
def test_an_effort_is_what_the_model_takes(
    gpt: openai.OpenAI, simulator_url: str, model: str, effort: str, thinking: dict[str, object]
) -> None:
    # minimal was the gateway's 400 on Gemini 2.5, none Gemini 2.5 Pro's, MINIMAL Gemini 3 Pro's.
    marker = f"effort floor {model} {effort}"
    completion = gpt.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": marker}],
        reasoning_effort=effort,  # type: ignore[arg-type]
    )
    assert completion.choices[0].message.content
    assert sent_upstream(simulator_url, marker)["generationConfig"]["thinkingConfig"] == thinking


def test_responses_minimal_effort_is_the_smallest_budget(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    response = gpt.responses.create(
        model="gemini-2.5-flash-lite",
        input="responses effort floor",
        reasoning={"effort": "minimal"},
    )
    assert response.output_text
    body = sent_upstream(simulator_url, "responses effort floor")
    assert body["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 512}
