"""Images from an OpenAI client reach each provider family in that provider's own form."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import openai
import pytest

from tests.support import CLIENT_KEY

PIXEL = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)
URL = "https://example.com/cat.png"


def last_body(simulator_url: str, marker: str) -> dict[str, Any]:
    """The JSON body of the last upstream request whose text contains ``marker``."""
    for request in reversed(httpx.get(simulator_url + "/_sim/requests").json()):
        if marker in str(request["json"]):
            return dict(request["json"])
    raise AssertionError(f"no upstream request mentions {marker}")


def ask(gateway_url: str, model: str, marker: str, url: str | None = None) -> None:
    client = openai.OpenAI(base_url=gateway_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    image = url or f"data:image/png;base64,{PIXEL}"
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": [
        {"type": "text", "text": f"describe {marker}"},
        {"type": "image_url", "image_url": {"url": image}},
    ]}])  # fmt: skip


@pytest.mark.parametrize("by_url", [False, True], ids=["base64", "url"])
def test_openai_upstream_gets_the_image_unchanged(
    gateway_url: str, simulator_url: str, by_url: bool
) -> None:
    marker = uuid.uuid4().hex
    ask(gateway_url, "test-chat", marker, URL if by_url else None)
    part = last_body(simulator_url, marker)["messages"][0]["content"][1]
    expected = URL if by_url else f"data:image/png;base64,{PIXEL}"
    assert part == {"type": "image_url", "image_url": {"url": expected}}


@pytest.mark.parametrize("by_url", [False, True], ids=["base64", "url"])
def test_anthropic_upstream_gets_an_image_block(
    gateway_url: str, simulator_url: str, by_url: bool
) -> None:
    marker = uuid.uuid4().hex
    ask(gateway_url, "test-claude", marker, URL if by_url else None)
    block = last_body(simulator_url, marker)["messages"][0]["content"][1]
    assert block["type"] == "image"
    if by_url:
        assert block["source"] == {"type": "url", "url": URL}
    else:
        assert block["source"] == {"type": "base64", "media_type": "image/png", "data": PIXEL}


def test_gemini_upstream_gets_inline_data(gateway_url: str, simulator_url: str) -> None:
    marker = uuid.uuid4().hex
    ask(gateway_url, "test-gemini", marker)
    parts = last_body(simulator_url, marker)["contents"][0]["parts"]
    assert {"inlineData": {"mimeType": "image/png", "data": PIXEL}} in parts


def test_bedrock_upstream_gets_image_bytes(gateway_url: str, simulator_url: str) -> None:
    marker = uuid.uuid4().hex
    ask(gateway_url, "test-bedrock", marker)
    blocks = last_body(simulator_url, marker)["messages"][0]["content"]
    image = next(block["image"] for block in blocks if "image" in block)
    assert image == {"format": "png", "source": {"bytes": PIXEL}}
