"""CORS for browser pages (``server.cors``), over a real port with raw HTTP, as a browser
speaks it: preflights without credentials, then the request with its ``Origin``.

One gateway in this process, with CORS on; the session's gateway (no ``cors``) shows that
nothing changes without it.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import gateway_config
from tests.integration.in_process import gateway_in_process
from tests.support import CLIENT_KEY

APP = "https://app.example.com"
CONSOLE = "https://console.example.com"
STRANGER = "https://evil.example.net"
AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}
HELLO = {"model": "test-chat", "messages": [{"role": "user", "content": "hello"}]}
# What the openai and anthropic JavaScript SDKs ask to send from a browser.
SDK_HEADERS = (
    "authorization,content-type,x-stainless-retry-count,x-stainless-os,x-stainless-timeout,"
    "anthropic-version,anthropic-dangerous-direct-browser-access,x-api-key,openai-project"
)
MODEL_ROUTES = [
    ("POST", "/v1/chat/completions"),
    ("POST", "/chat/completions"),
    ("POST", "/v1/embeddings"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/test-chat"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"),
    ("POST", "/v1/responses"),
    ("POST", "/v1/responses/input_tokens"),
    ("POST", "/v1/estimate"),
]


@pytest.fixture(scope="module")
async def cors_url(
    tmp_path_factory: pytest.TempPathFactory, simulator_url: str
) -> AsyncIterator[str]:
    config = gateway_config(simulator_url)
    chat = next(group for group in config["models"] if group["name"] == "test-chat")
    config["models"].append({**copy.deepcopy(chat), "name": "limited"})
    config["limits"] = {"models": {"limited": {"rpm": 1}}}
    store = tmp_path_factory.mktemp("cors") / "gw.db"
    config["store"] = {"url": f"sqlite+aiosqlite:///{Path(store)}"}
    config["server"] = {
        "reload_interval": None,
        "cors": {"allow_origins": [APP], "admin_allow_origins": [CONSOLE], "max_age": "2m"},
    }
    async with gateway_in_process(config) as (url, _):
        yield url


async def send(
    method: str, url: str, headers: dict[str, str], body: dict[str, Any] | None = None
) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders, bytes]:
    """One request: (status, headers, body)."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers, json=body) as response,
    ):
        return response.status, response.headers, await response.read()


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": SDK_HEADERS + ",x-not-allowed",
    }


def assert_readable_by(headers: Any, origin: str) -> None:
    """An answer the page of ``origin`` may read, with the gateway's own headers exposed."""
    assert headers["Access-Control-Allow-Origin"] == origin
    assert "Origin" in headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in headers
    exposed = headers["Access-Control-Expose-Headers"].split(", ")
    assert "x-request-id" in exposed
    for name in headers:
        if name.lower().startswith(("x-tollway-", "x-ratelimit-", "retry-after")):
            assert name.lower() in exposed


def assert_not_readable(headers: Any) -> None:
    assert not any(name.lower().startswith("access-control-") for name in headers)


@pytest.mark.parametrize(("method", "path"), MODEL_ROUTES)
async def test_a_preflight_from_an_allowed_origin_is_204_with_what_the_sdks_send(
    cors_url: str, method: str, path: str
) -> None:
    status, headers, body = await send("OPTIONS", cors_url + path, preflight(APP, method))
    assert status == 204 and body == b""
    assert headers["Access-Control-Allow-Origin"] == APP
    assert "Origin" in headers["Vary"]
    assert method in headers["Access-Control-Allow-Methods"].split(", ")
    granted = headers["Access-Control-Allow-Headers"].split(", ")
    assert granted == SDK_HEADERS.split(",")  # each asked name, as no prefix glob is CORS syntax
    assert headers["Access-Control-Max-Age"] == "120"


@pytest.mark.parametrize(("method", "path"), MODEL_ROUTES)
async def test_a_preflight_from_another_origin_gets_no_cors_headers_and_no_auth_failure(
    cors_url: str, method: str, path: str
) -> None:
    for origin in (STRANGER, CONSOLE, "null"):  # the admin console's origin too
        status, headers, _ = await send("OPTIONS", cors_url + path, preflight(origin, method))
        assert status == 204
        assert_not_readable(headers)
        assert "Origin" in headers["Vary"]


async def test_an_options_request_that_is_no_preflight_says_the_methods(cors_url: str) -> None:
    status, headers, _ = await send("OPTIONS", cors_url + "/v1/models", {})
    assert status == 204
    assert headers["Allow"] == "GET, HEAD, OPTIONS"
    assert_not_readable(headers)


async def test_an_answer_to_an_allowed_origin_is_readable_and_exposes_the_gateways_headers(
    cors_url: str,
) -> None:
    headers = {**AUTH, "Origin": APP}
    status, answer, _ = await send("POST", cors_url + "/v1/chat/completions", headers, HELLO)
    assert status == 200
    assert_readable_by(answer, APP)
    assert any(
        name.startswith("x-tollway-")
        for name in answer["Access-Control-Expose-Headers"].split(", ")
    )
    status, answer, _ = await send("GET", cors_url + "/v1/models", headers)
    assert status == 200
    assert_readable_by(answer, APP)


async def test_a_stream_to_an_allowed_origin_is_readable(cors_url: str) -> None:
    headers = {**AUTH, "Origin": APP}
    body = {**HELLO, "stream": True}
    status, answer, data = await send("POST", cors_url + "/v1/chat/completions", headers, body)
    assert status == 200 and answer["Content-Type"].startswith("text/event-stream")
    assert b"data: [DONE]" in data
    assert_readable_by(answer, APP)
    claude = {"model": "test-claude", "max_tokens": 20, "stream": True,
              "messages": [{"role": "user", "content": "hello"}]}  # fmt: skip
    anthropic = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01", "Origin": APP}
    status, answer, data = await send("POST", cors_url + "/v1/messages", anthropic, claude)
    assert status == 200 and b"event: message_stop" in data
    assert_readable_by(answer, APP)


async def test_errors_in_both_dialects_are_readable_by_an_allowed_origin(cors_url: str) -> None:
    wrong = {"Authorization": "Bearer tw-not-a-key", "Origin": APP}
    status, answer, body = await send("POST", cors_url + "/v1/chat/completions", wrong, HELLO)
    assert status == 401 and b'"error"' in body
    assert_readable_by(answer, APP)
    wrong_anthropic = {
        "x-api-key": "tw-not-a-key",
        "anthropic-version": "2023-06-01",
        "Origin": APP,
    }
    status, answer, body = await send("POST", cors_url + "/v1/messages", wrong_anthropic, {})
    assert status == 401 and b'"authentication_error"' in body
    assert_readable_by(answer, APP)
    status, answer, _ = await send("GET", cors_url + "/v1/nowhere", {**AUTH, "Origin": APP})
    assert status == 404
    assert_readable_by(answer, APP)


async def test_a_rate_limited_answer_is_readable_with_its_retry_after(cors_url: str) -> None:
    headers = {**AUTH, "Origin": APP}
    limited = {**HELLO, "model": "limited"}
    answers = []
    for _ in range(2):
        status, answer, _ = await send("POST", cors_url + "/v1/chat/completions", headers, limited)
        answers.append((status, answer))
        assert_readable_by(answer, APP)
    (admitted, first), (refused, second) = answers
    assert (admitted, refused) == (200, 429)
    assert "x-ratelimit-remaining-requests" in first["Access-Control-Expose-Headers"].split(", ")
    assert "retry-after" in second["Access-Control-Expose-Headers"].split(", ")


async def test_an_answer_to_another_origin_is_not_readable(cors_url: str) -> None:
    status, answer, _ = await send(
        "POST", cors_url + "/v1/chat/completions", {**AUTH, "Origin": STRANGER}, HELLO
    )
    assert status == 200
    assert_not_readable(answer)
    assert "Origin" in answer["Vary"]


async def test_the_admin_api_is_readable_only_by_its_own_origins(cors_url: str) -> None:
    for origin in (APP, STRANGER):
        status, headers, _ = await send("OPTIONS", cors_url + "/admin/keys", preflight(origin))
        assert status == 204
        assert_not_readable(headers)
        status, headers, _ = await send("GET", cors_url + "/admin/keys", {**AUTH, "Origin": origin})
        assert status == 200
        assert_not_readable(headers)
    status, headers, _ = await send("OPTIONS", cors_url + "/admin/keys", preflight(CONSOLE))
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == CONSOLE
    assert "POST" in headers["Access-Control-Allow-Methods"]
    status, headers, _ = await send("GET", cors_url + "/admin/keys", {**AUTH, "Origin": CONSOLE})
    assert status == 200
    assert_readable_by(headers, CONSOLE)
    status, headers, _ = await send("GET", cors_url + "/admin/keys", {"Origin": CONSOLE})
    assert status == 401
    assert_readable_by(headers, CONSOLE)


async def test_metrics_and_health_take_no_origin(cors_url: str) -> None:
    for path in ("/metrics", "/health/ready"):
        status, headers, _ = await send("GET", cors_url + path, {"Origin": APP})
        assert status == 200
        assert_not_readable(headers)


async def test_without_cors_configured_no_answer_carries_cors_headers(gateway_url: str) -> None:
    status, headers, _ = await send("OPTIONS", gateway_url + "/v1/chat/completions", preflight(APP))
    assert status == 405  # as before: no preflight route at all
    assert_not_readable(headers)
    status, headers, _ = await send(
        "POST", gateway_url + "/v1/chat/completions", {**AUTH, "Origin": APP}, HELLO
    )
    assert status == 200
    assert_not_readable(headers)
    assert "Origin" not in headers.get("Vary", "")
