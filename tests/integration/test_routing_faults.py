"""Provider failures routing must absorb or report truly, over real sockets: a gateway in
this process (``create_app`` on a real port) in front of an upstream that fails in ways the
simulator does not (an aiohttp server in this process, failing as each deployment's
``x-fault`` header says); clients are the real SDKs and httpx.

Each model group has deployments of its own (ids), so what one test teaches the gateway's
health book never reaches another.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import yaml
from aiohttp import web

from tests.integration.in_process import gateway_in_process, serving
from tests.support import CLIENT_KEY, free_port
from tollway.gateway import Gateway

ADMIN = {"Authorization": f"Bearer {CLIENT_KEY}"}
HI = [{"role": "user", "content": "hello there"}]
ANSWER = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "good",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "hi"}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}  # fmt: skip
SEEN: set[str] = set()
"""Prompts a ``by-prompt`` upstream failed once."""
CALLS: list[tuple[str, str]] = []
"""Every call the upstream got: its path and its deployment's fault."""
UNREADABLE_WAITS = {"inf": "inf", "nan": "nan", "negative": "-5", "words": "in a minute"}
"""``retry-after`` values that are neither delta-seconds nor an HTTP date, by test id."""
CHUNK = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "good"}
RATE_LIMITED = {
    "error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}
}
CONTEXT_ERROR = {
    "message": "This model's maximum context length is 8 tokens. However, your messages "
    "resulted in 12 tokens. Please reduce the length of the messages.",
    "type": "invalid_request_error",
    "param": "messages",
    "code": "context_length_exceeded",
}
CLAUDE_TOO_LONG = {
    "type": "error",
    "error": {
        "type": "invalid_request_error",
        "message": "prompt is too long: 208310 tokens > 200000 maximum",
    },
}

GEMINI_OVERLOAD = {
    "error": {
        "code": 503,
        "message": "The model is overloaded. Please try again later.",
        "status": "UNAVAILABLE",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"}],
    }
}


async def _in_pieces(request: web.Request, status: int, body: bytes) -> web.StreamResponse:
    """``body`` sent as a chunked answer in two writes a moment apart (as a proxy in front of a
    provider may pass on what it has), so the gateway reads it in two network reads."""
    response = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
    await response.prepare(request)
    await response.write(body[:24])
    await asyncio.sleep(0.05)
    await response.write(body[24:])
    await response.write_eof()
    return response


async def upstream(request: web.Request) -> web.StreamResponse:
    """Fails as the deployment's ``x-fault`` header says, or answers (in OpenAI's format)."""
    body = await request.json()
    fault = request.headers.get("x-fault", "")
    CALLS.append((request.path, fault))
    if fault == "by-prompt":  # as the request's last message says
        prompt = body["messages"][-1]["content"]
        if prompt == "busy":
            return web.json_response(RATE_LIMITED, status=429, headers={"retry-after": "30"})
        if prompt == "fail":
            error = {"message": "The server had an error", "type": "server_error", "code": None}
            return web.json_response({"error": error}, status=500)
        if prompt == "slow 500" and prompt not in SEEN:
            SEEN.add(prompt)  # once: a retry of it is answered
            await asyncio.sleep(0.5)
            error = {"message": "The server had an error", "type": "server_error", "code": None}
            return web.json_response({"error": error}, status=500)
    if fault == "500":
        error = {"type": "error", "error": {"type": "api_error", "message": "Internal error"}}
        return web.json_response(error, status=500)
    if fault == "401 unless good key" and request.headers["authorization"] != "Bearer sk-good":
        error = {"message": "Incorrect API key provided", "type": "invalid_request_error",
                 "code": "invalid_api_key"}  # fmt: skip
        return web.json_response({"error": error}, status=401)
    if fault == "context-400":  # this deployment's window is too small for the request
        return web.json_response({"error": CONTEXT_ERROR}, status=400)
    if fault == "claude-too-long":  # Anthropic's words for the same
        return web.json_response(CLAUDE_TOO_LONG, status=400)
    if fault == "split-400":
        return await _in_pieces(request, 400, json.dumps({"error": CONTEXT_ERROR}).encode())
    if fault == "split-503":  # Gemini's overload, asking for a wait of 30 s in its body
        return await _in_pieces(request, 503, json.dumps(GEMINI_OVERLOAD).encode())
    if fault == "silent-mid-stream":  # one token, then silence with the connection open
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        chunk = {**CHUNK, "choices": [{"index": 0, "delta": {"content": "hi"}}]}
        await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        for _ in range(300):  # until the gateway's gap limit ends the call (30 s at most)
            if request.transport is None or request.transport.is_closing():
                break
            await asyncio.sleep(0.1)
        return response
    if fault.startswith("429 retry-after-ms "):  # OpenAI's finer wait, alone
        wait = fault.removeprefix("429 retry-after-ms ")
        return web.json_response(RATE_LIMITED, status=429, headers={"retry-after-ms": wait})
    if fault.startswith("503 retry-after "):  # an overload that says how long, in seconds
        error = {"message": "The server is overloaded", "type": "server_error",
                 "code": "server_is_overloaded"}  # fmt: skip
        wait = fault.removeprefix("503 retry-after ")
        return web.json_response({"error": error}, status=503, headers={"retry-after": wait})
    if fault.startswith("429 retry-after "):  # a rate limit asking for an unreadable wait
        wait = fault.removeprefix("429 retry-after ")
        return web.json_response(RATE_LIMITED, status=429, headers={"retry-after": wait})
    return web.json_response(ANSWER)


@pytest.fixture(scope="module")
async def upstream_url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", upstream)
    app.router.add_post("/v1beta/models/{method}", upstream)  # Gemini's generateContent
    app.router.add_post("/v1/messages", upstream)
    app.router.add_post("/v1/messages/count_tokens", upstream)
    async with serving(app) as url:
        yield url


def _deployment(base: str, ident: str, fault: str | None = None, **extra: Any) -> dict[str, Any]:
    headers = {"x-fault": fault} if fault else {}
    return {
        "provider": "openai", "model": "m", "api_base": base + "/v1", "api_key": "sk-test-key",
        "id": ident, "headers": headers, **extra,
    }  # fmt: skip


def _claude(base: str, ident: str, fault: str | None = None) -> dict[str, Any]:
    headers = {"x-fault": fault} if fault else {}
    return {
        "provider": "anthropic", "model": "claude-sonnet-4-5", "api_base": base,
        "api_key": "sk-ant-test-key", "id": ident, "headers": headers,
    }  # fmt: skip


@pytest.fixture(scope="module")
async def served(
    tmp_path_factory: pytest.TempPathFactory, upstream_url: str
) -> AsyncIterator[tuple[str, Gateway]]:
    tmp: Path = tmp_path_factory.mktemp("routing-faults")
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = {
        "store": {"url": f"sqlite+aiosqlite:///{tmp / 'gw.db'}"},
        "server": {"reload_interval": None},
        "upstream": {"timeouts": {"connect": "2s", "first_byte": "2s", "total": "5s"}},
        "routing": {
            "failure_threshold": 3, "cooldown": "30s", "backoff": "10ms",
            "rate_limit_cooldown": "20s",
        },
        "models": [
            {"name": "split-400", "deployments": [
                _deployment(upstream_url, "split-400-a", "split-400")]},
            {"name": "overflow", "deployments": [
                _deployment(upstream_url, "overflow-small", "context-400"),
                _deployment(upstream_url, "overflow-large")]},
            {"name": "overflow-claude", "fallbacks": ["overflow-larger"], "deployments": [
                _claude(upstream_url, "overflow-claude-a", "claude-too-long")]},
            {"name": "overflow-larger", "deployments": [
                _deployment(upstream_url, "overflow-larger-a")]},
            {"name": "overflow-windows", "deployments": [
                _deployment(upstream_url, "overflow-windows-100k", "context-400",
                            context_window=100_000),
                _deployment(upstream_url, "overflow-windows-also-100k", "context-400",
                            context_window=100_000),
                _deployment(upstream_url, "overflow-windows-200k", context_window=200_000)]},
            {"name": "split-503", "retries": 1, "deployments": [
                {"provider": "gemini", "model": "gemini-2.5-flash", "api_base": upstream_url,
                 "api_key": "test-gemini-key", "id": "split-503-gemini",
                 "headers": {"x-fault": "split-503"}},
                _deployment(upstream_url, "split-503-backup")]},
            *({"name": f"wait-{name}", "deployments": [
                _deployment(upstream_url, f"wait-{name}-a", f"429 retry-after {wait}"),
                _deployment(upstream_url, f"wait-{name}-backup")]}
              for name, wait in UNREADABLE_WAITS.items()),
            {"name": "count-unreachable", "deployments": [
                _claude(closed, "count-unreachable-a"), _deployment(upstream_url, "count-b")]},
            {"name": "count-open", "deployments": [
                _claude(upstream_url, "count-open-a", "500"),
                _deployment(upstream_url, "count-c")]},
            {"name": "retried", "retries": 1, "deployments": [
                _deployment(upstream_url, "retried-a", "by-prompt"),
                _deployment(upstream_url, "retried-backup")]},
            {"name": "spread", "strategy": "least-busy", "deployments": [
                _deployment(upstream_url, f"spread-{letter}") for letter in "abc"]},
            {"name": "overflow-open", "deployments": [
                _deployment(upstream_url, "overflow-open-small", "context-400",
                            context_window=100_000),
                _deployment(upstream_url, "overflow-open-large", "by-prompt",
                            context_window=200_000)]},
            {"name": "overflow-open-same", "deployments": [
                _deployment(upstream_url, "overflow-open-same-b", "by-prompt",
                            context_window=100_000),
                _deployment(upstream_url, "overflow-open-same-a", "context-400",
                            context_window=100_000)]},
            {"name": "wait-ms", "deployments": [
                _deployment(upstream_url, "wait-ms-a", "429 retry-after-ms 1500")]},
            {"name": "wait-ms-claude", "deployments": [
                _deployment(upstream_url, "wait-ms-claude-a", "429 retry-after-ms 1500")]},
            {"name": "wait-overload", "deployments": [
                _deployment(upstream_url, "wait-overload-a", "503 retry-after 3")]},
            {"name": "wait-soonest", "deployments": [
                _deployment(upstream_url, "wait-soonest-a", "429 retry-after 3"),
                _deployment(upstream_url, "wait-soonest-b", "429 retry-after-ms 1500")]},
            *({"name": f"only-wait-{name}", "deployments": [
                _deployment(upstream_url, f"only-wait-{name}-a", f"429 retry-after {wait}")]}
              for name, wait in UNREADABLE_WAITS.items()),
        ],
    }  # fmt: skip
    async with gateway_in_process(config) as running:
        yield running


async def _health(url: str) -> dict[str, dict[str, Any]]:
    async with httpx.AsyncClient() as client:
        rows = (await client.get(url + "/admin/deployments", headers=ADMIN)).json()["data"]
    return {row["id"]: row for row in rows}


async def _answered_by(url: str, model: str) -> tuple[str, str]:
    """The deployment that answered a chat completion of ``HI`` asked of ``model``, and the
    attempts it took (the gateway's ``x-tollway-deployment`` and ``x-tollway-attempts``)."""
    raw = await _gpt(url).chat.completions.with_raw_response.create(model=model, messages=HI)
    return raw.headers["x-tollway-deployment"], raw.headers["x-tollway-attempts"]


def _gpt(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)


def _claude_sdk(url: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=url, api_key=CLIENT_KEY, max_retries=0)


async def test_an_error_body_that_comes_in_pieces_reaches_the_client_whole(
    served: tuple[str, Gateway],
) -> None:
    # An upstream's error read only as far as its first network read lost its code and
    # param, and its message became the first bytes of its JSON ('{"error": {"message"').
    url, _ = served
    with pytest.raises(openai.BadRequestError) as caught:
        await _gpt(url).chat.completions.create(model="split-400", messages=HI)
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.param == "messages"
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["message"] == CONTEXT_ERROR["message"]


async def test_a_context_length_error_fails_over_to_a_candidate_with_a_larger_window(
    served: tuple[str, Gateway],
) -> None:
    # A provider's 400 for a request longer than its deployment's context window is no
    # fault of the request another deployment (a larger model) would refuse too: it went to
    # the client at once, while a candidate that could hold it was never tried.
    url, _ = served
    assert await _answered_by(url, "overflow") == ("overflow-large", "2")
    small = (await _health(url))["overflow-small"]
    assert small["consecutive_failures"] == 0 and small["circuit"] == "closed"
    # Anthropic's words for it, and a fallback group.
    answer = await _claude_sdk(url).messages.with_raw_response.create(
        model="overflow-claude", max_tokens=16, messages=HI
    )
    assert answer.headers["x-tollway-deployment"] == "overflow-larger-a"
    # A candidate whose window is no larger than the one that refused is not asked.
    assert await _answered_by(url, "overflow-windows") == ("overflow-windows-200k", "2")
    assert (await _health(url))["overflow-windows-also-100k"]["requests"] == 0


async def test_a_wait_asked_for_in_an_error_body_that_comes_in_pieces_rests_the_deployment(
    served: tuple[str, Gateway],
) -> None:
    # Gemini asks for a wait in its error body (RetryInfo), not in a header: cut at the first
    # read, the body said nothing, so the overload was retried at once on the deployment that
    # asked for 30 s and counted against its circuit.
    url, _ = served
    # Two attempts: no retry of the one that asked to wait.
    assert await _answered_by(url, "split-503") == ("split-503-backup", "2")
    gemini = (await _health(url))["split-503-gemini"]
    assert 25 < gemini["rate_limited_for_s"] <= 30
    assert gemini["consecutive_failures"] == 0 and gemini["circuit"] == "closed"


@pytest.mark.parametrize("name", UNREADABLE_WAITS)
async def test_a_rate_limit_asking_for_an_unreadable_wait_is_still_a_rate_limit(
    served: tuple[str, Gateway], name: str
) -> None:
    # 'inf' and 'nan' made the 429 a 502 ('the call to the upstream failed') counted against
    # the deployment's circuit; '-5' rested it for no time at all; and the client was sent
    # the upstream's words as its retry-after ('in a minute'). A wait that cannot be read is
    # no wait: the deployment rests for routing.rate_limit_cooldown, as after a bare 429.
    url, _ = served
    gpt = _gpt(url)
    raw = await gpt.chat.completions.with_raw_response.create(model=f"wait-{name}", messages=HI)
    assert raw.headers["x-tollway-deployment"] == f"wait-{name}-backup"
    limited = (await _health(url))[f"wait-{name}-a"]
    assert limited["circuit"] == "closed" and limited["consecutive_failures"] == 0
    assert 15 < limited["rate_limited_for_s"] <= 20
    assert limited["last_error"] == "rate_limit_exceeded"

    with pytest.raises(openai.RateLimitError) as caught:
        await gpt.chat.completions.create(model=f"only-wait-{name}", messages=HI)
    assert caught.value.code == "rate_limit_exceeded"
    assert "retry-after" not in caught.value.response.headers


async def test_a_count_the_first_deployment_cannot_give_is_counted_locally(
    served: tuple[str, Gateway],
) -> None:
    # The count went to the model's first deployment whatever its state, and its failure to
    # the client (a 502 for every count while it was down), though /v1/messages was served.
    url, _ = served
    claude = _claude_sdk(url)
    answer = await claude.messages.create(model="count-unreachable", max_tokens=5, messages=HI)
    assert answer.content  # the model is served (by its second deployment)
    raw = await claude.messages.with_raw_response.count_tokens(
        model="count-unreachable", messages=HI
    )
    assert raw.headers["x-tollway-token-count"] == "local"
    assert "x-tollway-deployment" not in raw.headers  # as any local count: none served it
    assert (await raw.parse()).input_tokens > 0


async def test_a_count_is_not_asked_of_a_deployment_whose_circuit_is_open(
    served: tuple[str, Gateway],
) -> None:
    url, _ = served
    claude = _claude_sdk(url)
    for _ in range(3):  # three failures in a row open its circuit; its backup answers
        await claude.messages.create(model="count-open", max_tokens=5, messages=HI)
    assert (await _health(url))["count-open-a"]["circuit"] == "open"
    CALLS.clear()
    raw = await claude.messages.with_raw_response.count_tokens(model="count-open", messages=HI)
    assert raw.headers["x-tollway-token-count"] == "local"
    assert (await raw.parse()).input_tokens > 0
    assert CALLS == []  # not called: its circuit set it aside
    # Counted locally, a request /v1/messages would refuse for that deployment still is.
    with pytest.raises(anthropic.BadRequestError) as refused:
        await claude.messages.count_tokens(
            model="count-open", messages=HI, extra_body={"temperature": 1.5}
        )
    assert "temperature" in refused.value.message


def _circuit_gauge(metrics: str, deployment: str) -> float:
    prefix = f'tollway_circuit_state{{deployment="{deployment}"}} '
    [line] = [line for line in metrics.splitlines() if line.startswith(prefix)]
    return float(line.removeprefix(prefix))


async def test_a_failure_of_a_request_on_a_deployments_old_address_leaves_the_new_ones_circuit(
    tmp_path: Path, upstream_url: str
) -> None:
    # A reload pointed the deployment elsewhere: its health is a new record, closed, and its
    # tollway_circuit_state said so. A stream still running on the old address then failed,
    # moving the old record's circuit, and that set the gauge to open again, though the
    # deployment's circuit (the one /admin/deployments shows and requests use) was closed.
    moved = {"name": "moved", "deployments": [
        _deployment(upstream_url, "moved", "silent-mid-stream")]}  # fmt: skip
    config: dict[str, Any] = {
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}"},
        "server": {"reload_interval": None},
        "upstream": {"timeouts": {"connect": "2s", "first_byte": "1s", "total": "10s"}},
        "routing": {"failure_threshold": 1, "cooldown": "60s"},
        "models": [moved],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    async with (
        gateway_in_process(config, config_path=path) as (url, _),
        httpx.AsyncClient(base_url=url, headers=ADMIN, timeout=15) as client,
    ):
        body = {"model": "moved", "messages": HI}
        failed = await client.post("/v1/chat/completions", json=body)  # silent: its circuit opens
        assert failed.status_code == 504
        assert _circuit_gauge((await client.get("/metrics")).text, "moved") == 2
        # Its only deployment, tried all the same: a stream that stops after its first token.
        async with client.stream(
            "POST", "/v1/chat/completions", json={**body, "stream": True}
        ) as stream:
            lines = stream.aiter_lines()
            async for line in lines:
                if line.startswith("data: "):
                    break  # its first content: the stream runs on the old address
            local = upstream_url.replace("127.0.0.1", "localhost")  # the same server, elsewhere
            moved["deployments"] = [_deployment(local, "moved")]
            path.write_text(yaml.safe_dump(config))
            assert (await client.post("/admin/reload")).status_code == 200
            assert _circuit_gauge((await client.get("/metrics")).text, "moved") == 0
            rest = [line async for line in lines]  # until the gap limit ends it
        assert any('"error"' in line for line in rest)
        [row] = (await client.get("/admin/deployments")).json()["data"]
        assert row["circuit"] == "closed"  # the deployment at its new address
        assert _circuit_gauge((await client.get("/metrics")).text, "moved") == 0


async def test_a_deployment_given_another_key_by_a_reload_is_not_kept_out_by_the_old_ones_circuit(
    tmp_path: Path, upstream_url: str
) -> None:
    # The provider refused the deployment's key, and its circuit opened. The operator fixed
    # the key and reloaded: the deployment stayed out of rotation for the whole cooldown (and
    # a probe), its circuit the one the wrong key had opened, though nothing of it had been
    # tried with the key it has now.
    rekeyed = _deployment(upstream_url, "rekeyed", "401 unless good key", api_key="sk-wrong")
    config: dict[str, Any] = {
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}"},
        "server": {"reload_interval": None},
        "routing": {"failure_threshold": 1, "cooldown": "60s"},
        "models": [{"name": "rekeyed", "deployments": [
            rekeyed, _deployment(upstream_url, "rekeyed-backup")]}],
    }  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    async with (
        gateway_in_process(config, config_path=path) as (url, _),
        httpx.AsyncClient(base_url=url, headers=ADMIN, timeout=15) as client,
    ):
        body = {"model": "rekeyed", "messages": HI}
        answer = await client.post("/v1/chat/completions", json=body)
        assert answer.headers["x-tollway-deployment"] == "rekeyed-backup"
        rows = {row["id"]: row for row in (await client.get("/admin/deployments")).json()["data"]}
        assert rows["rekeyed"]["circuit"] == "open"
        rekeyed["api_key"] = "sk-good"
        path.write_text(yaml.safe_dump(config))
        assert (await client.post("/admin/reload")).status_code == 200
        rows = {row["id"]: row for row in (await client.get("/admin/deployments")).json()["data"]}
        assert rows["rekeyed"]["circuit"] == "closed"
        answer = await client.post("/v1/chat/completions", json=body)
        assert answer.headers["x-tollway-deployment"] == "rekeyed"
        # The same key again (an unrelated edit) keeps what was learned of it.
        path.write_text(yaml.safe_dump({**config, "routing": {"failure_threshold": 2}}))
        assert (await client.post("/admin/reload")).status_code == 200
        rows = {row["id"]: row for row in (await client.get("/admin/deployments")).json()["data"]}
        assert rows["rekeyed"]["requests"] == 1


async def test_a_retry_waits_for_a_rest_another_request_started_meanwhile(
    served: tuple[str, Gateway],
) -> None:
    # While one request's call failed slowly (a 500, retried once), another's was answered
    # 429 retry-after 30: the deployment rests. The retry was sent to it all the same.
    url, _ = served
    gpt = _gpt(url)

    async def ask(prompt: str) -> Any:
        messages = [{"role": "user", "content": prompt}]
        return await gpt.chat.completions.with_raw_response.create(
            model="retried", messages=messages
        )

    slow = asyncio.create_task(ask("slow 500"))
    await asyncio.sleep(0.2)  # its call is under way
    busy = await ask("busy")
    assert busy.headers["x-tollway-deployment"] == "retried-backup"
    assert (await _health(url))["retried-a"]["rate_limited_for_s"] > 25
    raw = await slow
    assert raw.headers["x-tollway-deployment"] == "retried-backup"  # not the resting one
    assert raw.headers["x-tollway-attempts"] == "2"


async def test_least_busy_spreads_sequential_requests_over_idle_deployments(
    served: tuple[str, Gateway],
) -> None:
    # With no request in flight every deployment ties, and ties went to config order: light
    # sequential traffic all reached the first deployment.
    url, _ = served
    gpt = _gpt(url)
    served_by: dict[str, int] = {}
    for _ in range(90):
        raw = await gpt.chat.completions.with_raw_response.create(model="spread", messages=HI)
        deployment = raw.headers["x-tollway-deployment"]
        served_by[deployment] = served_by.get(deployment, 0) + 1
    assert sorted(served_by) == ["spread-a", "spread-b", "spread-c"]
    assert all(count >= 15 for count in served_by.values()), served_by


async def test_a_context_length_error_tries_a_larger_deployment_whose_circuit_is_open_last(
    served: tuple[str, Gateway],
) -> None:
    # The only deployment that could hold the request had its circuit open: the client got
    # the smaller one's 400 and the larger one was never tried, though a group whose every
    # candidate is set aside by its circuit tries the best of them as a last resort.
    url, _ = served
    gpt = _gpt(url)
    fail = [{"role": "user", "content": "fail"}]
    for _ in range(3):  # the larger one fails three times in a row: its circuit opens
        with pytest.raises(openai.InternalServerError):
            await gpt.chat.completions.create(model="overflow-open", messages=fail)
    assert (await _health(url))["overflow-open-large"]["circuit"] == "open"
    raw = await gpt.chat.completions.with_raw_response.create(model="overflow-open", messages=HI)
    assert raw.headers["x-tollway-deployment"] == "overflow-open-large"
    # One no larger than the window that refused is not a last resort: the client gets the 400.
    for _ in range(3):
        with pytest.raises(openai.BadRequestError):
            await gpt.chat.completions.create(model="overflow-open-same", messages=fail)
    assert (await _health(url))["overflow-open-same-b"]["circuit"] == "open"
    CALLS.clear()
    with pytest.raises(openai.BadRequestError) as caught:
        await gpt.chat.completions.create(model="overflow-open-same", messages=HI)
    assert caught.value.code == "context_length_exceeded"
    assert CALLS == [("/v1/chat/completions", "context-400")]


async def test_a_wait_known_to_the_millisecond_reaches_both_sdks_as_retry_after_ms(
    served: tuple[str, Gateway],
) -> None:
    # An upstream's retry-after-ms: 1500 reached the client only as retry-after: 2, though
    # both SDKs read retry-after-ms first (and would have waited 1.5 s, not 2).
    url, _ = served
    with pytest.raises(openai.RateLimitError) as limited:
        await _gpt(url).chat.completions.create(model="wait-ms", messages=HI)
    headers = limited.value.response.headers
    assert headers["retry-after"] == "2" and headers["retry-after-ms"] == "1500"
    # Every candidate resting: the wait left, to the millisecond.
    with pytest.raises(openai.RateLimitError) as resting:
        await _gpt(url).chat.completions.create(model="wait-ms", messages=HI)
    headers = resting.value.response.headers
    assert headers["retry-after"] in ("1", "2") and 0 < int(headers["retry-after-ms"]) <= 1500
    with pytest.raises(anthropic.RateLimitError) as claude:
        await _claude_sdk(url).messages.create(model="wait-ms-claude", max_tokens=5, messages=HI)
    headers = claude.value.response.headers
    assert headers["retry-after"] == "2" and headers["retry-after-ms"] == "1500"
    # A wait in whole seconds is known to the millisecond too; an overload says it as well.
    with pytest.raises(openai.InternalServerError) as overloaded:
        await _gpt(url).chat.completions.create(model="wait-overload", messages=HI)
    assert overloaded.value.status_code == 503
    headers = overloaded.value.response.headers
    assert headers["retry-after"] == "3" and headers["retry-after-ms"] == "3000"
    # Every candidate busy: the soonest wait, to the millisecond, not rounded before comparing.
    with pytest.raises(openai.RateLimitError) as soonest:
        await _gpt(url).chat.completions.create(model="wait-soonest", messages=HI)
    headers = soonest.value.response.headers
    assert headers["retry-after"] == "2" and headers["retry-after-ms"] == "1500"
