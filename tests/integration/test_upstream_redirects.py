"""An upstream that answers with a redirect: the gateway never follows it.

Following one would send the provider key to wherever the redirect points: HTTP clients drop
``Authorization`` when a redirect leaves the origin, but not the headers other providers
carry their keys in (Anthropic's ``x-api-key``, Azure's ``api-key``, Gemini's
``x-goog-api-key``), nor the request body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import openai
import pytest
from aiohttp import web

from tests.conftest import UPSTREAM_KEY
from tests.integration.in_process import serving
from tests.support import CLIENT_KEY, Process, running_gateway

PROVIDERS = {
    "anthropic": "x-api-key",
    "gemini": "x-goog-api-key",
    "azure_openai": "api-key",
    "openai": "authorization",
}


@pytest.fixture(scope="module")
async def elsewhere() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """Another origin, which records every request that reaches it."""
    seen: list[dict[str, str]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append({name.lower(): value for name, value in request.headers.items()})
        return web.json_response({"error": {"message": "you should not be here"}}, status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    async with serving(app) as url:
        yield url, seen


@pytest.fixture(scope="module")
async def redirecting(elsewhere: tuple[str, list[dict[str, str]]]) -> AsyncIterator[str]:
    """An upstream that sends every request on to the other origin, body and all (307)."""

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(elsewhere[0] + request.path_qs)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    async with serving(app) as url:
        yield url


@pytest.fixture(scope="module")
def gateway(log_dir: Path, redirecting: str) -> Iterator[tuple[str, Process]]:
    """One model per provider family, each served by the redirecting upstream."""
    extra = {"azure_openai": {"api_version": "2024-10-21"}}
    config = {
        "models": [
            {"name": provider, "deployments": [{
                "provider": provider, "model": "m", "api_key": "env:TEST_UPSTREAM_KEY",
                "api_base": redirecting + ("/v1" if provider == "openai" else ""),
                **extra.get(provider, {}),
            }]}
            for provider in PROVIDERS
        ],
    }  # fmt: skip
    with running_gateway(log_dir, config, {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}) as running:
        yield running


@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize("stream", [False, True])
async def test_an_upstream_redirect_is_not_followed_with_the_provider_key(
    gateway: tuple[str, Process],
    elsewhere: tuple[str, list[dict[str, str]]],
    provider: str,
    stream: bool,
) -> None:
    _, seen = elsewhere
    seen.clear()
    client = openai.AsyncOpenAI(base_url=gateway[0] + "/v1", api_key=CLIENT_KEY, max_retries=0)
    with pytest.raises(openai.APIStatusError) as failed:
        answer = await client.chat.completions.create(
            model=provider, messages=[{"role": "user", "content": "hi"}], stream=stream
        )
        if stream:
            async for _ in answer:  # type: ignore[union-attr]
                pass
    leaked = [name for headers in seen for name, value in headers.items() if UPSTREAM_KEY in value]
    assert not leaked, f"the provider key reached another origin in {leaked}"
    assert not seen, "the redirect was followed"
    assert failed.value.status_code == 502
    assert "redirect" in failed.value.message
    assert UPSTREAM_KEY not in gateway[1].output()
