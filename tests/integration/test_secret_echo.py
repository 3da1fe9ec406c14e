"""An upstream that quotes the credentials it was sent in its errors: the provider key must
reach no one, in no provider family.

The simulator's ``echo:NNN`` fault answers with an error quoting every credential header
(``Authorization``, ``x-api-key``, ``api-key``, ``x-goog-api-key``, ``X-Amz-Security-Token``)
and the query string it got; ``echo-after:N`` says the same in an error event after N chunks
of a stream. A gateway process of its own (at DEBUG, tracing to an OTLP receiver here) sends
each family's deployments there; then the client's answers, the gateway's output,
``/admin/deployments``, the request log, ``/metrics`` and the spans are searched for the keys.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.conftest import AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, BEDROCK_MODEL, UPSTREAM_KEY
from tests.integration.in_process import serving
from tests.integration.test_tracing_otlp import otlp_receiver
from tests.support import CLIENT_KEY, Process, running_gateway

AWS_SESSION_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLEsessionTOKENforTOLLWAYtests0123456789"
SECRETS = {
    "the provider key": UPSTREAM_KEY,
    "the AWS secret key": AWS_SECRET_ACCESS_KEY,
    "the AWS session token": AWS_SESSION_TOKEN,
    "the AWS access key id": AWS_ACCESS_KEY_ID,
}
KEY = "env:TEST_UPSTREAM_KEY"
AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}


def families(simulator_url: str) -> dict[str, dict[str, Any]]:
    """One deployment of every way a provider key travels, on the simulator."""
    bedrock = {"provider": "bedrock", "model": BEDROCK_MODEL, "region": "us-east-1",
               "api_base": simulator_url}  # fmt: skip
    return {
        "openai": {"provider": "openai", "model": "sim-chat", "api_base": f"{simulator_url}/v1",
                   "api_key": KEY},
        "azure": {"provider": "azure_openai", "model": "sim-chat", "api_base": simulator_url,
                  "azure_deployment": "my-chat", "api_version": "2024-10-21", "api_key": KEY},
        "anthropic": {"provider": "anthropic", "model": "sim-chat", "api_base": simulator_url,
                      "api_key": KEY},
        "gemini": {"provider": "gemini", "model": "sim-chat", "api_base": simulator_url,
                   "api_key": KEY},
        "vertex": {"provider": "vertex_ai", "model": "sim-chat",
                   "api_base": f"{simulator_url}/v1/projects/test/locations/europe-west4",
                   "api_key": KEY},
        "bedrock-key": {**bedrock, "api_key": KEY},
        "bedrock-sigv4": {**bedrock, "aws_access_key_id": "env:TEST_AWS_KEY_ID",
                          "aws_secret_access_key": "env:TEST_AWS_SECRET_KEY",
                          "aws_session_token": "env:TEST_AWS_SESSION_TOKEN"},
    }  # fmt: skip


@dataclass
class Echoing:
    """The gateway, its process, and what the tests gathered from it."""

    url: str
    process: Process
    seen: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def echoing(log_dir: Path, simulator_url: str) -> Iterator[Echoing]:
    pytest.importorskip("opentelemetry.sdk", reason="tracing needs the otel extra")
    with otlp_receiver() as receiver:
        config = {
            "upstream": {
                "timeouts": {"connect": "2s", "first_byte": "5s", "total": "20s"},
                "forward_headers": ["x-sim-*"],
            },
            "telemetry": {
                "tracing": {"enabled": True, "otlp_endpoint": receiver.url},
                "request_log": {"flush_interval": "100ms", "bodies": {"enabled": True}},
            },
            "models": [
                {"name": f"echo-{name}", "deployments": [{**deployment, "id": f"echo-{name}"}]}
                for name, deployment in families(simulator_url).items()
            ],
        }
        env = {
            "TEST_UPSTREAM_KEY": UPSTREAM_KEY,
            "TEST_AWS_KEY_ID": AWS_ACCESS_KEY_ID,
            "TEST_AWS_SECRET_KEY": AWS_SECRET_ACCESS_KEY,
            "TEST_AWS_SESSION_TOKEN": AWS_SESSION_TOKEN,
        }
        with running_gateway(log_dir, config, env, "--log-level", "debug") as (url, process):
            echoing = Echoing(url, process)
            yield echoing
        echoing.seen["the gateway's output (DEBUG)"] = process.output()
        echoing.seen["the spans"] = b"".join(body for _, body in receiver.posts).decode(
            "utf-8", "replace"
        )
        assert receiver.posts, "the gateway sent no spans"
        assert_no_secret(echoing.seen)


def assert_no_secret(seen: dict[str, str]) -> None:
    for where, text in seen.items():
        for what, secret in SECRETS.items():
            assert secret not in text, f"{what} appears in {where}: ...{_around(text, secret)}..."


def _around(text: str, secret: str) -> str:
    at = text.index(secret)
    return text[max(0, at - 200) : at + len(secret) + 40]


@pytest.mark.parametrize("family", list(families("")))
@pytest.mark.parametrize("fault", ["echo:401", "echo:400", "echo:500", "echo-after:1"])
def test_an_upstream_echoing_its_credentials_reaches_no_client(
    echoing: Echoing, family: str, fault: str
) -> None:
    stream = fault.startswith("echo-after")
    body = {"model": f"echo-{family}", "messages": [{"role": "user", "content": "hi there"}],
            "stream": stream}  # fmt: skip
    response = httpx.post(
        f"{echoing.url}/v1/chat/completions",
        json=body,
        headers={**AUTH, "x-sim-fault": fault},
        timeout=30,
    )
    assert response.status_code >= 400 or (stream and "error" in response.text), response.text
    seen = {f"the client's answer ({family}, {fault})": response.text}
    seen.update(_admin_views(echoing.url))
    echoing.seen.update(seen)
    assert_no_secret(seen)


def _admin_views(url: str) -> dict[str, str]:
    views = {}
    for path in ("/admin/deployments", "/admin/logs?format=jsonl", "/metrics"):
        answer = httpx.get(url + path, headers=AUTH, timeout=10)
        assert answer.status_code == 200, answer.text
        views[path] = answer.text
    return views


# A base64 key, as a Bedrock API key or an AWS session token is: '/' and '+' in it.
BASE64_KEY = "ABSKQmVkcm9ja0FQSUtleS1/dGVzdDo+c2VjcmV0/K2V5+Zm9yL3Rlc3Rz/MDEyMzQ1Ng=="
ESCAPERS = {
    "php": lambda text: text.replace("/", "\\/"),  # json_encode's default
    "dotnet": lambda text: text.replace("+", "\\u002B"),  # System.Text.Json's default
}


async def _escaping_echo(request: web.Request) -> web.StreamResponse:
    """An OpenAI-format upstream (or a proxy before one) whose JSON writer escapes '/' or
    '+', quoting the Authorization header it got: in a 400, or in a stream's error event."""
    body = await request.json()
    escape = ESCAPERS[body["messages"][0]["content"]]
    said = {"error": {"message": f"Incorrect API key provided: {request.headers['Authorization']}",
                      "type": "invalid_request_error", "code": "invalid_api_key"}}  # fmt: skip
    error = escape(json.dumps(said)).encode()
    if not body.get("stream"):
        return web.Response(status=400, body=error, content_type="application/json")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    delta = {"index": 0, "delta": {"content": "hi"}, "finish_reason": None}
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "choices": [delta]}
    await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    await response.write(b"data: " + error + b"\n\n")
    await response.write_eof()
    return response


@pytest.fixture(scope="module")
def upstream_bodies() -> list[bytes]:
    """Every body the upstream below was sent."""
    return []


@pytest.fixture(scope="module")
async def escaping_upstream(upstream_bodies: list[bytes]) -> AsyncIterator[str]:
    async def refuse(request: web.Request) -> web.Response:
        upstream_bodies.append(await request.read())
        said = {"type": "error", "error": {"type": "invalid_request_error", "message": "no"}}
        return web.json_response(said, status=400)

    async def chat(request: web.Request) -> web.StreamResponse:
        upstream_bodies.append(await request.read())
        return await _escaping_echo(request)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/messages", refuse)
    app.router.add_post("/v1/embeddings", refuse)
    async with serving(app) as url:
        yield url + "/v1"


@pytest.fixture(scope="module")
def escaped_gateway(log_dir: Path, escaping_upstream: str) -> Iterator[str]:
    deployment = {"provider": "openai", "model": "m", "api_base": escaping_upstream, "api_key": KEY}
    claude = {**deployment, "provider": "anthropic", "api_base": escaping_upstream[:-3]}
    config = {
        "models": [
            {"name": "escaping", "deployments": [deployment]},
            {"name": "claude", "deployments": [claude]},
            {"name": "embedder", "kind": "embedding", "deployments": [deployment]},
        ]
    }
    with running_gateway(log_dir, config, {"TEST_UPSTREAM_KEY": BASE64_KEY}) as (url, process):
        yield url
    assert BASE64_KEY not in process.output()


@pytest.mark.parametrize("escaper", list(ESCAPERS))
@pytest.mark.parametrize("stream", [False, True])
async def test_a_key_echoed_with_json_escapes_is_masked_too(
    escaped_gateway: str, escaper: str, stream: bool
) -> None:
    # A key masked only as its plain bytes came through whole: the client's JSON parser
    # reads '\/' as '/' and '\u002B' as '+'.
    body = {"model": "escaping", "stream": stream,
            "messages": [{"role": "user", "content": escaper}]}  # fmt: skip
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream(
            "POST", f"{escaped_gateway}/v1/chat/completions", json=body, headers=AUTH
        ) as response,
    ):
        raw = await response.aread()
    if stream:
        events = [line[6:] for line in raw.split(b"\n") if line.startswith(b"data: ")]
        error = json.loads(events[-1])["error"]
    else:
        assert response.status_code == 400  # the provider's own words, passed through
        error = json.loads(raw)["error"]
    # As the client's JSON parser reads it, and as it came over the wire.
    assert error["message"].startswith(("Incorrect API key", "upstream stream failed"))
    assert "Bearer ***" in error["message"] and BASE64_KEY not in error["message"]
    assert "ABSKQmVkcm9ja0FQSUtleS1" not in raw.decode()


HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": "escaping", "messages": HI}),
        ("/v1/messages", {"model": "claude", "max_tokens": 5, "messages": HI}),
        # Not the plain body: the generic walk.
        ("/v1/messages", {"model": "claude", "max_tokens": 5, "messages": HI,
                          "metadata": {"user_id": "u"}}),
        ("/v1/embeddings", {"model": "embedder", "input": "hi"}),
    ],
    ids=["chat", "messages", "messages-walked", "embeddings"],
)  # fmt: skip
@pytest.mark.parametrize("field", ["api_key", "x-api-key", "Authorization"])
async def test_a_key_sent_in_the_body_is_refused_and_never_passed_on(
    escaped_gateway: str, upstream_bodies: list[bytes], path: str, body: dict[str, Any], field: str
) -> None:
    # A client (LiteLLM's style) that puts its key in the body too: a field the codec does
    # not read goes to a provider of the client's own format as it came, so the key did.
    async with httpx.AsyncClient(timeout=30) as client:
        made = await client.post(f"{escaped_gateway}/admin/keys", json={"name": "in-body"},
                                 headers=AUTH)  # fmt: skip
        key = made.json()["key"]
        before = len(upstream_bodies)
        response = await client.post(
            escaped_gateway + path,
            json={**body, field: key},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"  # in the client's dialect
    assert f"'{field}'" in error["message"] and key not in response.text
    assert not any(key.encode() in sent for sent in upstream_bodies[before:]), "passed on"
    assert len(upstream_bodies) == before  # refused before any upstream call
