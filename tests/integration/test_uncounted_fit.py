"""A part the gateway cannot count before the provider fetches it (a PDF by URL), through the
real SDKs, a gateway process and the simulator: the context-window check counts it at the
least it can cost, so a request that may well fit is sent, not refused as
``context_length_exceeded``; a request whose counted text alone is over the window is still
refused. Under a budget the same part counts at the most it can cost, but what is held for
the input never exceeds the largest context window of the model's deployments.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.support import CLIENT_KEY, running_gateway

WINDOW = 200_000
URL = "https://example.com/tolls.pdf"
# Input $1 per 1M tokens: a URL PDF counted as Anthropic's 600 pages (~2.7M tokens, with the
# estimate margin ~$3.5) is over the budget; the window (200k tokens: $0.25) is not.
PRICE = {"input": 1.0, "output": 1.0}
BUDGET_USD = 1.0


@pytest.fixture(scope="module")
def gateway(log_dir: Path, simulator_url: str) -> Iterator[str]:
    claude = {
        "provider": "anthropic", "model": "sim-chat", "api_base": simulator_url,
        "api_key": "env:TEST_UPSTREAM_KEY", "context_window": WINDOW, "price": PRICE,
    }  # fmt: skip
    config = {
        "upstream": {"timeouts": {"connect": "2s", "first_byte": "5s", "total": "30s"}},
        "models": [{"name": "windowed-claude", "deployments": [claude]}],
    }
    with running_gateway(log_dir, config, {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}) as (url, _):
        yield url


@pytest.fixture(scope="module")
def gateway_url(gateway: str) -> str:
    """This module's gateway, for the ``gpt`` and ``claude`` SDK fixtures (conftest.py's)."""
    return gateway


def prose(characters: int) -> str:
    """Text of about ``characters`` characters: past ``_surely_fits``' cheap bound of a
    200k window (one token a character), far under the window as counted (~50k tokens)."""
    words = " ".join(f"toll road number {i} is open today." for i in range(characters // 30))
    return words[:characters]


CONVERSATION = prose(240_000)


def anthropic_turns(latest: str) -> list[Any]:
    document = {"type": "document", "source": {"type": "url", "url": URL}, "title": "Tolls"}
    return [
        {"role": "user", "content": CONVERSATION},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": [document, {"type": "text", "text": latest}]},
    ]


def responses_turns(latest: str) -> list[Any]:
    file = {"type": "input_file", "file_url": URL, "filename": "tolls.pdf"}
    return [
        {"role": "user", "content": CONVERSATION},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": [file, {"type": "input_text", "text": latest}]},
    ]


def test_an_anthropic_clients_url_document_with_a_long_conversation_is_sent(
    claude: anthropic.Anthropic,
) -> None:
    message = claude.messages.create(
        model="windowed-claude", max_tokens=100, messages=anthropic_turns("summarise the PDF")
    )
    assert message.stop_reason == "end_turn"


@pytest.mark.parametrize("truncation", ["disabled", "auto"])
def test_a_responses_file_url_with_a_long_conversation_is_sent_whole(
    gpt: openai.OpenAI, simulator_url: str, truncation: Any
) -> None:
    latest = f"what does the linked PDF say? ({truncation})"
    response = gpt.responses.create(
        model="windowed-claude",
        input=responses_turns(latest),
        max_output_tokens=100,
        truncation=truncation,
    )
    assert response.status == "completed"
    sent = received(simulator_url, latest)
    assert len(sent["messages"]) == 3  # nothing dropped: the least it may cost fits
    assert sent["messages"][2]["content"][0]["source"] == {"type": "url", "url": URL}


def test_a_url_document_with_text_over_the_window_is_still_refused(
    claude: anthropic.Anthropic,
) -> None:
    document = {"type": "document", "source": {"type": "url", "url": URL}}
    text = prose(1_200_000)  # ~280k tokens counted: over the window whatever the PDF holds
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(
            model="windowed-claude",
            max_tokens=100,
            messages=[{"role": "user", "content": [document, {"type": "text", "text": text}]}],
        )
    message = caught.value.body["error"]["message"]  # type: ignore[index]
    assert "context window" in message and "at least" in message


def test_a_budget_holds_no_more_input_than_the_window(gateway: str) -> None:
    created = admin(gateway, "POST", "/admin/keys", {"name": f"pdf-{uuid.uuid4().hex[:6]}"}, 201)
    budget = {"scope": "key", "scope_id": created["id"], "period": "day", "limit_usd": BUDGET_USD}
    admin(gateway, "PUT", "/admin/budgets", budget)
    with anthropic.Anthropic(base_url=gateway, api_key=created["key"], max_retries=0) as client:
        message = client.messages.create(
            model="windowed-claude",
            max_tokens=100,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "document", "source": {"type": "url", "url": URL}},
                        {"type": "text", "text": "under a budget"},
                    ],
                }
            ],
        )
    assert message.stop_reason == "end_turn"


def admin(url: str, method: str, path: str, body: Any, status: int = 200) -> Any:
    response = httpx.request(
        method, url + path, json=body, headers={"authorization": f"Bearer {CLIENT_KEY}"}
    )
    assert response.status_code == status, response.text
    return response.json()


def received(simulator_url: str, latest: str) -> dict[str, Any]:
    """The body the simulator last received whose last turn mentions ``latest``."""
    for request in reversed(httpx.get(simulator_url + "/_sim/requests").json()):
        body = request["json"] or {}
        turns = body.get("messages")
        if isinstance(turns, list) and turns and latest in str(turns[-1]):
            return dict(body)
    raise AssertionError(f"the simulator received no request mentioning {latest!r}")
