"""What Anthropic's API refuses, refused the same for an Anthropic client whichever family
serves: an ``anthropic`` SDK against the session's gateway and the simulator, on an Anthropic
deployment and on deployments of the families that would otherwise take it (OpenAI, Gemini)."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from tests.integration.sdk import user
from tests.support import CLIENT_KEY

EVERY_FAMILY = pytest.mark.parametrize(
    "model", ["test-claude", "test-chat", "test-gemini", "test-bedrock"]
)


@pytest.fixture(scope="module")
def claude(gateway_url: str) -> anthropic.Anthropic:
    """An Anthropic SDK client whose only change is the base URL."""
    return anthropic.Anthropic(base_url=gateway_url, api_key=CLIENT_KEY, max_retries=0)


def refusal(claude: anthropic.Anthropic, **fields: Any) -> dict[str, Any]:
    """The error object of the 400 a Messages request of ``fields`` is answered with."""
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(**fields)
    body: Any = caught.value.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert caught.value.response.headers["request-id"] == body["request_id"]
    return dict(body["error"])


@EVERY_FAMILY
@pytest.mark.parametrize(
    "thinking",
    [{"type": "enabled", "budget_tokens": 500}, {"type": "enabled"}, {"type": "on"}],
    ids=["below-1024", "no-budget", "unknown-type"],
)
def test_a_thinking_claude_refuses_is_a_400_naming_thinking(
    claude: anthropic.Anthropic, model: str, thinking: Any
) -> None:
    error = refusal(
        claude, model=model, max_tokens=4000, messages=user("think badly"), thinking=thinking
    )
    assert "thinking" in error["message"]


@pytest.mark.parametrize("model", ["test-chat", "test-gemini"])
def test_a_thinking_budget_not_below_max_tokens_is_a_400_for_other_families(
    claude: anthropic.Anthropic, model: str
) -> None:
    # Claude thinks within max_tokens: a budget of all of it leaves no answer, and Anthropic's
    # API refuses it; another family would take it and answer otherwise than Claude's would.
    thinking: Any = {"type": "enabled", "budget_tokens": 2000}
    error = refusal(
        claude, model=model, max_tokens=2000, messages=user("think long"), thinking=thinking
    )
    assert "max_tokens" in error["message"] and "budget_tokens" in error["message"]


@EVERY_FAMILY
def test_a_valid_thinking_still_passes(claude: anthropic.Anthropic, model: str) -> None:
    message = claude.messages.create(
        model=model,
        max_tokens=4000,
        messages=user("think well"),
        thinking={"type": "enabled", "budget_tokens": 1024},
    )
    assert message.content


def test_count_tokens_refuses_a_thinking_claude_refuses(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="budget_tokens"):
        claude.messages.count_tokens(
            model="test-gemini",
            messages=user("count badly"),
            thinking={"type": "enabled", "budget_tokens": 10},
        )


BMP = "Qk0eAAAAAAAAABoAAAAMAAAAAQABAAEAGAAAAP8A"


@EVERY_FAMILY
@pytest.mark.parametrize("media_type", ["image/bmp", "image/jpg", "image/svg+xml"])
def test_an_image_type_claude_does_not_take_is_a_400_naming_its_media_type(
    claude: anthropic.Anthropic, model: str, media_type: str
) -> None:
    image: Any = {"type": "image",
                  "source": {"type": "base64", "media_type": media_type, "data": BMP}}  # fmt: skip
    messages: Any = [{"role": "user", "content": [{"type": "text", "text": "see"}, image]}]
    error = refusal(claude, model=model, max_tokens=50, messages=messages)
    assert "messages[0].content[1].source.media_type" in error["message"]
    assert "image/png" in error["message"] and media_type in error["message"]


@EVERY_FAMILY
def test_a_stop_sequence_of_only_whitespace_is_a_400_naming_it(
    claude: anthropic.Anthropic, model: str
) -> None:
    error = refusal(
        claude, model=model, max_tokens=50, messages=user("stop at newline"),
        stop_sequences=["END", "\n"],
    )  # fmt: skip
    assert "stop_sequences[1]" in error["message"] and "whitespace" in error["message"]
