"""Request body limits: what providers accept passes, what is over the limit is a 413 in the
client's error shape on every route, however the body is framed. Real gateway processes."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.support import CLIENT_KEY, running_gateway

LIMIT = 1024 * 1024
AUTH = {"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"}
ROUTES = {
    "/v1/chat/completions": ("openai", {"model": "chat", "messages": [{"role": "user"}]}),
    "/v1/responses": ("openai", {"model": "chat", "input": [{"role": "user"}]}),
    "/v1/embeddings": ("openai", {"model": "embed", "input": None}),
    "/v1/messages": ("anthropic", {"model": "claude", "max_tokens": 8, "messages": [
        {"role": "user"}]}),
    "/v1/messages/count_tokens": ("anthropic", {"model": "claude", "messages": [
        {"role": "user"}]}),
}  # fmt: skip


@pytest.fixture(scope="module")
def small(log_dir: Path, simulator_url: str) -> Iterator[str]:
    """A gateway that takes bodies of at most ``LIMIT`` bytes."""
    key = "env:TEST_UPSTREAM_KEY"
    base = f"{simulator_url}/v1"
    config = {
        "server": {"max_body_size": LIMIT},
        "models": [
            {"name": "chat", "deployments": [
                {"provider": "openai", "model": "sim-chat", "api_base": base, "api_key": key}]},
            {"name": "embed", "kind": "embedding", "deployments": [
                {"provider": "openai", "model": "sim-embed", "api_base": base, "api_key": key}]},
            {"name": "claude", "deployments": [{"provider": "anthropic", "model": "sim-chat",
                "api_base": simulator_url, "api_key": key}]},
        ],
    }  # fmt: skip
    with running_gateway(log_dir, config, {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}) as (url, _):
        yield url


def body_of_size(route: str, size: int, *, padding: str | None = None) -> bytes:
    """A valid request for ``route`` of exactly ``size`` bytes: its text padded, or the
    top-level field ``padding``."""
    _, template = ROUTES[route]
    request: dict[str, Any] = orjson.loads(orjson.dumps(template))
    if route == "/v1/embeddings":
        request["input"] = ""
        slot = request, "input"
    else:
        turn = (request.get("messages") or request.get("input"))[0]
        turn["content"] = "hi" if padding else ""
        slot = turn, "content"
    if padding is not None:
        request[padding] = ""
        slot = request, padding
    missing = size - len(orjson.dumps(request))
    assert missing > 0
    slot[0][slot[1]] = "x" * missing
    raw = orjson.dumps(request)
    assert len(raw) == size
    return raw


def post(url: str, raw: bytes, chunked: bool) -> httpx.Response:
    # An iterator has no length: httpx sends it with Transfer-Encoding: chunked.
    content = iter([raw[: len(raw) // 2], raw[len(raw) // 2 :]]) if chunked else raw
    return httpx.post(url, content=content, headers=AUTH, timeout=30)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("route", ROUTES)
def test_a_body_over_the_limit_is_413_in_the_routes_error_shape(
    small: str, route: str, chunked: bool
) -> None:
    dialect, _ = ROUTES[route]
    response = post(small + route, body_of_size(route, LIMIT + 1), chunked)
    assert response.status_code == 413
    payload = response.json()
    if dialect == "anthropic":
        assert payload["type"] == "error" and payload["error"]["type"] == "request_too_large"
    else:
        assert set(payload["error"]) == {"message", "type", "param", "code"}
        assert payload["error"]["type"] == "invalid_request_error"
    assert f"limit of {LIMIT} bytes" in (payload["error"]["message"])


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_of_exactly_the_limit_is_served(small: str, chunked: bool) -> None:
    # A chunked body one byte over went through: aiohttp's own limit is one byte higher.
    route = "/v1/chat/completions"
    # Padded in OpenAI's ``user`` field, which takes no room in the model's context window.
    response = post(small + route, body_of_size(route, LIMIT, padding="user"), chunked)
    assert response.status_code == 200, response.text


def image(megabytes: int) -> str:
    """A base64 data URL of ``megabytes`` MiB of image bytes."""
    data = base64.b64encode(os.urandom(megabytes * 1024 * 1024)).decode()
    return f"data:image/png;base64,{data}"


def test_a_request_with_images_the_providers_take_is_served(gateway_url: str) -> None:
    # Three 6 MiB images: a 24 MiB body, under Anthropic's 32 MB and OpenAI's 50 MB of images,
    # which the gateway refused with a 413 at its old 8 MiB default.
    images = [image(6) for _ in range(3)]
    parts: Any = [{"type": "text", "text": "three large pictures"}] + [
        {"type": "image_url", "image_url": {"url": url}} for url in images
    ]
    with openai.OpenAI(base_url=gateway_url + "/v1", api_key=CLIENT_KEY, max_retries=0) as gpt:
        answer = gpt.chat.completions.create(
            model="test-chat", messages=[{"role": "user", "content": parts}]
        )
    assert "three large pictures" in (answer.choices[0].message.content or "")
    blocks: Any = [{"type": "text", "text": "three large pictures"}] + [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": url.split(",", 1)[1]}}
        for url in images
    ]  # fmt: skip
    with anthropic.Anthropic(base_url=gateway_url, api_key=CLIENT_KEY, max_retries=0) as claude:
        message = claude.messages.create(
            model="test-claude", max_tokens=16, messages=[{"role": "user", "content": blocks}]
        )
    assert message.usage.input_tokens > 0
